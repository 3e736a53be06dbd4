//! One simulated fan against a real gateway: log in, join, watch the
//! waiting room over a websocket, and (in a journey) hold, pay and wait
//! for the `purchased` push. Every wait is bounded by the run's deadline
//! and every retry by a count.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use hyper::Method;
use hyper::body::Bytes;
use onsale_schema::message::{
    Area, Command, FanStatus, HoldRejected, HoldRequest, JoinRefused, PaymentRefused, Reply,
};
use onsale_schema::{FanId, HoldId};
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;
use tokio::time::Instant;

use super::net::{FanSocket, HttpConn, Pushes, Target, WsRead};
use super::{Mode, unix_now_us};
use crate::rng::Rng;

/// Attempts per request while the gateway answers 429/503 or the
/// connection breaks.
pub const REQUEST_ATTEMPTS_MAX: u32 = 8;
/// Hold requests per fan (refusals that may pass: fair share, a seat
/// taken meanwhile, not admitted yet).
pub const HOLD_ATTEMPTS_MAX: u32 = 12;
/// Payments per fan (a declined payment is submitted again).
pub const PAY_ATTEMPTS_MAX: u32 = 3;
/// Websocket messages one fan reads (a waiting fan gets one `position`
/// every 2 s: an hour is 1,800).
pub const PUSHES_MAX: u64 = 20_000;
/// Notes (unexpected but survivable answers) kept per fan.
pub const NOTES_MAX: usize = 4;
/// While waiting for `purchased`, ask for the status this often, at most
/// this many times (an hour).
pub const STATUS_POLL_EVERY: Duration = Duration::from_secs(5);
pub const STATUS_POLLS_MAX: u32 = 720;
/// Backoff between retries: doubling from the first, capped.
pub const BACKOFF_FIRST: Duration = Duration::from_millis(100);
pub const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// How a fan's run ended.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Bought seats (journey).
    Purchased,
    /// Admitted (wait mode).
    Admitted,
    /// Still in the waiting room when the run ended.
    StillWaiting,
    /// "Waiting room full" at the join.
    Full,
    SoldOut,
    /// The sale closed (at the join or while waiting).
    Closed,
    TicketLimit,
    /// Gave up after [`REQUEST_ATTEMPTS_MAX`] answers of 429 or 503.
    RateLimited,
    /// No seats to hold (not enough adjacent seats, even for one).
    NoSeats,
    /// The shopping window ended before a hold.
    AdmissionExpired,
    /// The hold ended before the sale (unpaid, or payment refused late).
    HoldExpired,
    /// Payment refused (late) or declined more than [`PAY_ATTEMPTS_MAX`] times.
    PaymentRefused,
    /// The run ended elsewhere than in the waiting room (see `stage`).
    TimedOut,
    /// Anything else: see `error`.
    #[default]
    Error,
}

/// How far a fan got.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    #[default]
    Session,
    Join,
    Watch,
    Waiting,
    Hold,
    Pay,
    Done,
}

/// When and how a fan learnt it was admitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Admission {
    /// Wall clock (Unix µs) when the fan read it.
    pub received_unix_us: u64,
    /// The event's wall clock when it decided (from the `admitted` push).
    pub decided_at_ms: Option<u64>,
    /// True for an `admitted` push, false when `watching` already said so
    /// (admitted before the websocket was open).
    pub via_push: bool,
}

/// Everything one fan saw. One JSON line per fan.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FanRecord {
    pub index: u64,
    pub fan: Option<u64>,
    pub position: Option<u64>,
    pub outcome: Outcome,
    pub stage: Stage,
    /// Latencies in µs: login; join; websocket open → `watching`; admitted
    /// → hold placed (retries included); payment submitted → purchased.
    pub session_us: Option<u64>,
    pub join_us: Option<u64>,
    pub watch_us: Option<u64>,
    pub hold_us: Option<u64>,
    pub pay_us: Option<u64>,
    pub admission: Option<Admission>,
    pub hold_attempts: u32,
    pub pay_attempts: u32,
    pub held_seats: Vec<u32>,
    pub order: Option<u64>,
    /// Seats of the `purchased` push.
    pub seats: Vec<u32>,
    /// True when the purchase was learnt by polling `status` (the push
    /// never came); `seats` are then the held seats.
    pub purchase_polled: bool,
    pub pushes: u64,
    /// Answers 429 and 503 (each retried).
    pub rate_limited: u32,
    pub busy: u32,
    /// Broken connections retried.
    pub reconnects: u32,
    pub notes: Vec<String>,
    pub error: Option<String>,
}

/// What all of a worker's fans share.
#[derive(Debug)]
pub struct FanContext {
    pub target: Target,
    pub event: u64,
    pub mode: Mode,
    pub deadline: Instant,
    /// In `wait` mode, how long an admitted fan keeps its socket.
    pub linger: Duration,
    /// Bounds the fans between their first connection and `watching`.
    pub arrivals: Arc<Semaphore>,
    pub progress: Arc<Progress>,
    pub seed: u64,
}

/// A worker's gauges, read by its progress line.
#[derive(Debug, Default)]
pub struct Progress {
    pub settled: AtomicU64,
    pub waiting: AtomicU64,
    pub admitted: AtomicU64,
    pub done: AtomicU64,
}

/// One fan to run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FanSpec {
    pub index: u64,
    pub name: String,
    pub source: Ipv4Addr,
}

/// The gateway's answer to a request, after retries.
enum Answer {
    Ok(Bytes),
    /// A final error status with its stable code.
    Refused {
        status: u16,
        code: String,
    },
    /// Still 429 or 503 after [`REQUEST_ATTEMPTS_MAX`] attempts.
    GaveUp,
}

/// A push, read leniently: only the fields the fans look at.
#[derive(Debug, Deserialize)]
struct PushView {
    push: String,
    #[serde(default)]
    position: Option<u64>,
    #[serde(default)]
    decided_at: Option<u64>,
    #[serde(default)]
    status: Option<FanStatus>,
    #[serde(default)]
    sale: Option<String>,
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    order: Option<u64>,
    #[serde(default)]
    seats: Option<Vec<u32>>,
    #[serde(default)]
    hold: Option<u64>,
    #[serde(default)]
    code: Option<String>,
}

#[derive(Debug, Deserialize)]
struct SessionReply {
    session: String,
    fan: u64,
}

/// Run one fan to its end (or the deadline) and say what happened.
pub async fn run(ctx: &FanContext, spec: &FanSpec) -> FanRecord {
    let mut rng = Rng::new(ctx.seed, spec.index);
    let party = 1 + rng.below(2) as u8;
    let mut fan = Fan {
        ctx,
        spec,
        rng,
        party,
        rec: FanRecord {
            index: spec.index,
            ..FanRecord::default()
        },
        http: None,
        session: None,
        pushes: None,
        settled: false,
        waiting: false,
        retries: 0,
    };
    let result = tokio::time::timeout_at(ctx.deadline, fan.journey()).await;
    fan.rec.outcome = match result {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(e)) => {
            fan.rec.error = Some(format!("{:?}: {e:#}", fan.rec.stage));
            Outcome::Error
        }
        Err(_) if fan.rec.stage == Stage::Waiting => Outcome::StillWaiting,
        Err(_) => Outcome::TimedOut,
    };
    fan.set_waiting(false);
    fan.settle();
    if let Some(pushes) = fan.pushes.take() {
        pushes.close().await;
    }
    ctx.progress.done.fetch_add(1, Ordering::Relaxed);
    fan.rec
}

struct Fan<'a> {
    ctx: &'a FanContext,
    spec: &'a FanSpec,
    rng: Rng,
    /// Seats wanted: 1 or 2.
    party: u8,
    rec: FanRecord,
    http: Option<HttpConn>,
    session: Option<String>,
    pushes: Option<Pushes>,
    settled: bool,
    waiting: bool,
    /// Backoffs so far (each doubles the next).
    retries: u32,
}

impl Fan<'_> {
    async fn journey(&mut self) -> anyhow::Result<Outcome> {
        let arrival = Arc::clone(&self.ctx.arrivals)
            .acquire_owned()
            .await
            .context("arrivals closed")?;
        let (fan, token) = match self.arrive().await? {
            Ok(joined) => joined,
            Err(outcome) => return Ok(outcome),
        };
        self.rec.stage = Stage::Watch;
        let started = Instant::now();
        let mut socket = FanSocket::open(
            &self.ctx.target,
            self.spec.source,
            self.session.as_deref().unwrap_or_default(),
        )
        .await?;
        let watch = serde_json::json!({"op": "watch", "event": self.ctx.event, "token": token});
        socket.send_text(watch.to_string()).await?;
        self.pushes = Some(socket.into_pushes());
        if let Some(outcome) = self.until_admitted(started, arrival).await? {
            return Ok(outcome);
        }
        self.ctx.progress.admitted.fetch_add(1, Ordering::Relaxed);
        if self.ctx.mode == Mode::Wait {
            self.rec.stage = Stage::Done;
            // Keep the socket (in `self.pushes`) a while: closing it at
            // once would load the gateway while it still delivers.
            let until = (Instant::now() + self.ctx.linger).min(self.ctx.deadline);
            tokio::time::sleep_until(until).await;
            return Ok(Outcome::Admitted);
        }
        self.shop(fan).await
    }

    /// Log in and join. `Err(outcome)`: the fan ends here.
    async fn arrive(&mut self) -> anyhow::Result<Result<(FanId, String), Outcome>> {
        let started = Instant::now();
        let body = serde_json::json!({"name": self.spec.name}).to_string();
        let reply = match self.call(Method::POST, "/api/session", body).await? {
            Answer::Ok(body) => body,
            Answer::GaveUp => return Ok(Err(Outcome::RateLimited)),
            Answer::Refused { status, code } => bail!("login refused: {status} {code}"),
        };
        let session: SessionReply =
            serde_json::from_slice(&reply).context("the login answer is not a session")?;
        self.rec.session_us = Some(elapsed_us(started));
        self.rec.fan = Some(session.fan);
        self.session = Some(session.session);
        let fan = FanId(session.fan);

        self.rec.stage = Stage::Join;
        let started = Instant::now();
        for _ in 0..REQUEST_ATTEMPTS_MAX {
            let reply = match self.command(&Command::Join { fan }).await? {
                Ok(reply) => reply,
                Err(outcome) => return Ok(Err(outcome)),
            };
            match reply {
                Reply::Joined { joined, token } => {
                    self.rec.join_us = Some(elapsed_us(started));
                    self.rec.position = Some(joined.position.0);
                    if self.ctx.mode == Mode::Wait {
                        // Only the websocket stays open while waiting.
                        self.http = None;
                    }
                    return Ok(Ok((fan, token)));
                }
                Reply::JoinRefused {
                    refused: JoinRefused::Busy,
                } => {
                    self.rec.busy += 1;
                    self.backoff(None).await;
                }
                Reply::JoinRefused { refused } => return Ok(Err(join_outcome(refused))),
                other => bail!("join: unexpected reply {}", brief(&other)),
            }
        }
        Ok(Err(Outcome::RateLimited))
    }

    /// Read pushes until admitted (`None`) or another end (`Some`). The
    /// arrival permit is released at the `watching` answer.
    async fn until_admitted(
        &mut self,
        started: Instant,
        arrival: tokio::sync::OwnedSemaphorePermit,
    ) -> anyhow::Result<Option<Outcome>> {
        let mut arrival = Some(arrival);
        loop {
            let push = self.next_push().await?;
            match push.push.as_str() {
                "watching" => {
                    self.rec.watch_us = Some(elapsed_us(started));
                    drop(arrival.take());
                    self.rec.stage = Stage::Waiting;
                    self.settle();
                    if let Some(outcome) = sale_outcome(push.sale.as_deref()) {
                        return Ok(Some(outcome));
                    }
                    match push.status {
                        Some(FanStatus::Waiting { .. }) => self.set_waiting(true),
                        Some(FanStatus::Admitted { position, .. }) => {
                            self.note_position(position.0);
                            self.admitted(None, false);
                            return Ok(None);
                        }
                        Some(FanStatus::Expired) => return Ok(Some(Outcome::AdmissionExpired)),
                        other => bail!(
                            "watching: this fan is {other:?}, not waiting \
                             (a rerun with the same names? use another --name-prefix)"
                        ),
                    }
                }
                "admitted" => {
                    if let Some(position) = push.position {
                        self.note_position(position);
                    }
                    self.admitted(push.decided_at, true);
                    return Ok(None);
                }
                "sold_out" => return Ok(Some(Outcome::SoldOut)),
                "sale" => {
                    if let Some(outcome) = sale_outcome(push.state.as_deref()) {
                        return Ok(Some(outcome));
                    }
                }
                "admission_expired" => return Ok(Some(Outcome::AdmissionExpired)),
                "error" => self.note(format!("error push while waiting: {:?}", push.code)),
                _ => {}
            }
        }
    }

    fn admitted(&mut self, decided_at_ms: Option<u64>, via_push: bool) {
        self.rec.admission = Some(Admission {
            received_unix_us: unix_now_us(),
            decided_at_ms,
            via_push,
        });
        self.set_waiting(false);
    }

    /// Hold the best `party` seats anywhere, pay, wait for the purchase.
    async fn shop(&mut self, fan: FanId) -> anyhow::Result<Outcome> {
        self.rec.stage = Stage::Hold;
        let started = Instant::now();
        let hold = match self.hold(fan).await? {
            Ok(hold) => hold,
            Err(outcome) => return Ok(outcome),
        };
        self.rec.hold_us = Some(elapsed_us(started));
        self.rec.stage = Stage::Pay;
        self.pay(fan, hold).await
    }

    async fn hold(&mut self, fan: FanId) -> anyhow::Result<Result<HoldId, Outcome>> {
        let mut count = self.party;
        while self.rec.hold_attempts < HOLD_ATTEMPTS_MAX {
            self.rec.hold_attempts += 1;
            let request = HoldRequest::Best {
                count,
                area: Area::Anywhere,
            };
            let reply = match self.command(&Command::Hold { fan, request }).await? {
                Ok(reply) => reply,
                Err(outcome) => return Ok(Err(outcome)),
            };
            let rejected = match reply {
                Reply::HoldPlaced { placed } => {
                    self.rec.held_seats = placed.seats.iter().map(|s| s.0).collect();
                    return Ok(Ok(placed.hold));
                }
                Reply::HoldRejected { rejected } => rejected,
                other => bail!("hold: unexpected reply {}", brief(&other)),
            };
            match rejected {
                HoldRejected::NotEnoughSeats if count > 1 => count = 1,
                HoldRejected::NotEnoughSeats => return Ok(Err(Outcome::NoSeats)),
                HoldRejected::FairShare { max } if max >= 1 && max < u32::from(count) => {
                    count = max as u8;
                }
                HoldRejected::FairShare { .. }
                | HoldRejected::SeatsUnavailable { .. }
                | HoldRejected::NotAdmitted
                | HoldRejected::SaleNotOpen => self.backoff(None).await,
                HoldRejected::AlreadyHolding { hold } => {
                    // A retried request that had gone through: the hold is ours.
                    self.note("hold: already holding (a retried request went through)".into());
                    return Ok(Ok(hold));
                }
                HoldRejected::SoldOut => return Ok(Err(Outcome::SoldOut)),
                HoldRejected::AdmissionExpired => return Ok(Err(Outcome::AdmissionExpired)),
                HoldRejected::TicketLimit { .. } => return Ok(Err(Outcome::TicketLimit)),
                other => bail!("hold refused: {other:?}"),
            }
        }
        bail!("hold: still refused after {HOLD_ATTEMPTS_MAX} attempts")
    }

    /// Submit payment and wait for the `purchased` push; poll `status`
    /// meanwhile to learn of a declined payment (which has no push).
    async fn pay(&mut self, fan: FanId, hold: HoldId) -> anyhow::Result<Outcome> {
        let started = Instant::now();
        if let Some(outcome) = self.submit(fan, hold).await? {
            return Ok(outcome);
        }
        let mut polls = 0;
        loop {
            let next = tokio::time::timeout(STATUS_POLL_EVERY, self.next_push()).await;
            let Ok(push) = next else {
                polls += 1;
                if polls > STATUS_POLLS_MAX {
                    bail!("no purchase after {STATUS_POLLS_MAX} status polls");
                }
                if let Some(outcome) = self.poll_purchase(fan, hold, started).await? {
                    return Ok(outcome);
                }
                continue;
            };
            let push = push?;
            match push.push.as_str() {
                "purchased" => {
                    self.rec.pay_us = Some(elapsed_us(started));
                    self.rec.order = push.order;
                    self.rec.seats = push.seats.unwrap_or_default();
                    if self.rec.seats != self.rec.held_seats {
                        self.note(format!(
                            "purchased seats {:?} differ from the held seats {:?}",
                            self.rec.seats, self.rec.held_seats
                        ));
                    }
                    self.rec.stage = Stage::Done;
                    return Ok(Outcome::Purchased);
                }
                "hold_expired" if push.hold.is_none_or(|h| h == hold.0) => {
                    return Ok(Outcome::HoldExpired);
                }
                "sale" if push.state.as_deref() == Some("closed") => {
                    // Paid holds survive a close; keep waiting.
                }
                "error" => self.note(format!("error push while paying: {:?}", push.code)),
                _ => {}
            }
        }
    }

    /// `Some(outcome)`: the payment was refused for good.
    async fn submit(&mut self, fan: FanId, hold: HoldId) -> anyhow::Result<Option<Outcome>> {
        self.rec.pay_attempts += 1;
        let reply = match self.command(&Command::SubmitPayment { fan, hold }).await? {
            Ok(reply) => reply,
            Err(outcome) => return Ok(Some(outcome)),
        };
        match reply {
            Reply::PaymentStarted { .. }
            | Reply::PaymentRefused {
                refused: PaymentRefused::Pending,
            } => Ok(None),
            Reply::PaymentRefused {
                refused: PaymentRefused::Late,
            } => Ok(Some(Outcome::PaymentRefused)),
            Reply::PaymentRefused {
                refused: PaymentRefused::HoldNotFound,
            } => Ok(Some(Outcome::HoldExpired)),
            other => bail!("submit payment: unexpected reply {}", brief(&other)),
        }
    }

    /// No push for a while: ask. A purchase without a push is counted
    /// (`purchase_polled`); a declined payment is submitted again.
    async fn poll_purchase(
        &mut self,
        fan: FanId,
        hold: HoldId,
        started: Instant,
    ) -> anyhow::Result<Option<Outcome>> {
        let reply = match self.command(&Command::Status { fan }).await? {
            Ok(reply) => reply,
            Err(outcome) => return Ok(Some(outcome)),
        };
        let Reply::Status { status } = reply else {
            bail!("status: unexpected reply {}", brief(&reply));
        };
        match status {
            Some(FanStatus::Holding { paying: true, .. }) => Ok(None),
            Some(FanStatus::Holding { paying: false, .. })
                if self.rec.pay_attempts < PAY_ATTEMPTS_MAX =>
            {
                self.note("payment declined; paying again".into());
                self.submit(fan, hold).await
            }
            Some(FanStatus::Holding { paying: false, .. }) => Ok(Some(Outcome::PaymentRefused)),
            Some(FanStatus::Purchased { .. }) => {
                self.rec.pay_us = Some(elapsed_us(started));
                self.rec.seats = self.rec.held_seats.clone();
                self.rec.purchase_polled = true;
                self.rec.stage = Stage::Done;
                Ok(Some(Outcome::Purchased))
            }
            _ => Ok(Some(Outcome::HoldExpired)),
        }
    }

    /// One event command; `Err(outcome)` when the gateway gave up on us.
    async fn command(&mut self, command: &Command) -> anyhow::Result<Result<Reply, Outcome>> {
        let path = format!("/api/events/{}/commands", self.ctx.event);
        let body = serde_json::to_string(command).context("encode command")?;
        match self.call(Method::POST, &path, body).await? {
            Answer::Ok(body) => serde_json::from_slice(&body)
                .map(Ok)
                .with_context(|| format!("not a reply: {}", String::from_utf8_lossy(&body))),
            Answer::GaveUp => Ok(Err(Outcome::RateLimited)),
            Answer::Refused { code, .. } => match code.as_str() {
                "sold_out" => Ok(Err(Outcome::SoldOut)),
                "waiting_room_full" => Ok(Err(Outcome::Full)),
                "sale_closed" => Ok(Err(Outcome::Closed)),
                "admission_expired" => Ok(Err(Outcome::AdmissionExpired)),
                "hold_not_found" => Ok(Err(Outcome::HoldExpired)),
                "payment_late" => Ok(Err(Outcome::PaymentRefused)),
                _ => bail!("{path}: refused with {code}"),
            },
        }
    }

    /// One request with the session, retried on 429/503 (after
    /// `Retry-After`) and on a broken connection (on a new one).
    async fn call(&mut self, method: Method, path: &str, body: String) -> anyhow::Result<Answer> {
        let body = body.into_bytes();
        for attempt in 1..=REQUEST_ATTEMPTS_MAX {
            if self.http.as_ref().is_none_or(|h| !h.is_open()) {
                self.http = Some(HttpConn::open(&self.ctx.target, self.spec.source).await?);
            }
            let http = self.http.as_mut().expect("opened above");
            let bearer = self.session.as_deref();
            let answer = match http
                .send(method.clone(), path, bearer, Some(body.clone()))
                .await
            {
                Ok(answer) => answer,
                Err(e) if attempt < REQUEST_ATTEMPTS_MAX => {
                    self.note(format!("{path}: {e:#}; retrying on a new connection"));
                    self.rec.reconnects += 1;
                    self.http = None;
                    self.backoff(None).await;
                    continue;
                }
                Err(e) => return Err(e),
            };
            match answer.status {
                200 => return Ok(Answer::Ok(answer.body)),
                429 | 503 => {
                    if answer.status == 429 {
                        self.rec.rate_limited += 1;
                    } else {
                        self.rec.busy += 1;
                    }
                    if attempt < REQUEST_ATTEMPTS_MAX {
                        self.backoff(answer.retry_after_s).await;
                    }
                }
                status => {
                    let code = serde_json::from_slice::<serde_json::Value>(&answer.body)
                        .ok()
                        .and_then(|v| v.get("code").and_then(|c| c.as_str()).map(str::to_owned))
                        .unwrap_or_else(|| format!("(no code) {}", body_excerpt(&answer.body)));
                    return Ok(Answer::Refused { status, code });
                }
            }
        }
        Ok(Answer::GaveUp)
    }

    /// The next push, parsed; a closed socket or garbage is an error.
    async fn next_push(&mut self) -> anyhow::Result<PushView> {
        loop {
            let pushes = self.pushes.as_mut().context("no websocket")?;
            let text = match pushes.next().await? {
                WsRead::Text(text) => text,
                WsRead::Closed => bail!("the gateway closed the websocket"),
            };
            self.rec.pushes += 1;
            if self.rec.pushes > PUSHES_MAX {
                bail!("more than {PUSHES_MAX} pushes");
            }
            match serde_json::from_str::<PushView>(&text) {
                Ok(push) => return Ok(push),
                Err(e) => self.note(format!("unreadable push ({e}): {}", excerpt(&text))),
            }
        }
    }

    /// Sleep before a retry: `Retry-After` if given, else a doubling
    /// backoff with jitter (by the number of retries so far).
    async fn backoff(&mut self, retry_after_s: Option<u64>) {
        let doubling = BACKOFF_FIRST
            .saturating_mul(1 << self.retries.min(16))
            .min(BACKOFF_MAX);
        self.retries += 1;
        let base = retry_after_s.map_or(doubling, |s| Duration::from_secs(s.min(60)));
        let jitter = base.mul_f64(0.5 * self.rng.unit());
        tokio::time::sleep(base + jitter).await;
    }

    fn note_position(&mut self, position: u64) {
        match self.rec.position {
            Some(p) if p != position => {
                self.note(format!("admitted at position {position}, joined at {p}"))
            }
            Some(_) => {}
            None => self.rec.position = Some(position),
        }
    }

    fn note(&mut self, note: String) {
        if self.rec.notes.len() < NOTES_MAX {
            self.rec.notes.push(note);
        }
    }

    /// Count this fan once as settled (watching, or ended).
    fn settle(&mut self) {
        if !self.settled {
            self.settled = true;
            self.ctx.progress.settled.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn set_waiting(&mut self, waiting: bool) {
        if waiting != self.waiting {
            self.waiting = waiting;
            if waiting {
                self.ctx.progress.waiting.fetch_add(1, Ordering::Relaxed);
            } else {
                self.ctx.progress.waiting.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }
}

fn join_outcome(refused: JoinRefused) -> Outcome {
    match refused {
        JoinRefused::Full => Outcome::Full,
        JoinRefused::SoldOut => Outcome::SoldOut,
        JoinRefused::Closed => Outcome::Closed,
        JoinRefused::TicketLimit => Outcome::TicketLimit,
        JoinRefused::Busy => Outcome::RateLimited,
        JoinRefused::InvalidToken => Outcome::Error,
    }
}

fn sale_outcome(state: Option<&str>) -> Option<Outcome> {
    match state {
        Some("sold_out") => Some(Outcome::SoldOut),
        Some("closed") => Some(Outcome::Closed),
        _ => None,
    }
}

fn elapsed_us(since: Instant) -> u64 {
    since.elapsed().as_micros() as u64
}

/// A reply's tag, for error messages.
fn brief(reply: &Reply) -> String {
    let text = serde_json::to_string(reply).unwrap_or_default();
    excerpt(&text)
}

fn body_excerpt(body: &[u8]) -> String {
    excerpt(&String::from_utf8_lossy(body))
}

fn excerpt(text: &str) -> String {
    text.chars().take(160).collect()
}
