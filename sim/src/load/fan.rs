//! One simulated fan against a real gateway: log in, join, watch the
//! waiting room over a websocket, and (in a journey) hold, pay and wait
//! for the `purchased` push. Every wait is bounded by the run's deadline
//! and every retry by a count.
//!
//! What the fan wants and when it acts is its [`FanPlan`]: drawn from a
//! scenario's behaviour model (`--scenario`: party size, where to sit,
//! patience, reloads and storms while waiting, retries after "full",
//! show-up, shopping and checkout times, whether it pays again after a
//! decline, bots) or, without one, the plain journey (best 1 or 2 seats
//! anywhere, no delays, never leaves).
//!
//! Two of the gateway's defences are met as the fan page meets them. An
//! event with the pre-queue draw answers a join before its opening
//! `pre_queued`, without a position: the fan waits on its websocket,
//! learns its drawn place from the `position` push at the opening (or
//! from `watching`, if it watched after the draw) and goes on as any
//! waiting fan. A join refused `stamp_required` (proof of work) is made
//! again with a solved challenge ([`super::stamp`]).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use hyper::Method;
use hyper::body::Bytes;
use onsale_schema::message::{
    Area, Command, FanStatus, HoldRejected, HoldRequest, JoinRefused, Joined, PaymentRefused, Reply,
};
use onsale_schema::{FanId, HoldId};
use serde::{Deserialize, Serialize};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

pub use super::behaviour::PAY_ATTEMPTS_MAX;
use super::behaviour::{Behaviour, FanPlan};
use super::net::{FanSocket, HttpConn, Pushes, Target, WsRead};
use super::reconnect::Backoff;
use super::stamp::{
    ChallengeIssued, SOLVES_KEPT_MAX, STAMP_HEADER, STAMPS_PER_JOIN_MAX, Solver,
    asks_for_a_new_stamp,
};
use super::{Mode, unix_now_us};
use crate::behaviour::settle_for_less;
use crate::rng::Rng;

/// Attempts per request while the gateway answers 429/503 (a refused or
/// broken connection is retried as [`Backoff::RECONNECT`] says).
pub const REQUEST_ATTEMPTS_MAX: u32 = 8;
/// Hold requests per fan (refusals that may pass: fair share, a seat
/// taken meanwhile, not admitted yet).
pub const HOLD_ATTEMPTS_MAX: u32 = 12;
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
/// A pre-queued fan that heard the sale open but not its drawn place
/// this long after watches again (and is counted: the gateway should have
/// told it, ahead of the opening's `sale` push).
pub const DRAW_SILENCE_MAX: Duration = Duration::from_secs(5);

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
    /// Gave up waiting (its patience ran out): sent `leave` and went.
    Abandoned,
    /// Admitted, but never opened the seat map (its turn lapses).
    NoShow,
    /// Held seats and did not pay (or not again after a decline).
    CheckoutAbandoned,
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

/// How a pre-queued fan learnt its drawn place.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DrawnVia {
    /// The `position` push the gateway sends each pre-queued watcher at
    /// the draw.
    Push,
    /// `watching` (it watched after the draw, or again after hearing
    /// nothing).
    Watching,
    /// The `admitted` push, with no `position` before it.
    Admitted,
    /// A join or resume answer (a reload's rejoin after the draw).
    Reply,
}

/// A pre-queued fan's drawn place: how and when it learnt it (the place
/// itself is the record's `position`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Drawn {
    pub via: DrawnVia,
    /// Wall clock (Unix µs) when the fan read it.
    pub heard_unix_us: u64,
}

/// Everything one fan saw. One JSON line per fan.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FanRecord {
    pub index: u64,
    pub fan: Option<u64>,
    pub position: Option<u64>,
    pub outcome: Outcome,
    pub stage: Stage,
    /// Latencies in µs: login; join; websocket open → `watching`; hold
    /// asked → placed (retries included; right after admission without a
    /// scenario); payment submitted → purchased.
    pub session_us: Option<u64>,
    pub join_us: Option<u64>,
    pub watch_us: Option<u64>,
    pub hold_us: Option<u64>,
    pub pay_us: Option<u64>,
    pub admission: Option<Admission>,
    /// Wall clock (Unix µs) of the first `position` push showing fans
    /// admitted (`admitted_through` > 0): the waiting fan's first update
    /// after the sale opened.
    #[serde(default)]
    pub first_update_unix_us: Option<u64>,
    pub hold_attempts: u32,
    pub pay_attempts: u32,
    pub held_seats: Vec<u32>,
    pub order: Option<u64>,
    /// Seats of the `purchased` push.
    pub seats: Vec<u32>,
    /// True when the purchase was learnt from `status` (the push never
    /// came): by polling (`seats` are then the held seats), or in the
    /// `watching` answer after a reconnect (its seats).
    pub purchase_polled: bool,
    pub pushes: u64,
    /// Answers 429 and 503 (each retried).
    pub rate_limited: u32,
    pub busy: u32,
    /// Attempts of HTTP requests on a new connection after theirs was
    /// refused or broke.
    pub http_reconnects: u32,
    /// A bot's account (scenario fans).
    pub bot: bool,
    /// Seats first asked for.
    pub party: u8,
    /// Where they were first asked for (scenario fans).
    pub area: Option<Area>,
    /// "Full" answers after which the fan tried again.
    pub full_retries: u32,
    /// Reloads while waiting: the websocket dropped and opened again with
    /// the queue token (some after a plain rejoin).
    pub reloads: u32,
    /// Reloads after which the gateway gave the fan its own position back.
    pub reloads_kept_position: u32,
    /// The first reload that gave another position: (had, got).
    pub reload_moved: Option<(u64, u64)>,
    /// Breaks of the websocket while waiting or paying (it dropped, or a
    /// new one could not be opened), each followed by reconnects until a
    /// `watching` answer.
    pub disconnects: u32,
    /// Websockets opened after those breaks (each watching with the queue
    /// token), whether they opened or not.
    pub reconnect_attempts: u32,
    /// Breaks that ended with a `watching` answer: the fan resumed its
    /// place with its queue token.
    pub resumes: u32,
    /// Resumes after which the fan had its own position.
    pub resumes_kept_position: u32,
    /// The first resume that gave another position: (had, got).
    pub resume_moved: Option<(u64, u64)>,
    /// The last break that ended in a resume: when the fan saw its
    /// websocket break and when it read the resume's `watching` (Unix µs).
    /// Meanwhile it was out of line: an admission behind it then is not
    /// out of order.
    pub last_break: Option<(u64, u64)>,
    /// Ran out of reconnects (websocket or HTTP): attempts or time (see
    /// [`Backoff::RECONNECT`]); the fan ended with an error.
    pub reconnect_gave_up: bool,
    /// Told `pre_queued` at its join: it waited for the opening's draw.
    #[serde(default)]
    pub pre_queued: bool,
    /// How and when a pre-queued fan learnt its drawn place.
    #[serde(default)]
    pub drawn: Option<Drawn>,
    /// A pre-queued fan heard the sale open and not its place within
    /// [`DRAW_SILENCE_MAX`]: it watched again.
    #[serde(default)]
    pub draw_unheard: bool,
    /// Stamps solved (proof of work), one per join the gateway asked one
    /// for, more after a stale one.
    #[serde(default)]
    pub stamps_solved: u32,
    /// Per stamp (the first [`SOLVES_KEPT_MAX`]), in µs: the work alone,
    /// and the challenge asked → solved (the request, the wait for a
    /// solver thread, the work).
    #[serde(default)]
    pub stamp_work_us: Vec<u64>,
    #[serde(default)]
    pub stamp_us: Vec<u64>,
    /// Joins refused by a stamp code (`stamp_required`, `stamp_stale`,
    /// ...), by code.
    #[serde(default)]
    pub stamp_refusals: BTreeMap<String, u32>,
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
    /// The scenario the fans follow, if any.
    pub behaviour: Option<Arc<Behaviour>>,
    /// The start of the run here (storms break at times from it).
    pub started: Instant,
    /// Solves the fans' proof-of-work challenges, a few at once.
    pub solver: Solver,
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
    /// The connection broke once a request that is not safe to send twice
    /// may have been sent: whether it arrived is unknown.
    Lost,
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
    admitted_through: Option<u64>,
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
    let plan = match &ctx.behaviour {
        Some(behaviour) => behaviour.fan_plan(&mut rng),
        None => FanPlan::plain(&mut rng),
    };
    let mut fan = Fan {
        ctx,
        spec,
        rng,
        rec: FanRecord {
            index: spec.index,
            bot: plan.bot,
            party: plan.party,
            area: ctx.behaviour.is_some().then_some(plan.area),
            ..FanRecord::default()
        },
        plan,
        http: None,
        session: None,
        token: String::new(),
        pushes: None,
        settled: false,
        waiting: false,
        retries: 0,
        joined_at: None,
        waiting_since: None,
        watch_pending: false,
        watch_tries: 0,
        reloading: false,
        broke_at: None,
        broke_unix_us: 0,
        reconnect_tries: 0,
        resuming: false,
        refreshes_done: 0,
        last_refresh: None,
        storms_done: 0,
        stamps_asked: false,
        opening_heard: None,
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
    /// Drew the plan; now jitters the backoffs.
    rng: Rng,
    plan: FanPlan,
    rec: FanRecord,
    http: Option<HttpConn>,
    session: Option<String>,
    /// The queue token of the last join.
    token: String,
    pushes: Option<Pushes>,
    settled: bool,
    waiting: bool,
    /// Backoffs so far (each doubles the next).
    retries: u32,
    /// When the fan got its place (patience and reloads count from it).
    joined_at: Option<Instant>,
    /// When `watching` first said it waits (storms before it pass it by).
    waiting_since: Option<Instant>,
    /// A `watch` was sent and has no `watching` answer yet.
    watch_pending: bool,
    /// Watches answered with an error push, in a row.
    watch_tries: u32,
    /// A reload's `watching` is still to come.
    reloading: bool,
    /// When the websocket broke, until the `watching` answer on a new one
    /// (and on the wall clock, Unix µs).
    broke_at: Option<Instant>,
    broke_unix_us: u64,
    /// Websockets opened since it broke.
    reconnect_tries: u32,
    /// A reconnect's `watching` is still to come.
    resuming: bool,
    refreshes_done: usize,
    last_refresh: Option<Instant>,
    /// Storms of the plan passed (taken part in or not).
    storms_done: usize,
    /// The gateway asked this fan for a stamp: its next joins fetch a
    /// challenge first.
    stamps_asked: bool,
    /// A pre-queued fan without its place heard the sale open then.
    opening_heard: Option<Instant>,
}

/// Something a waiting fan does by itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Timer {
    /// Its patience ran out.
    GiveUp,
    /// A periodic reload (`true`: a plain rejoin first).
    Refresh(bool),
    /// A reload in the plan's `n`-th storm.
    Storm(usize),
    /// A pre-queued fan heard the opening but not its place: watch again.
    DrawUnheard,
}

/// What woke a waiting fan.
enum Woke {
    Push(Box<anyhow::Result<Heard>>),
    Timer(Timer),
}

/// What the websocket gave a fan.
enum Heard {
    Push(Box<PushView>),
    /// The websocket dropped (closed, reset, cut off): why.
    Broke(String),
}

impl Fan<'_> {
    async fn journey(&mut self) -> anyhow::Result<Outcome> {
        let (fan, arrival) = match self.arrive().await? {
            Ok(joined) => joined,
            Err(outcome) => return Ok(outcome),
        };
        self.rec.stage = Stage::Watch;
        let started = Instant::now();
        self.watch_or_reconnect().await?;
        if let Some(outcome) = self.until_admitted(fan, started, arrival).await? {
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

    /// Log in and join, again after "full" as the plan says. With the
    /// arrival permit (held from the first connection to `watching`).
    /// `Err(outcome)`: the fan ends here.
    async fn arrive(&mut self) -> anyhow::Result<Result<(FanId, OwnedSemaphorePermit), Outcome>> {
        let permits = Arc::clone(&self.ctx.arrivals);
        let mut arrival = Arc::clone(&permits)
            .acquire_owned()
            .await
            .context("arrivals closed")?;
        let fan = match self.login().await? {
            Ok(fan) => fan,
            Err(outcome) => return Ok(Err(outcome)),
        };
        self.rec.stage = Stage::Join;
        loop {
            let started = Instant::now();
            match self.join(fan).await? {
                Ok((joined, token)) => {
                    self.rec.join_us = Some(elapsed_us(started));
                    if matches!(joined.status, FanStatus::PreQueued { .. }) {
                        // No position until the draw.
                        self.rec.pre_queued = true;
                    } else {
                        self.rec.position = Some(joined.position.0);
                    }
                    self.token = token;
                    self.joined_at = Some(Instant::now());
                    if self.ctx.mode == Mode::Wait {
                        // Only the websocket stays open while waiting.
                        self.http = None;
                    }
                    return Ok(Ok((fan, arrival)));
                }
                Err(Outcome::Full) => {
                    let tries = self.rec.full_retries as usize;
                    let Some(after) = self.plan.full_retries.get(tries).copied() else {
                        return Ok(Err(Outcome::Full));
                    };
                    self.rec.full_retries += 1;
                    // Away for a while: no connection, no arrival slot.
                    drop(arrival);
                    self.http = None;
                    tokio::time::sleep(after).await;
                    arrival = Arc::clone(&permits)
                        .acquire_owned()
                        .await
                        .context("arrivals closed")?;
                }
                Err(outcome) => return Ok(Err(outcome)),
            }
        }
    }

    /// `POST /api/session`: the fan's id.
    async fn login(&mut self) -> anyhow::Result<Result<FanId, Outcome>> {
        let started = Instant::now();
        let body = serde_json::json!({"name": self.spec.name}).to_string();
        let reply = match self.call(Method::POST, "/api/session", body, true).await? {
            Answer::Ok(body) => body,
            Answer::Lost => bail!("login: the connection broke"),
            Answer::GaveUp => return Ok(Err(Outcome::RateLimited)),
            Answer::Refused { status, code } => bail!("login refused: {status} {code}"),
        };
        let session: SessionReply =
            serde_json::from_slice(&reply).context("the login answer is not a session")?;
        self.rec.session_us = Some(elapsed_us(started));
        self.rec.fan = Some(session.fan);
        self.session = Some(session.session);
        Ok(Ok(FanId(session.fan)))
    }

    /// One `join`, retried while the event is busy, with a solved stamp
    /// once the gateway asks for proof of work: where the fan stands
    /// (a position, or pre-queued) and the queue token.
    async fn join(&mut self, fan: FanId) -> anyhow::Result<Result<(Joined, String), Outcome>> {
        let path = format!("/api/events/{}/commands", self.ctx.event);
        let body = serde_json::to_string(&Command::Join { fan }).context("encode join")?;
        let (mut busy, mut stamps) = (0, 0);
        let mut stamp: Option<String> = None;
        // Each turn counts a busy answer or fetches a stamp: at most
        // REQUEST_ATTEMPTS_MAX + STAMPS_PER_JOIN_MAX turns.
        loop {
            if self.stamps_asked && stamp.is_none() {
                if stamps >= STAMPS_PER_JOIN_MAX {
                    bail!("join: refused {STAMPS_PER_JOIN_MAX} stamps in a row");
                }
                stamps += 1;
                stamp = match self.stamp().await? {
                    Ok(stamp) => Some(stamp),
                    Err(outcome) => return Ok(Err(outcome)),
                };
            }
            // A stamp is spent once the gateway checked it: each try
            // takes its own.
            let sent = stamp.take();
            let header = sent.as_deref().map(|s| (STAMP_HEADER, s));
            let answer = self
                .call_with(Method::POST, &path, body.clone(), true, header)
                .await?;
            let reply: Reply = match answer {
                Answer::Ok(body) => serde_json::from_slice(&body)
                    .with_context(|| format!("not a reply: {}", body_excerpt(&body)))?,
                Answer::GaveUp => return Ok(Err(Outcome::RateLimited)),
                Answer::Lost => bail!("join: the connection broke"),
                Answer::Refused { code, .. } if code.starts_with("stamp_") => {
                    *self.rec.stamp_refusals.entry(code.clone()).or_insert(0) += 1;
                    if asks_for_a_new_stamp(&code) {
                        self.stamps_asked = true;
                        continue;
                    }
                    if code != "stamp_busy" {
                        bail!("join: refused with {code}");
                    }
                    // The gateway's spent set is full of live stamps:
                    // this one was not spent; try it again later.
                    stamp = sent;
                    busy += 1;
                    if busy >= REQUEST_ATTEMPTS_MAX {
                        return Ok(Err(Outcome::RateLimited));
                    }
                    self.backoff(None).await;
                    continue;
                }
                Answer::Refused { code, .. } => match refusal(&code) {
                    Some(outcome) => return Ok(Err(outcome)),
                    None => bail!("{path}: refused with {code}"),
                },
            };
            match reply {
                Reply::Joined { joined, token } => return Ok(Ok((joined, token))),
                Reply::JoinRefused {
                    refused: JoinRefused::Busy,
                } => {
                    self.rec.busy += 1;
                    busy += 1;
                    if busy >= REQUEST_ATTEMPTS_MAX {
                        return Ok(Err(Outcome::RateLimited));
                    }
                    self.backoff(None).await;
                }
                Reply::JoinRefused { refused } => return Ok(Err(join_outcome(refused))),
                other => bail!("join: unexpected reply {}", brief(&other)),
            }
        }
    }

    /// A fresh challenge (`GET /api/events/{event}/challenge`), solved:
    /// the stamp to join with.
    async fn stamp(&mut self) -> anyhow::Result<Result<String, Outcome>> {
        let started = Instant::now();
        let path = format!("/api/events/{}/challenge", self.ctx.event);
        let body = match self.call(Method::GET, &path, String::new(), true).await? {
            Answer::Ok(body) => body,
            Answer::GaveUp => return Ok(Err(Outcome::RateLimited)),
            Answer::Lost => bail!("{path}: the connection broke"),
            Answer::Refused { code, .. } => match refusal(&code) {
                Some(outcome) => return Ok(Err(outcome)),
                None => bail!("{path}: refused with {code}"),
            },
        };
        let issued: ChallengeIssued = serde_json::from_slice(&body)
            .with_context(|| format!("{path}: not a challenge: {}", body_excerpt(&body)))?;
        let solved = self.ctx.solver.solve(issued).await?;
        self.rec.stamps_solved += 1;
        if self.rec.stamp_us.len() < SOLVES_KEPT_MAX {
            self.rec.stamp_us.push(elapsed_us(started));
            self.rec.stamp_work_us.push(solved.work.as_micros() as u64);
        }
        Ok(Ok(solved.stamp))
    }

    /// Open the websocket and `watch` the event with the queue token.
    async fn open_watch(&mut self) -> anyhow::Result<()> {
        let mut socket = FanSocket::open(
            &self.ctx.target,
            self.spec.source,
            self.session.as_deref().unwrap_or_default(),
        )
        .await?;
        let watch =
            serde_json::json!({"op": "watch", "event": self.ctx.event, "token": self.token});
        socket.send_text(watch.to_string()).await?;
        self.pushes = Some(socket.into_pushes());
        self.watch_pending = true;
        Ok(())
    }

    /// [`Fan::open_watch`]; a socket that cannot be opened (the gateway
    /// is down, say) is a break of the websocket like a drop.
    async fn watch_or_reconnect(&mut self) -> anyhow::Result<()> {
        match self.open_watch().await {
            Ok(()) => Ok(()),
            Err(e) => self.reconnect(format!("{e:#}")).await,
        }
    }

    /// A `watch` was answered with an error push (rate limited; after a
    /// restart, the event not placed yet): watch again on a new socket, a
    /// bounded number of times, or as the reconnect schedule says during
    /// a break.
    async fn watch_refused(&mut self, code: Option<String>) -> anyhow::Result<()> {
        if self.broke_at.is_some() {
            return self.reconnect(format!("watch refused: {code:?}")).await;
        }
        self.note(format!("watch refused: {code:?}; watching again"));
        self.watch_tries += 1;
        if self.watch_tries >= REQUEST_ATTEMPTS_MAX {
            bail!("watch refused {REQUEST_ATTEMPTS_MAX} times: {code:?}");
        }
        self.backoff(None).await;
        if let Some(pushes) = self.pushes.take() {
            pushes.close().await;
        }
        self.watch_or_reconnect().await
    }

    /// The websocket broke (dropped, or could not be opened): open another
    /// and `watch` with the queue token (the gateway resumes the fan's
    /// place first), after the waits of [`Backoff::RECONNECT`]. The break
    /// lasts until a `watching` answer ([`Fan::resumed`]): a new socket
    /// that drops before it is one more attempt. Gives up (an error) when
    /// the schedule does.
    async fn reconnect(&mut self, why: String) -> anyhow::Result<()> {
        if let Some(pushes) = self.pushes.take() {
            pushes.close().await;
        }
        self.watch_pending = false;
        self.set_waiting(false);
        let broke_at = match self.broke_at {
            Some(at) => at,
            None => {
                self.rec.disconnects += 1;
                self.note(format!("{why}; reconnecting"));
                self.reconnect_tries = 0;
                self.broke_unix_us = unix_now_us();
                *self.broke_at.insert(Instant::now())
            }
        };
        let mut why = why;
        loop {
            let since = broke_at.elapsed();
            let Some(wait) = Backoff::RECONNECT.delay(self.reconnect_tries, since, &mut self.rng)
            else {
                self.rec.reconnect_gave_up = true;
                bail!(
                    "gave up reconnecting the websocket after {} attempts: {why}",
                    self.reconnect_tries
                );
            };
            tokio::time::sleep(wait).await;
            self.reconnect_tries += 1;
            self.rec.reconnect_attempts += 1;
            match self.open_watch().await {
                Ok(()) => {
                    self.resuming = true;
                    return Ok(());
                }
                Err(e) => why = format!("{e:#}"),
            }
        }
    }

    /// The `watching` answer after a reconnect: the break is over, and the
    /// fan must have its own position back. `watching` names it while the
    /// fan waits or is admitted; past that (holding, paying, bought) the
    /// fan asks `resume` over HTTP with its token, which names it for any
    /// fan the event knows (and changes nothing for one past the line).
    async fn resumed(&mut self, fan: FanId, status: Option<&FanStatus>) -> anyhow::Result<()> {
        self.resuming = false;
        self.broke_at = None;
        self.rec.resumes += 1;
        self.rec.last_break = Some((self.broke_unix_us, unix_now_us()));
        let position = match status {
            Some(FanStatus::Waiting { position, .. } | FanStatus::Admitted { position, .. }) => {
                self.learn_drawn(position.0, DrawnVia::Watching);
                position.0
            }
            Some(FanStatus::PreQueued { .. }) => {
                // Still in the pre-queue: its place there is what it had.
                self.rec.resumes_kept_position += 1;
                return Ok(());
            }
            _ => {
                let resume = Command::Resume {
                    fan,
                    token: self.token.clone(),
                };
                match self.command(&resume).await? {
                    Ok(Reply::Joined { joined, .. }) => {
                        self.learn_drawn(joined.position.0, DrawnVia::Reply);
                        joined.position.0
                    }
                    Ok(other) => {
                        self.note(format!("resume after a reconnect: {}", brief(&other)));
                        return Ok(());
                    }
                    Err(outcome) => {
                        self.note(format!("resume after a reconnect: {outcome:?}"));
                        return Ok(());
                    }
                }
            }
        };
        match self.rec.position {
            Some(had) if had != position => {
                self.rec.resume_moved.get_or_insert((had, position));
            }
            _ => self.rec.resumes_kept_position += 1,
        }
        Ok(())
    }

    /// Read pushes until admitted (`None`) or another end (`Some`); give
    /// up and reload as the plan says meanwhile. The arrival permit is
    /// released at the first `watching` answer.
    async fn until_admitted(
        &mut self,
        fan: FanId,
        started: Instant,
        arrival: OwnedSemaphorePermit,
    ) -> anyhow::Result<Option<Outcome>> {
        let mut arrival = Some(arrival);
        loop {
            let woke = match self.next_timer() {
                None => Woke::Push(Box::new(self.next_push().await)),
                Some((at, timer)) => tokio::select! {
                    biased;
                    push = self.next_push() => Woke::Push(Box::new(push)),
                    () = tokio::time::sleep_until(at) => Woke::Timer(timer),
                },
            };
            let push = match woke {
                Woke::Push(heard) => match (*heard)? {
                    Heard::Push(push) => *push,
                    Heard::Broke(why) => {
                        self.reconnect(why).await?;
                        continue;
                    }
                },
                Woke::Timer(Timer::GiveUp) => return self.abandon(fan).await.map(Some),
                Woke::Timer(Timer::Refresh(plain)) => {
                    self.refreshes_done += 1;
                    self.last_refresh = Some(Instant::now());
                    if let Some(outcome) = self.reload(fan, plain).await? {
                        return Ok(Some(outcome));
                    }
                    continue;
                }
                Woke::Timer(Timer::Storm(n)) => {
                    self.storms_done = n + 1;
                    if let Some(outcome) = self.reload(fan, false).await? {
                        return Ok(Some(outcome));
                    }
                    continue;
                }
                Woke::Timer(Timer::DrawUnheard) => {
                    self.watch_again_for_the_draw().await?;
                    continue;
                }
            };
            match push.push.as_str() {
                "watching" => {
                    self.watch_pending = false;
                    self.watch_tries = 0;
                    if self.rec.watch_us.is_none() {
                        self.rec.watch_us = Some(elapsed_us(started));
                    }
                    drop(arrival.take());
                    self.rec.stage = Stage::Waiting;
                    self.settle();
                    if self.reloading {
                        self.reloading = false;
                        self.reloaded(push.status.as_ref());
                    }
                    if self.resuming {
                        self.resumed(fan, push.status.as_ref()).await?;
                    }
                    if let Some(outcome) = sale_outcome(push.sale.as_deref()) {
                        return Ok(Some(outcome));
                    }
                    match push.status {
                        Some(FanStatus::PreQueued { .. }) => {
                            if !self.rec.pre_queued {
                                self.note("pre-queued at watching, not at its join".into());
                                self.rec.pre_queued = true;
                            }
                            self.waiting_since.get_or_insert_with(Instant::now);
                            self.set_waiting(true);
                        }
                        Some(FanStatus::Waiting { position, .. }) => {
                            self.learn_drawn(position.0, DrawnVia::Watching);
                            self.waiting_since.get_or_insert_with(Instant::now);
                            self.set_waiting(true);
                        }
                        Some(FanStatus::Admitted { position, .. }) => {
                            self.learn_drawn(position.0, DrawnVia::Watching);
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
                        self.learn_drawn(position, DrawnVia::Admitted);
                        self.note_position(position);
                    }
                    self.admitted(push.decided_at, true);
                    return Ok(None);
                }
                "position" => {
                    if let Some(position) = push.position {
                        // A pre-queued fan's first is its drawn place.
                        self.learn_drawn(position, DrawnVia::Push);
                    }
                    if push.admitted_through.is_some_and(|a| a > 0)
                        && self.rec.first_update_unix_us.is_none()
                    {
                        self.rec.first_update_unix_us = Some(unix_now_us());
                    }
                }
                "sold_out" => return Ok(Some(Outcome::SoldOut)),
                "sale" => {
                    if let Some(outcome) = sale_outcome(push.state.as_deref()) {
                        return Ok(Some(outcome));
                    }
                    if push.state.as_deref() == Some("on_sale") && self.undrawn() {
                        self.opening_heard.get_or_insert_with(Instant::now);
                    }
                }
                "admission_expired" => return Ok(Some(Outcome::AdmissionExpired)),
                "error" if self.watch_pending => self.watch_refused(push.code).await?,
                "error" => self.note(format!("error push while waiting: {:?}", push.code)),
                _ => {}
            }
        }
    }

    /// The next thing a waiting fan does by itself, if any: give up, a
    /// periodic reload, or a reload in a storm that broke while it waited.
    fn next_timer(&self) -> Option<(Instant, Timer)> {
        let joined_at = self.joined_at?;
        let waiting_since = self.waiting_since?;
        if !self.waiting {
            return None;
        }
        let give_up = self
            .plan
            .patience
            .map(|patience| (joined_at + patience, Timer::GiveUp));
        let refresh = self
            .plan
            .refreshes
            .get(self.refreshes_done)
            .map(|&(after, plain)| {
                let since = self.last_refresh.unwrap_or(joined_at);
                (since + after, Timer::Refresh(plain))
            });
        let storm = self
            .plan
            .storms
            .iter()
            .enumerate()
            .skip(self.storms_done)
            .find(|(_, (breaks, _))| self.ctx.started + *breaks >= waiting_since)
            .map(|(n, &(_, reload))| (self.ctx.started + reload, Timer::Storm(n)));
        let draw = self
            .opening_heard
            .filter(|_| self.undrawn() && !self.rec.draw_unheard)
            .map(|heard| (heard + DRAW_SILENCE_MAX, Timer::DrawUnheard));
        [give_up, refresh, storm, draw]
            .into_iter()
            .flatten()
            .min_by_key(|(at, _)| *at)
    }

    /// Pre-queued, and its drawn place not known yet.
    fn undrawn(&self) -> bool {
        self.rec.pre_queued && self.rec.drawn.is_none()
    }

    /// The sale opened [`DRAW_SILENCE_MAX`] ago and the fan heard nothing
    /// of its drawn place: watch again on a new websocket (once), as a
    /// person would reload a page that seems stuck; `watching` then names
    /// the place.
    async fn watch_again_for_the_draw(&mut self) -> anyhow::Result<()> {
        self.rec.draw_unheard = true;
        self.note("heard the sale open, not its drawn place; watching again".into());
        if let Some(pushes) = self.pushes.take() {
            pushes.close().await;
        }
        self.watch_or_reconnect().await
    }

    /// Drop the websocket and come back with the queue token (after a
    /// plain rejoin if `plain`), as a page reload does: the fan must get
    /// its own position back (checked at the `watching` answer).
    async fn reload(&mut self, fan: FanId, plain: bool) -> anyhow::Result<Option<Outcome>> {
        self.rec.reloads += 1;
        self.reloading = true;
        if let Some(pushes) = self.pushes.take() {
            pushes.close().await;
        }
        if plain {
            match self.join(fan).await? {
                Ok((joined, token)) => {
                    if !matches!(joined.status, FanStatus::PreQueued { .. }) {
                        self.learn_drawn(joined.position.0, DrawnVia::Reply);
                        self.check_reloaded_position(joined.position.0);
                    }
                    self.token = token;
                }
                // The gateway's edge answers joins while the room is full;
                // the page still has its token.
                Err(Outcome::Full) => self.note("rejoin: full; resuming with the token".into()),
                Err(outcome) => return Ok(Some(outcome)),
            }
        }
        self.watch_or_reconnect().await?;
        Ok(None)
    }

    /// The `watching` answer after a reload.
    fn reloaded(&mut self, status: Option<&FanStatus>) {
        let position = match status {
            Some(FanStatus::Waiting { position, .. } | FanStatus::Admitted { position, .. }) => {
                self.learn_drawn(position.0, DrawnVia::Watching);
                position.0
            }
            Some(FanStatus::PreQueued { .. }) if self.rec.position.is_none() => {
                // Still in the pre-queue, where it was.
                self.rec.reloads_kept_position += 1;
                return;
            }
            other => {
                self.note(format!("reloaded as {other:?}"));
                return;
            }
        };
        if self.check_reloaded_position(position) {
            self.rec.reloads_kept_position += 1;
        }
    }

    /// A pre-queued fan's first sight of its drawn place: it waits there
    /// now (its `position`). Nothing for other fans, or a second sight.
    fn learn_drawn(&mut self, position: u64, via: DrawnVia) {
        if !self.rec.pre_queued || self.rec.drawn.is_some() {
            return;
        }
        self.rec.drawn = Some(Drawn {
            via,
            heard_unix_us: unix_now_us(),
        });
        self.opening_heard = None;
        match self.rec.position {
            None => self.rec.position = Some(position),
            Some(p) if p != position => {
                self.note(format!("drawn at position {position}, had {p}"));
            }
            Some(_) => {}
        }
    }

    /// Whether a reload gave the fan its own position; the first that did
    /// not is kept.
    fn check_reloaded_position(&mut self, position: u64) -> bool {
        match self.rec.position {
            Some(had) if had != position => {
                self.rec.reload_moved.get_or_insert((had, position));
                false
            }
            _ => true,
        }
    }

    /// Patience ran out: leave the line (`leave`) and close the socket.
    async fn abandon(&mut self, fan: FanId) -> anyhow::Result<Outcome> {
        self.set_waiting(false);
        match self.command(&Command::Leave { fan }).await? {
            Ok(Reply::Status { .. }) => {}
            Ok(other) => self.note(format!("leave: unexpected reply {}", brief(&other))),
            Err(outcome) => self.note(format!("leave: {outcome:?}")),
        }
        if let Some(pushes) = self.pushes.take() {
            pushes.close().await;
        }
        self.rec.stage = Stage::Done;
        Ok(Outcome::Abandoned)
    }

    fn admitted(&mut self, decided_at_ms: Option<u64>, via_push: bool) {
        self.rec.admission = Some(Admission {
            received_unix_us: unix_now_us(),
            decided_at_ms,
            via_push,
        });
        self.set_waiting(false);
    }

    /// Show up, shop, hold, pay and wait for the purchase, as planned.
    async fn shop(&mut self, fan: FanId) -> anyhow::Result<Outcome> {
        self.rec.stage = Stage::Hold;
        if self.plan.opens_map {
            let Some(show_up) = self.plan.show_up else {
                self.rec.stage = Stage::Done;
                return Ok(Outcome::NoShow);
            };
            tokio::time::sleep(show_up).await;
            if let Some(outcome) = self.enter(fan).await? {
                return Ok(outcome);
            }
            tokio::time::sleep(self.plan.shopping).await;
        }
        let started = Instant::now();
        let hold = match self.hold(fan).await? {
            Ok(hold) => hold,
            Err(outcome) => return Ok(outcome),
        };
        self.rec.hold_us = Some(elapsed_us(started));
        let Some(checkout) = self.plan.checkout else {
            // The hold lapses at its deadline.
            self.rec.stage = Stage::Done;
            return Ok(Outcome::CheckoutAbandoned);
        };
        tokio::time::sleep(checkout).await;
        self.rec.stage = Stage::Pay;
        self.pay(fan, hold).await
    }

    /// `enter`: the fan opens the seat map. `Some(outcome)`: its turn is over.
    async fn enter(&mut self, fan: FanId) -> anyhow::Result<Option<Outcome>> {
        let reply = match self.command(&Command::Enter { fan }).await? {
            Ok(reply) => reply,
            Err(outcome) => return Ok(Some(outcome)),
        };
        match reply {
            Reply::Status {
                status: Some(FanStatus::Admitted { .. }),
            } => Ok(None),
            Reply::Status {
                status: Some(FanStatus::Expired) | None,
            } => Ok(Some(Outcome::AdmissionExpired)),
            other => bail!("enter: unexpected reply {}", brief(&other)),
        }
    }

    /// Hold the plan's seats, settling for fewer or anywhere (as the
    /// behaviour model says) and retrying refusals that may pass.
    async fn hold(&mut self, fan: FanId) -> anyhow::Result<Result<HoldId, Outcome>> {
        let mut count = self.plan.party;
        let mut area = self.plan.area;
        while self.rec.hold_attempts < HOLD_ATTEMPTS_MAX {
            self.rec.hold_attempts += 1;
            let request = HoldRequest::Best { count, area };
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
            if let Some(less) = settle_for_less(count, area, &rejected) {
                (count, area) = less;
                continue;
            }
            match rejected {
                HoldRejected::NotEnoughSeats => return Ok(Err(Outcome::NoSeats)),
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
            let push = match push? {
                Heard::Push(push) => *push,
                Heard::Broke(why) => {
                    self.reconnect(why).await?;
                    continue;
                }
            };
            match push.push.as_str() {
                "watching" => {
                    self.watch_pending = false;
                    self.watch_tries = 0;
                    if self.resuming {
                        self.resumed(fan, push.status.as_ref()).await?;
                    }
                    match push.status {
                        // Bought while the fan was away: the push is gone.
                        Some(FanStatus::Purchased { order, seats, .. }) => {
                            self.rec.pay_us = Some(elapsed_us(started));
                            self.rec.order = Some(order.0);
                            self.rec.seats = seats.iter().map(|s| s.0).collect();
                            self.rec.purchase_polled = true;
                            self.rec.stage = Stage::Done;
                            return Ok(Outcome::Purchased);
                        }
                        Some(FanStatus::Holding { .. }) => {}
                        // The status poll settles it.
                        other => self.note(format!("watching while paying: {other:?}")),
                    }
                }
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
                "error" if self.watch_pending => self.watch_refused(push.code).await?,
                "error" => self.note(format!("error push while paying: {:?}", push.code)),
                _ => {}
            }
        }
    }

    /// `Some(outcome)`: the payment was refused for good.
    async fn submit(&mut self, fan: FanId, hold: HoldId) -> anyhow::Result<Option<Outcome>> {
        self.rec.pay_attempts += 1;
        let Some(answer) = self
            .command_or_lost(&Command::SubmitPayment { fan, hold })
            .await?
        else {
            // Whether the payment arrived shows in `status`, which `pay`
            // polls: paying, bought, or (none in) as after a decline.
            self.note("submit payment: the answer was lost; asking status".into());
            return Ok(None);
        };
        let reply = match answer {
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
            Some(FanStatus::Holding { paying: false, .. }) => {
                let declined = self.rec.pay_attempts.saturating_sub(1) as usize;
                match self.plan.pay_again.get(declined).copied() {
                    Some(Some(after)) => {
                        self.note("payment declined; paying again".into());
                        tokio::time::sleep(after).await;
                        self.submit(fan, hold).await
                    }
                    Some(None) => Ok(Some(Outcome::CheckoutAbandoned)),
                    None => Ok(Some(Outcome::PaymentRefused)),
                }
            }
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

    /// One event command that is safe to send twice ([`resendable`]);
    /// `Err(outcome)` when the gateway gave up on us.
    async fn command(&mut self, command: &Command) -> anyhow::Result<Result<Reply, Outcome>> {
        debug_assert!(resendable(command), "{command:?}");
        self.command_or_lost(command)
            .await?
            .context("the connection broke and the command was not sent again")
    }

    /// One event command; `None`: its connection broke once it may have
    /// been sent, and it is not safe to send twice ([`resendable`]).
    async fn command_or_lost(
        &mut self,
        command: &Command,
    ) -> anyhow::Result<Option<Result<Reply, Outcome>>> {
        let path = format!("/api/events/{}/commands", self.ctx.event);
        let body = serde_json::to_string(command).context("encode command")?;
        let reply = match self
            .call(Method::POST, &path, body, resendable(command))
            .await?
        {
            Answer::Lost => return Ok(None),
            Answer::Ok(body) => serde_json::from_slice(&body)
                .map(Ok)
                .with_context(|| format!("not a reply: {}", String::from_utf8_lossy(&body)))?,
            Answer::GaveUp => Err(Outcome::RateLimited),
            Answer::Refused { code, .. } => match refusal(&code) {
                Some(outcome) => Err(outcome),
                None => bail!("{path}: refused with {code}"),
            },
        };
        Ok(Some(reply))
    }

    /// One request with the session, retried on 429/503 (after
    /// `Retry-After`, at most [`REQUEST_ATTEMPTS_MAX`] answers) and on a
    /// refused or broken connection (on a new one, as
    /// [`Backoff::RECONNECT`] says; an error when it gives up). A request
    /// that is not safe to send twice (`resend` false) is sent again only
    /// when its connection could not be opened (it never left): once it
    /// may have been sent, a broken connection answers [`Answer::Lost`].
    async fn call(
        &mut self,
        method: Method,
        path: &str,
        body: String,
        resend: bool,
    ) -> anyhow::Result<Answer> {
        self.call_with(method, path, body, resend, None).await
    }

    /// [`Fan::call`] with one more header (a join's stamp).
    async fn call_with(
        &mut self,
        method: Method,
        path: &str,
        body: String,
        resend: bool,
        header: Option<(&str, &str)>,
    ) -> anyhow::Result<Answer> {
        let body = body.into_bytes();
        let mut busy_answers = 0;
        let mut broke: Option<(Instant, u32)> = None;
        loop {
            if self.http.as_ref().is_none_or(|h| !h.is_open()) {
                match HttpConn::open(&self.ctx.target, self.spec.source).await {
                    Ok(http) => self.http = Some(http),
                    Err(e) => {
                        self.connection_broke(&mut broke, path, &e).await?;
                        continue;
                    }
                }
            }
            let http = self.http.as_mut().expect("opened above");
            let bearer = self.session.as_deref();
            // A GET carries no body.
            let json = (method != Method::GET).then(|| body.clone());
            let answer = match http
                .send_with(method.clone(), path, bearer, json, header)
                .await
            {
                Ok(answer) => answer,
                Err(e) => {
                    self.http = None;
                    if !resend {
                        self.note(format!("{path}: {e:#}; not sent again"));
                        return Ok(Answer::Lost);
                    }
                    self.connection_broke(&mut broke, path, &e).await?;
                    continue;
                }
            };
            match answer.status {
                200 => return Ok(Answer::Ok(answer.body)),
                429 | 503 => {
                    if answer.status == 429 {
                        self.rec.rate_limited += 1;
                    } else {
                        self.rec.busy += 1;
                    }
                    busy_answers += 1;
                    if busy_answers >= REQUEST_ATTEMPTS_MAX {
                        return Ok(Answer::GaveUp);
                    }
                    self.backoff(answer.retry_after_s).await;
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
    }

    /// A request's connection was refused or broke (`broke`: since when,
    /// and the attempts since): wait as [`Backoff::RECONNECT`] says before
    /// the next attempt, or give up (an error).
    async fn connection_broke(
        &mut self,
        broke: &mut Option<(Instant, u32)>,
        path: &str,
        e: &anyhow::Error,
    ) -> anyhow::Result<()> {
        let (since, tries) = broke.get_or_insert_with(|| (Instant::now(), 0));
        let Some(wait) = Backoff::RECONNECT.delay(*tries, since.elapsed(), &mut self.rng) else {
            self.rec.reconnect_gave_up = true;
            bail!("{path}: gave up reconnecting after {tries} attempts: {e:#}");
        };
        if *tries == 0 {
            self.note(format!("{path}: {e:#}; retrying on a new connection"));
        }
        *tries += 1;
        self.rec.http_reconnects += 1;
        tokio::time::sleep(wait).await;
        Ok(())
    }

    /// The next push, parsed, or the websocket's break; garbage is an
    /// error.
    async fn next_push(&mut self) -> anyhow::Result<Heard> {
        loop {
            let pushes = self.pushes.as_mut().context("no websocket")?;
            let text = match pushes.next().await? {
                WsRead::Text(text) => text,
                WsRead::Closed => {
                    return Ok(Heard::Broke("the gateway closed the websocket".into()));
                }
                WsRead::Broken(why) => return Ok(Heard::Broke(why)),
            };
            self.rec.pushes += 1;
            if self.rec.pushes > PUSHES_MAX {
                bail!("more than {PUSHES_MAX} pushes");
            }
            match serde_json::from_str::<PushView>(&text) {
                Ok(push) => return Ok(Heard::Push(Box::new(push))),
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

/// Whether a fan's command may be sent again when its connection broke
/// after it may have been sent: the event answers a repeat as it did the
/// first, or in a way the fan takes for what it is.
fn resendable(command: &Command) -> bool {
    match command {
        // A fan joins once (a rejoin keeps its position), resumes to its
        // token's position, leaves and enters once; the rest only read.
        Command::Join { .. }
        | Command::JoinWithCode { .. }
        | Command::Resume { .. }
        | Command::Leave { .. }
        | Command::Enter { .. }
        | Command::Status { .. }
        | Command::Overview
        | Command::SectionSeats { .. } => true,
        // A repeat is refused `already_holding`, naming the hold: the fan
        // takes it as its own (`Fan::hold`).
        Command::Hold { .. } => true,
        // While a payment is with the provider a repeat is refused
        // `pending`, but once the seats are sold it is 409
        // `hold_not_found`, which the fan would take for a lapsed hold,
        // and after a decline it is a second payment the fan did not
        // choose: the fan asks `status` instead. A repeated release is
        // `hold_not_found` too.
        Command::SubmitPayment { .. } | Command::Release { .. } => false,
        // Not the fans' (the provider's and the operators').
        Command::ProviderAnswer { .. }
        | Command::Sale { .. }
        | Command::SetStamp { .. }
        | Command::Audit => false,
    }
}

/// How a fan ends on a refusal with this stable code (`None`: not one
/// a fan expects).
fn refusal(code: &str) -> Option<Outcome> {
    Some(match code {
        "sold_out" => Outcome::SoldOut,
        "waiting_room_full" => Outcome::Full,
        "sale_closed" => Outcome::Closed,
        "admission_expired" => Outcome::AdmissionExpired,
        "hold_not_found" => Outcome::HoldExpired,
        "payment_late" => Outcome::PaymentRefused,
        _ => return None,
    })
}

fn join_outcome(refused: JoinRefused) -> Outcome {
    match refused {
        JoinRefused::Full => Outcome::Full,
        JoinRefused::SoldOut => Outcome::SoldOut,
        JoinRefused::Closed => Outcome::Closed,
        JoinRefused::TicketLimit => Outcome::TicketLimit,
        JoinRefused::Busy => Outcome::RateLimited,
        JoinRefused::InvalidToken | JoinRefused::CodeRequired | JoinRefused::CodeUsed => {
            Outcome::Error
        }
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
