//! What a load run found, checked from the fans' side.
//!
//! Checks (each a count; any non-zero count is a violation):
//!
//! - **No seat bought twice**: every seat in every `purchased` push (or,
//!   when the purchase was learnt by polling, every held seat) belongs to
//!   one fan only.
//! - **Positions are unique**: no two fans were given the same position.
//! - **Admissions decided in position order**: from the `decided_at` of
//!   the `admitted` pushes, a fan is never admitted later than a fan
//!   behind it (by more than `decision_tolerance_ms`, default 0: both
//!   times come from the event's one clock, in whole ms), unless that fan
//!   was admitted while this one was away: from its websocket's break to
//!   its resume's `watching` (the last break only; counted as
//!   `admitted_while_away`). The event cannot admit a fan that has not
//!   come back, as the simulator's referee also holds. The fan reads
//!   `watching` a little after the event resumed it, so an inversion in
//!   that last round trip goes unseen.
//! - **Admissions delivered in position order**: by the fans' receive
//!   times, a fan is never told later than a fan behind it by more than
//!   `order_tolerance_ms`. Different sockets race: the gateway writes to
//!   thousands of connections one after the other and each worker reads
//!   its own sockets, so the tolerance (default 1,000 ms) absorbs fan-out
//!   and scheduling skew, not a real reordering of whole batches.
//!   Fans whose admission came in `watching` (they connected after it)
//!   are left out.
//! - **Nobody passed over**: no fan still waiting at the end has a
//!   position below a fan admitted more than `order_tolerance_ms` before
//!   the end. Fans that gave up waiting (`abandoned`) are not waiting.
//! - **Reloads keep the place**: a fan that dropped its websocket and
//!   came back with its queue token (or rejoined) is given its own
//!   position again.
//! - **Resumes keep the place**: a fan whose websocket broke (the gateway
//!   died, say) and that reconnected with its queue token is given its
//!   own position again. Fans that ran out of reconnects are counted
//!   (`resumes.fans_gave_up`), not a violation: they end with an error.
//! - **Told = durable** (with the operator token: the event's audit at the
//!   end): every purchase a fan was told of is an order of that fan with
//!   those seats; no fan told "refused" or "expired", and none that
//!   left, never showed up or never paid, has an order anyway;
//!   the event's own audit finds no problem. Orders no fan heard of (a fan
//!   still paying at the deadline) are counted, not a violation.
//! - **Every pre-queued fan is placed**: with the pre-queue draw, no fan
//!   told `pre_queued` is still waiting at the end without having learnt
//!   its drawn place, once the sale opened more than
//!   [`DRAW_GRACE_MS`] before the end. How each learnt it (the `position`
//!   push, `watching`, ...) is counted, and so are fans that heard the
//!   opening but not their place (they watched again: not a violation,
//!   but a fan page would have sat there).
//!
//! The report also gives the opening's admissions apart
//! ([`Admissions::at_opening`]: decided within [`OPENING_WINDOW_MS`] of the
//! opening), to compare an opening with the draw and without, and the
//! proof of work the fans did ([`Stamps`]).

use std::collections::BTreeMap;

use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

use onsale_schema::message::Audit;
use onsale_schema::snapshot::OrderRecord;

use onsale_schema::message::Area;

use super::{Admission, DrawnVia, FanRecord, Mode, Outcome};

/// Examples kept per violated check.
pub const EXAMPLES_MAX: usize = 10;
/// Distinct error messages listed.
pub const ERRORS_LISTED_MAX: usize = 10;
/// Admissions decided this long after the opening (its request, or its
/// scheduled time) are the opening's.
pub const OPENING_WINDOW_MS: u64 = 1_000;
/// A pre-queued fan still without its drawn place this long after the
/// opening is a violation (its page would show nothing; the load fan
/// watches again after 5 s).
pub const DRAW_GRACE_MS: u64 = 15_000;

/// What the coordinator knows of the run besides the fans' records.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RunInfo {
    pub target: String,
    pub event: u64,
    pub mode: Option<Mode>,
    pub fans: u64,
    pub workers: u32,
    pub sources: Vec<String>,
    pub duration_s: u64,
    pub started_unix_ms: u64,
    pub ended_unix_ms: u64,
    /// When the sale-open request was sent, if the driver opened it.
    pub sale_opened_unix_ms: Option<u64>,
    /// What opened it: "start", "all_waiting", "half_time".
    pub sale_opened_when: Option<String>,
    /// Why opening the sale failed, if it did.
    pub sale_open_error: Option<String>,
    /// Why the audit could not be read, if it could not.
    pub audit_error: Option<String>,
    /// Most fans seen waiting at once (sum over the workers' gauges).
    pub waiting_max: u64,
    pub order_tolerance_ms: u64,
    pub decision_tolerance_ms: u64,
    /// Worker exit statuses, as text.
    pub workers_exit: Vec<String>,
    /// The scenario the fans followed (`--scenario`), by name.
    pub scenario: Option<String>,
    pub time_scale: Option<f64>,
    /// The driver created the event with the pre-queue draw.
    #[serde(default)]
    pub pre_queue_draw: bool,
    /// The proof of work the driver asked joins for (`--stamp-bits`).
    #[serde(default)]
    pub stamp_bits: Option<u8>,
    /// Solver threads per worker (the cores a worker may run on).
    #[serde(default)]
    pub solver_threads: usize,
}

/// Latency percentiles in ms.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    pub count: u64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Latency {
    /// From durations in µs (sorted here).
    #[must_use]
    pub fn of_us(values: &mut [u64]) -> Latency {
        if values.is_empty() {
            return Latency::default();
        }
        values.sort_unstable();
        let ms = |us: u64| (us as f64 / 1000.0 * 1000.0).round() / 1000.0;
        let at = |q: f64| ms(values[((values.len() as f64 - 1.0) * q).round() as usize]);
        let sum: u128 = values.iter().map(|v| u128::from(*v)).sum();
        Latency {
            count: values.len() as u64,
            mean_ms: ms((sum / values.len() as u128) as u64),
            p50_ms: at(0.5),
            p90_ms: at(0.9),
            p99_ms: at(0.99),
            max_ms: at(1.0),
        }
    }
}

/// Latencies of each step.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Latencies {
    pub session: Latency,
    pub join: Latency,
    /// Websocket connect → `watching`.
    pub watch: Latency,
    /// Hold asked → placed (retries included); right after admission
    /// without a scenario.
    pub hold: Latency,
    /// Payment submitted → `purchased` push.
    pub pay_to_purchased: Latency,
}

/// Admissions as the fans saw them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Admissions {
    pub admitted: u64,
    pub via_push: u64,
    /// Admitted already when the websocket opened (`watching` said so).
    pub via_watching: u64,
    /// `admitted` pushes without `decided_at`.
    pub without_decided_at: u64,
    /// Receive wall clock − `decided_at`: the gateway's fan-out delay.
    pub delivery: Latency,
    /// `decided_at` later than the receive time (clock skew; counted as 0).
    pub delivery_negative: u64,
    /// Receive wall clock − the sale-open request (if the driver opened it).
    pub after_open: Latency,
    /// Fans still waiting after the opening: the sale-open request → their
    /// first `position` push showing fans admitted. `not_updated`: fans
    /// that were neither admitted nor told before the run ended.
    #[serde(default)]
    pub position_update: Latency,
    #[serde(default)]
    pub not_updated: u64,
    /// Admissions per second between the first and the last (pushes).
    pub per_s: f64,
    /// The opening's admissions (by push, decided within
    /// [`OPENING_WINDOW_MS`] of the opening): decided → received. With
    /// the draw on, these fans heard their drawn place just before.
    #[serde(default)]
    pub at_opening: Latency,
}

/// One check's result.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Check {
    pub violations: u64,
    pub examples: Vec<String>,
}

impl Check {
    fn add(&mut self, example: impl FnOnce() -> String) {
        self.violations += 1;
        if self.examples.len() < EXAMPLES_MAX {
            self.examples.push(example());
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Checks {
    pub seats_bought: u64,
    pub orders: u64,
    pub seats_bought_twice: Check,
    pub positions_shared: Check,
    pub decided_out_of_order: Check,
    /// Fans admitted later than a fan behind them only because that fan
    /// was admitted while they were away (their websocket broken, not yet
    /// resumed: after a restart the event knows only the fans that came
    /// back): not a violation, counted.
    pub admitted_while_away: u64,
    pub delivered_out_of_order: Check,
    /// Largest lag (ms) by which a fan was told after a fan behind it,
    /// within the tolerance or not.
    pub delivery_lag_worst_ms: f64,
    pub passed_over: Check,
    /// Reloads after which a fan was given another position.
    pub reload_moved: Check,
    /// Resumes after a broken websocket that gave another position.
    pub resume_moved: Check,
    /// Pre-queued fans still waiting at the end without their drawn
    /// place, though the sale opened over [`DRAW_GRACE_MS`] before.
    #[serde(default)]
    pub never_placed: Check,
    /// Against the event's audit, when it was read.
    pub audit: Option<AuditCheck>,
    /// Purchases whose seats differ from the hold's (noted, not a violation).
    pub purchased_not_held: u64,
    /// Purchases learnt by polling `status`: the `purchased` push never came.
    pub purchases_without_push: u64,
    /// "ok" or "violated".
    pub verdict: String,
}

/// The fans' purchases against the event's orders.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AuditCheck {
    /// The event's own verdict (`None`: every invariant holds).
    pub problem: Option<String>,
    /// Orders of this run's fans in the audit.
    pub orders: u64,
    /// Purchases a fan was told of that the audit lacks (or has with other
    /// seats or another fan).
    pub told_not_durable: Check,
    /// Orders of fans that were told their payment was refused or their
    /// hold expired, or that left the line, never showed up or never paid.
    pub sold_after_refusal: Check,
    /// Orders of fans that ended without hearing (still paying, timed out).
    pub orders_unheard: u64,
}

/// `report.json`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LoadReport {
    pub run: RunInfo,
    pub wall_s: f64,
    pub outcomes: BTreeMap<String, u64>,
    pub answers_429: u64,
    pub answers_503: u64,
    /// Attempts of HTTP requests on a new connection after theirs was
    /// refused or broke.
    pub http_reconnects: u64,
    /// Websockets that broke and the fans' resumes.
    pub resumes: Resumes,
    pub latency: Latencies,
    pub admissions: Admissions,
    pub checks: Checks,
    /// The most frequent error messages, with counts.
    pub errors: Vec<(String, u64)>,
    /// Fans that sent no result (a worker died or stopped early).
    pub fans_missing: u64,
    /// What the scenario's fans did (with `--scenario`).
    pub behaviour: Option<BehaviourReport>,
    /// The pre-queue draw as the fans saw it (when any was pre-queued).
    #[serde(default)]
    pub pre_queue: Option<PreQueue>,
    /// The proof of work the fans did (when any was asked for a stamp).
    #[serde(default)]
    pub stamps: Option<Stamps>,
}

/// Fans who joined a drawn event before its opening: told `pre_queued`,
/// then their drawn place.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PreQueue {
    pub pre_queued: u64,
    /// Pre-queued fans that learnt their drawn place, and how: the
    /// `position` push at the draw, `watching`, the `admitted` push, a
    /// join or resume answer.
    pub placed: u64,
    pub via_push: u64,
    pub via_watching: u64,
    pub via_admitted: u64,
    pub via_reply: u64,
    /// Heard the sale open but not their place within 5 s (then watched
    /// again, and learnt it from `watching`).
    pub unheard_at_opening: u64,
    /// The lowest and highest drawn place, and whether the places form
    /// one run without gaps (they do when every pre-queued fan of the
    /// event is one of the run's).
    pub first_place: Option<u64>,
    pub last_place: Option<u64>,
    pub contiguous: bool,
    /// The opening (request or scheduled time) → the fan read its place.
    pub opening_to_place: Latency,
    /// Pre-queued fans admitted at the opening, decided → received.
    pub admitted_at_opening: Latency,
}

/// Proof of work: stamps the fans solved, and joins refused for want of
/// one (by stable code).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Stamps {
    pub solved: u64,
    /// Fans that solved at least one, and bots' accounts among them.
    pub fans: u64,
    pub bot_accounts: u64,
    pub bot_solved: u64,
    /// Per stamp: the work alone, and challenge asked → solved (the
    /// request, the wait for a solver thread, the work). Times of the
    /// first 16 stamps of each fan.
    pub work: Latency,
    pub stamp: Latency,
    /// The work of all the stamps, in core-seconds, and bots' share.
    pub work_s: f64,
    pub bot_work_s: f64,
    /// Joins refused by stamp code.
    pub refused: BTreeMap<String, u64>,
}

/// Websockets that broke while fans waited or paid (the gateway died or
/// closed them), and how the fans came back: on a new websocket watching
/// with their queue token, after a jittered doubling wait.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Resumes {
    /// Breaks (a drop, or a websocket that could not be opened), and the
    /// fans they hit.
    pub disconnects: u64,
    pub fans_disconnected: u64,
    /// Websockets opened after those breaks, whether they opened or not.
    pub reconnect_attempts: u64,
    /// Breaks that ended with a `watching` answer, and those after which
    /// the fan had its own position (the others are `resume_moved`, or
    /// noted when the position could not be read).
    pub resumes: u64,
    pub resumes_kept_position: u64,
    /// Fans that ran out of reconnects (websocket or HTTP): they ended
    /// with an error.
    pub fans_gave_up: u64,
}

/// The scenario's behaviour as the fans acted it out.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct BehaviourReport {
    pub scenario: String,
    pub time_scale: f64,
    /// Bots' accounts, and the seats they bought.
    pub bots: u64,
    pub bot_seats: u64,
    /// Fans by the number of seats they first asked for.
    pub party_sizes: BTreeMap<u8, u64>,
    /// Fans by where they first asked for seats: `anywhere`,
    /// `price_level N`, `section N` (the event's numbering).
    pub areas: BTreeMap<String, u64>,
    /// Fans that tried again after "full", and their retries.
    pub fans_retried_full: u64,
    pub full_retries: u64,
    /// Fans that gave up waiting (outcome `abandoned`).
    pub abandoned: u64,
    /// Reloads while waiting, fans that reloaded, and those of them whose
    /// every reload gave their own position back.
    pub reloads: u64,
    pub fans_reloaded: u64,
    pub fans_reloaded_kept_position: u64,
}

impl LoadReport {
    #[must_use]
    pub fn is_violated(&self) -> bool {
        self.checks.verdict != "ok"
    }
}

/// Analyse the fans' records.
#[must_use]
pub fn analyse(run: RunInfo, records: &[FanRecord], audit: Option<&Audit>) -> LoadReport {
    let mut outcomes = BTreeMap::new();
    for r in records {
        let name = serde_json::to_value(r.outcome)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        *outcomes.entry(name).or_insert(0) += 1;
    }
    let mut report = LoadReport {
        wall_s: run.ended_unix_ms.saturating_sub(run.started_unix_ms) as f64 / 1000.0,
        fans_missing: run.fans.saturating_sub(records.len() as u64),
        outcomes,
        answers_429: records.iter().map(|r| u64::from(r.rate_limited)).sum(),
        answers_503: records.iter().map(|r| u64::from(r.busy)).sum(),
        http_reconnects: records.iter().map(|r| u64::from(r.http_reconnects)).sum(),
        resumes: resumes(records),
        latency: latencies(records),
        admissions: admissions(&run, records),
        checks: Checks::default(),
        errors: errors(records),
        behaviour: None,
        pre_queue: pre_queue(&run, records),
        stamps: stamps(records),
        run,
    };
    report.checks = checks(&report.run, records, audit);
    report.behaviour = report
        .run
        .scenario
        .clone()
        .map(|name| behaviour(name, report.run.time_scale.unwrap_or(1.0), records));
    report
}

fn behaviour(scenario: String, time_scale: f64, records: &[FanRecord]) -> BehaviourReport {
    let mut b = BehaviourReport {
        scenario,
        time_scale,
        ..BehaviourReport::default()
    };
    for r in records {
        if r.bot {
            b.bots += 1;
            if r.outcome == Outcome::Purchased {
                b.bot_seats += r.seats.len() as u64;
            }
        }
        *b.party_sizes.entry(r.party).or_insert(0) += 1;
        let area = match r.area {
            Some(Area::Anywhere) | None => "anywhere".to_owned(),
            Some(Area::PriceLevel { price_level }) => format!("price_level {}", price_level.0),
            Some(Area::Section { section }) => format!("section {}", section.0),
        };
        *b.areas.entry(area).or_insert(0) += 1;
        if r.full_retries > 0 {
            b.fans_retried_full += 1;
            b.full_retries += u64::from(r.full_retries);
        }
        if r.outcome == Outcome::Abandoned {
            b.abandoned += 1;
        }
        if r.reloads > 0 {
            b.reloads += u64::from(r.reloads);
            b.fans_reloaded += 1;
            if r.reload_moved.is_none() && r.reloads_kept_position > 0 {
                b.fans_reloaded_kept_position += 1;
            }
        }
    }
    b
}

/// When the sale opened, if known (µs): the driver's request or the
/// scheduled time.
fn opened_us(run: &RunInfo) -> Option<u64> {
    run.sale_opened_unix_ms.map(|ms| ms * 1000)
}

/// Whether an admission was the opening's: decided within
/// [`OPENING_WINDOW_MS`] of it.
fn at_opening(run: &RunInfo, admission: &Admission) -> bool {
    let (Some(opened), Some(decided)) = (run.sale_opened_unix_ms, admission.decided_at_ms) else {
        return false;
    };
    admission.via_push && decided >= opened && decided <= opened + OPENING_WINDOW_MS
}

/// Decided → received, µs (0 when the clocks disagree).
fn delivery_us(admission: &Admission) -> Option<u64> {
    let decided_us = admission.decided_at_ms?.saturating_mul(1000);
    Some(admission.received_unix_us.saturating_sub(decided_us))
}

fn pre_queue(run: &RunInfo, records: &[FanRecord]) -> Option<PreQueue> {
    let pre_queued: Vec<&FanRecord> = records.iter().filter(|r| r.pre_queued).collect();
    if pre_queued.is_empty() {
        return None;
    }
    let mut p = PreQueue {
        pre_queued: pre_queued.len() as u64,
        ..PreQueue::default()
    };
    let (mut to_place, mut admitted) = (Vec::new(), Vec::new());
    let mut places = Vec::new();
    for r in &pre_queued {
        if r.draw_unheard {
            p.unheard_at_opening += 1;
        }
        if let Some(a) = r.admission.filter(|a| at_opening(run, a)) {
            admitted.extend(delivery_us(&a));
        }
        let Some(drawn) = r.drawn else { continue };
        p.placed += 1;
        match drawn.via {
            DrawnVia::Push => p.via_push += 1,
            DrawnVia::Watching => p.via_watching += 1,
            DrawnVia::Admitted => p.via_admitted += 1,
            DrawnVia::Reply => p.via_reply += 1,
        }
        places.extend(r.position);
        if let Some(opened) = opened_us(run) {
            to_place.push(drawn.heard_unix_us.saturating_sub(opened));
        }
    }
    places.sort_unstable();
    p.first_place = places.first().copied();
    p.last_place = places.last().copied();
    p.contiguous = places.windows(2).all(|w| w[1] == w[0] + 1);
    p.opening_to_place = Latency::of_us(&mut to_place);
    p.admitted_at_opening = Latency::of_us(&mut admitted);
    Some(p)
}

fn stamps(records: &[FanRecord]) -> Option<Stamps> {
    let mut s = Stamps::default();
    let (mut work, mut stamp) = (Vec::new(), Vec::new());
    let mut work_us = 0u64;
    let mut bot_work_us = 0u64;
    for r in records {
        for (code, n) in &r.stamp_refusals {
            *s.refused.entry(code.clone()).or_insert(0) += u64::from(*n);
        }
        if r.stamps_solved == 0 {
            continue;
        }
        s.fans += 1;
        s.solved += u64::from(r.stamps_solved);
        let fan_work: u64 = r.stamp_work_us.iter().sum();
        work_us += fan_work;
        if r.bot {
            s.bot_accounts += 1;
            s.bot_solved += u64::from(r.stamps_solved);
            bot_work_us += fan_work;
        }
        work.extend_from_slice(&r.stamp_work_us);
        stamp.extend_from_slice(&r.stamp_us);
    }
    if s.solved == 0 && s.refused.is_empty() {
        return None;
    }
    s.work = Latency::of_us(&mut work);
    s.stamp = Latency::of_us(&mut stamp);
    s.work_s = work_us as f64 / 1e6;
    s.bot_work_s = bot_work_us as f64 / 1e6;
    Some(s)
}

fn resumes(records: &[FanRecord]) -> Resumes {
    let mut r = Resumes::default();
    for f in records {
        if f.disconnects > 0 {
            r.disconnects += u64::from(f.disconnects);
            r.fans_disconnected += 1;
        }
        r.reconnect_attempts += u64::from(f.reconnect_attempts);
        r.resumes += u64::from(f.resumes);
        r.resumes_kept_position += u64::from(f.resumes_kept_position);
        if f.reconnect_gave_up {
            r.fans_gave_up += 1;
        }
    }
    r
}

fn latencies(records: &[FanRecord]) -> Latencies {
    let of = |f: fn(&FanRecord) -> Option<u64>| {
        let mut v: Vec<u64> = records.iter().filter_map(f).collect();
        Latency::of_us(&mut v)
    };
    Latencies {
        session: of(|r| r.session_us),
        join: of(|r| r.join_us),
        watch: of(|r| r.watch_us),
        hold: of(|r| r.hold_us),
        pay_to_purchased: of(|r| r.pay_us.filter(|_| !r.purchase_polled)),
    }
}

fn admissions(run: &RunInfo, records: &[FanRecord]) -> Admissions {
    let mut a = Admissions::default();
    let mut delivery = Vec::new();
    let mut after_open = Vec::new();
    let mut opening = Vec::new();
    let (mut first, mut last) = (u64::MAX, 0);
    for adm in records.iter().filter_map(|r| r.admission) {
        a.admitted += 1;
        if !adm.via_push {
            a.via_watching += 1;
            continue;
        }
        a.via_push += 1;
        first = first.min(adm.received_unix_us);
        last = last.max(adm.received_unix_us);
        match delivery_us(&adm) {
            Some(us) => {
                if adm.decided_at_ms.unwrap_or(0).saturating_mul(1000) > adm.received_unix_us {
                    a.delivery_negative += 1;
                }
                delivery.push(us);
                if at_opening(run, &adm) {
                    opening.push(us);
                }
            }
            None => a.without_decided_at += 1,
        }
        if let Some(opened) = run.sale_opened_unix_ms {
            after_open.push(adm.received_unix_us.saturating_sub(opened * 1000));
        }
    }
    a.delivery = Latency::of_us(&mut delivery);
    a.after_open = Latency::of_us(&mut after_open);
    a.at_opening = Latency::of_us(&mut opening);
    if let Some(opened) = run.sale_opened_unix_ms {
        let mut updates = Vec::new();
        for r in records {
            match (r.first_update_unix_us, r.admission) {
                (Some(at), _) => updates.push(at.saturating_sub(opened * 1000)),
                (None, None) if r.position.is_some() => a.not_updated += 1,
                (None, _) => {}
            }
        }
        a.position_update = Latency::of_us(&mut updates);
    }
    if a.via_push > 1 && last > first {
        a.per_s = ((a.via_push - 1) as f64 / ((last - first) as f64 / 1e6)).round();
    }
    a
}

fn checks(run: &RunInfo, records: &[FanRecord], audit: Option<&Audit>) -> Checks {
    let mut c = Checks::default();
    seats(records, &mut c);
    positions(records, &mut c);
    decision_order(run, records, &mut c);
    delivery_order(run, records, &mut c);
    passed_over(run, records, &mut c);
    reloads(records, &mut c);
    resumed(records, &mut c);
    never_placed(run, records, &mut c);
    c.audit = audit.map(|a| audited(records, a));
    let mut violated = [
        &c.seats_bought_twice,
        &c.positions_shared,
        &c.decided_out_of_order,
        &c.delivered_out_of_order,
        &c.passed_over,
        &c.reload_moved,
        &c.resume_moved,
        &c.never_placed,
    ]
    .iter()
    .any(|check| check.violations > 0);
    if let Some(a) = &c.audit {
        violated |= a.problem.is_some()
            || a.told_not_durable.violations > 0
            || a.sold_after_refusal.violations > 0;
    }
    c.verdict = if violated { "violated" } else { "ok" }.into();
    c
}

fn audited(records: &[FanRecord], audit: &Audit) -> AuditCheck {
    let mut a = AuditCheck {
        problem: audit.problem.clone(),
        ..AuditCheck::default()
    };
    let by_order: FxHashMap<u64, &OrderRecord> =
        audit.orders.iter().map(|o| (o.order.0, o)).collect();
    let ours: FxHashMap<u64, &FanRecord> =
        records.iter().filter_map(|r| Some((r.fan?, r))).collect();
    for r in records.iter().filter(|r| r.outcome == Outcome::Purchased) {
        let seats: Vec<u32> = r.seats.clone();
        let matches = r.order.and_then(|o| by_order.get(&o)).is_some_and(|o| {
            Some(o.fan.0) == r.fan && o.seats.iter().map(|s| s.0).collect::<Vec<_>>() == seats
        });
        // A purchase learnt by polling has no order id: match by fan and seats.
        let polled_match = r.purchase_polled
            && audit.orders.iter().any(|o| {
                Some(o.fan.0) == r.fan && o.seats.iter().map(|s| s.0).collect::<Vec<_>>() == seats
            });
        if !matches && !polled_match {
            a.told_not_durable.add(|| {
                format!(
                    "fan {} was told order {:?} with seats {seats:?}; the audit has {:?}",
                    r.index,
                    r.order,
                    r.order.and_then(|o| by_order.get(&o))
                )
            });
        }
    }
    for o in &audit.orders {
        let Some(r) = ours.get(&o.fan.0) else {
            continue;
        };
        a.orders += 1;
        match r.outcome {
            Outcome::Purchased => {}
            Outcome::PaymentRefused
            | Outcome::HoldExpired
            | Outcome::Abandoned
            | Outcome::NoShow
            | Outcome::CheckoutAbandoned => a.sold_after_refusal.add(|| {
                format!(
                    "fan {} ended {:?} but has order {} (seats {:?})",
                    r.index, r.outcome, o.order.0, o.seats
                )
            }),
            _ => a.orders_unheard += 1,
        }
    }
    a
}

fn seats(records: &[FanRecord], c: &mut Checks) {
    let mut owner: FxHashMap<u32, u64> = FxHashMap::default();
    for r in records.iter().filter(|r| r.outcome == Outcome::Purchased) {
        c.orders += 1;
        if r.purchase_polled {
            c.purchases_without_push += 1;
        }
        if r.seats != r.held_seats && !r.held_seats.is_empty() {
            c.purchased_not_held += 1;
        }
        for seat in &r.seats {
            c.seats_bought += 1;
            if let Some(first) = owner.insert(*seat, r.index) {
                c.seats_bought_twice
                    .add(|| format!("seat {seat} bought by fan {first} and fan {}", r.index));
            }
        }
    }
}

fn positions(records: &[FanRecord], c: &mut Checks) {
    let mut holder: FxHashMap<u64, u64> = FxHashMap::default();
    for r in records {
        let Some(position) = r.position else { continue };
        if let Some(first) = holder.insert(position, r.index) {
            c.positions_shared.add(|| {
                format!(
                    "position {position} given to fan {first} and fan {}",
                    r.index
                )
            });
        }
    }
}

/// A fan with a position and an admission time (µs), for the order checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct InLine {
    position: u64,
    at_us: u64,
    fan: u64,
    /// When the fan was last out of line (µs, from its websocket's break
    /// to its resume's `watching`), if it was.
    away_us: Option<(u64, u64)>,
}

/// Fans with a position and an admission time `at` (µs), by position.
fn admitted_by_position(
    records: &[FanRecord],
    at: impl Fn(&FanRecord) -> Option<u64>,
) -> Vec<InLine> {
    let mut v: Vec<InLine> = records
        .iter()
        .filter_map(|r| {
            Some(InLine {
                position: r.position?,
                at_us: at(r)?,
                fan: r.index,
                away_us: r.last_break,
            })
        })
        .collect();
    v.sort_unstable();
    v
}

/// For each fan, from the back of the line: was it admitted later than
/// some fan behind it, by more than `tolerance_us`? Calls `found(lag_us,
/// (fan, position), (fan behind, its position))` for each such fan;
/// returns the worst lag (µs), over the tolerance or not, and the fans
/// that would have been found but for an admission behind them while
/// they were away (their websocket broken: after a restart the event
/// knows only the fans that came back, and admits them in order).
fn inversions(
    by_position: &[InLine],
    tolerance_us: u64,
    mut found: impl FnMut(u64, (u64, u64), (u64, u64)),
) -> (u64, u64) {
    let (mut worst, mut excused) = (0, 0);
    // The fans behind by time (one per time: the first seen, the furthest back).
    let mut behind: BTreeMap<u64, (u64, u64)> = BTreeMap::new();
    for f in by_position.iter().rev() {
        let earliest = behind.first_key_value().map(|(t, b)| (*t, *b));
        let while_in_line = match f.away_us {
            None => earliest,
            Some((from, to)) => behind
                .range(..from)
                .next()
                .or_else(|| behind.range(to..).next())
                .map(|(t, b)| (*t, *b)),
        };
        if let Some((t, (position, fan))) = while_in_line
            && f.at_us > t
        {
            let lag = f.at_us - t;
            worst = worst.max(lag);
            if lag > tolerance_us {
                found(lag, (f.fan, f.position), (fan, position));
            }
        } else if earliest.is_some_and(|(t, _)| f.at_us > t + tolerance_us) {
            excused += 1;
        }
        behind.entry(f.at_us).or_insert((f.position, f.fan));
    }
    (worst, excused)
}

fn decision_order(run: &RunInfo, records: &[FanRecord], c: &mut Checks) {
    let by_position =
        admitted_by_position(records, |r| r.admission?.decided_at_ms.map(|ms| ms * 1000));
    let (_, excused) = inversions(
        &by_position,
        run.decision_tolerance_ms * 1000,
        |lag, a, b| {
            c.decided_out_of_order.add(|| {
                format!(
                    "fan {} (position {}) admitted {} ms after fan {} (position {})",
                    a.0,
                    a.1,
                    lag / 1000,
                    b.0,
                    b.1
                )
            });
        },
    );
    c.admitted_while_away = excused;
}

fn delivery_order(run: &RunInfo, records: &[FanRecord], c: &mut Checks) {
    let by_position = admitted_by_position(records, |r| {
        let a = r.admission?;
        a.via_push.then_some(a.received_unix_us)
    });
    let (worst, _) = inversions(&by_position, run.order_tolerance_ms * 1000, |lag, a, b| {
        c.delivered_out_of_order.add(|| {
            format!(
                "fan {} (position {}) told {:.1} ms after fan {} (position {})",
                a.0,
                a.1,
                lag as f64 / 1000.0,
                b.0,
                b.1
            )
        });
    });
    c.delivery_lag_worst_ms = (worst as f64 / 1000.0 * 1000.0).round() / 1000.0;
}

fn passed_over(run: &RunInfo, records: &[FanRecord], c: &mut Checks) {
    let cutoff_us = run
        .ended_unix_ms
        .saturating_sub(run.order_tolerance_ms)
        .saturating_mul(1000);
    let Some((front, front_fan)) = records
        .iter()
        .filter_map(|r| {
            let a = r.admission?;
            (a.received_unix_us <= cutoff_us).then_some((r.position?, r.index))
        })
        .max()
    else {
        return;
    };
    for r in records
        .iter()
        .filter(|r| r.outcome == Outcome::StillWaiting)
    {
        if let Some(position) = r.position.filter(|p| *p < front) {
            c.passed_over.add(|| {
                format!(
                    "fan {} (position {position}) still waiting; fan {front_fan} \
                     (position {front}) was admitted",
                    r.index
                )
            });
        }
    }
}

fn reloads(records: &[FanRecord], c: &mut Checks) {
    for r in records {
        if let Some((had, got)) = r.reload_moved {
            c.reload_moved.add(|| {
                format!(
                    "fan {} reloaded at position {got}, its place was {had}",
                    r.index
                )
            });
        }
    }
}

fn resumed(records: &[FanRecord], c: &mut Checks) {
    for r in records {
        if let Some((had, got)) = r.resume_moved {
            c.resume_moved.add(|| {
                format!(
                    "fan {} resumed at position {got} after its websocket broke, its place was {had}",
                    r.index
                )
            });
        }
    }
}

fn never_placed(run: &RunInfo, records: &[FanRecord], c: &mut Checks) {
    let Some(opened) = run.sale_opened_unix_ms else {
        return;
    };
    if run.ended_unix_ms < opened + DRAW_GRACE_MS {
        return;
    }
    for r in records {
        if r.pre_queued && r.drawn.is_none() && r.outcome == Outcome::StillWaiting {
            c.never_placed.add(|| {
                format!(
                    "fan {} was pre-queued and still had no place {} s after the opening",
                    r.index,
                    (run.ended_unix_ms - opened) / 1000
                )
            });
        }
    }
}

fn errors(records: &[FanRecord]) -> Vec<(String, u64)> {
    let mut counts: BTreeMap<&str, u64> = BTreeMap::new();
    for e in records.iter().filter_map(|r| r.error.as_deref()) {
        *counts.entry(e).or_insert(0) += 1;
    }
    let mut v: Vec<(String, u64)> = counts.into_iter().map(|(e, n)| (e.to_owned(), n)).collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    v.truncate(ERRORS_LISTED_MAX);
    v
}

/// The human summary.
#[must_use]
pub fn summary(report: &LoadReport) -> String {
    use std::fmt::Write;
    let r = report;
    let mut s = String::new();
    let mode = r.run.mode.map_or("?", |m| match m {
        Mode::Journey => "journey",
        Mode::Wait => "wait",
    });
    let _ = writeln!(
        s,
        "load: {} fans ({mode}) on event {} at {}, {} workers, {} source addresses, {:.1} s",
        r.run.fans,
        r.run.event,
        r.run.target,
        r.run.workers,
        r.run.sources.len(),
        r.wall_s
    );
    let outcomes: Vec<String> = r.outcomes.iter().map(|(k, v)| format!("{k} {v}")).collect();
    let _ = writeln!(s, "outcomes: {}", outcomes.join(", "));
    if r.fans_missing > 0 {
        let _ = writeln!(s, "fans without a result: {}", r.fans_missing);
    }
    let _ = writeln!(
        s,
        "answers 429: {}, 503: {}, HTTP reconnects: {}; most waiting at once: {}",
        r.answers_429, r.answers_503, r.http_reconnects, r.run.waiting_max
    );
    let b = &r.resumes;
    if b.disconnects > 0 || b.fans_gave_up > 0 {
        let _ = writeln!(
            s,
            "websocket breaks: {} ({} fans), {} reconnect attempts; resumed with the token {}, \
             {} of them at their own position; gave up reconnecting {} fans",
            b.disconnects,
            b.fans_disconnected,
            b.reconnect_attempts,
            b.resumes,
            b.resumes_kept_position,
            b.fans_gave_up
        );
    }
    let line = |s: &mut String, name: &str, l: &Latency| {
        if l.count > 0 {
            let _ = writeln!(
                s,
                "  {name:<18} n={:<7} p50 {:>9.3}  p90 {:>9.3}  p99 {:>9.3}  max {:>9.3} ms",
                l.count, l.p50_ms, l.p90_ms, l.p99_ms, l.max_ms
            );
        }
    };
    let _ = writeln!(s, "latency:");
    line(&mut s, "session", &r.latency.session);
    line(&mut s, "join", &r.latency.join);
    line(&mut s, "ws → watching", &r.latency.watch);
    line(&mut s, "hold", &r.latency.hold);
    line(&mut s, "pay → purchased", &r.latency.pay_to_purchased);
    let a = &r.admissions;
    let _ = writeln!(
        s,
        "admissions: {} ({} by push, {} in watching, {} pushes without decided_at), {:.0}/s",
        a.admitted, a.via_push, a.via_watching, a.without_decided_at, a.per_s
    );
    line(&mut s, "decided → received", &a.delivery);
    line(&mut s, "open → received", &a.after_open);
    line(&mut s, "open → position", &a.position_update);
    line(&mut s, "at the opening", &a.at_opening);
    if a.not_updated > 0 {
        let _ = writeln!(
            s,
            "  {} waiting fans heard no position update",
            a.not_updated
        );
    }
    if let Some(p) = &r.pre_queue {
        let _ = writeln!(
            s,
            "pre-queue draw: {} pre-queued, {} placed (push {}, watching {}, admitted {}, \
             reply {}), {} heard the opening but not their place; places {}..{}{}",
            p.pre_queued,
            p.placed,
            p.via_push,
            p.via_watching,
            p.via_admitted,
            p.via_reply,
            p.unheard_at_opening,
            p.first_place.unwrap_or(0),
            p.last_place.unwrap_or(0),
            if p.contiguous {
                " (one run)"
            } else {
                " (with gaps)"
            }
        );
        line(&mut s, "open → drawn place", &p.opening_to_place);
        line(&mut s, "drawn, admitted", &p.admitted_at_opening);
    }
    if let Some(st) = &r.stamps {
        let refused: Vec<String> = st.refused.iter().map(|(k, v)| format!("{k} {v}")).collect();
        let _ = writeln!(
            s,
            "proof of work{}: {} stamps by {} fans ({} by {} bot accounts), {:.1} core-s \
             ({:.1} by bots), {} solver threads per worker; joins refused: {}",
            r.run
                .stamp_bits
                .map_or(String::new(), |b| format!(" ({b} bits)")),
            st.solved,
            st.fans,
            st.bot_solved,
            st.bot_accounts,
            st.work_s,
            st.bot_work_s,
            r.run.solver_threads,
            if refused.is_empty() {
                "none".to_owned()
            } else {
                refused.join(", ")
            }
        );
        line(&mut s, "solve (work)", &st.work);
        line(&mut s, "challenge → solved", &st.stamp);
    }
    let c = &r.checks;
    if let Some(b) = &r.behaviour {
        let parties: Vec<String> = b
            .party_sizes
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect();
        let areas: Vec<String> = b.areas.iter().map(|(k, v)| format!("{k}: {v}")).collect();
        let _ = writeln!(
            s,
            "behaviour of scenario {} (time × {}): parties {{{}}}; first asked {{{}}}; \
             bots {} ({} seats); retried after full {} fans ({} times); abandoned {}; \
             reloads {} by {} fans, {} of them kept their position every time",
            b.scenario,
            b.time_scale,
            parties.join(", "),
            areas.join(", "),
            b.bots,
            b.bot_seats,
            b.fans_retried_full,
            b.full_retries,
            b.abandoned,
            b.reloads,
            b.fans_reloaded,
            b.fans_reloaded_kept_position
        );
    }
    let _ = writeln!(
        s,
        "checks: {} — {} seats in {} orders; bought twice {}, shared positions {}, \
         decided out of order {} (and {} fans passed while away), delivered out of order {} \
         (tolerance {} ms, worst lag {:.1} ms), \
         passed over {}, moved by a reload {}, moved by a resume {}, pre-queued never placed {}; \
         purchases without push {}",
        c.verdict,
        c.seats_bought,
        c.orders,
        c.seats_bought_twice.violations,
        c.positions_shared.violations,
        c.decided_out_of_order.violations,
        c.admitted_while_away,
        c.delivered_out_of_order.violations,
        r.run.order_tolerance_ms,
        c.delivery_lag_worst_ms,
        c.passed_over.violations,
        c.reload_moved.violations,
        c.resume_moved.violations,
        c.never_placed.violations,
        c.purchases_without_push
    );
    for check in [
        &c.seats_bought_twice,
        &c.positions_shared,
        &c.decided_out_of_order,
        &c.delivered_out_of_order,
        &c.passed_over,
        &c.reload_moved,
        &c.resume_moved,
        &c.never_placed,
    ] {
        for e in &check.examples {
            let _ = writeln!(s, "  violation: {e}");
        }
    }
    if let Some(a) = &c.audit {
        let _ = writeln!(
            s,
            "audit: {} orders of these fans; told but not durable {}, sold after a refusal {}, \
             unheard {}; the event's own audit: {}",
            a.orders,
            a.told_not_durable.violations,
            a.sold_after_refusal.violations,
            a.orders_unheard,
            a.problem.as_deref().unwrap_or("ok")
        );
        for e in a
            .told_not_durable
            .examples
            .iter()
            .chain(&a.sold_after_refusal.examples)
        {
            let _ = writeln!(s, "  violation: {e}");
        }
    }
    for (e, n) in &r.errors {
        let _ = writeln!(s, "  error ×{n}: {e}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::{Admission, Stage};

    fn fan(index: u64, position: u64, received_ms: u64, decided_ms: u64) -> FanRecord {
        FanRecord {
            index,
            position: Some(position),
            outcome: Outcome::Admitted,
            stage: Stage::Done,
            admission: Some(Admission {
                received_unix_us: received_ms * 1000,
                decided_at_ms: Some(decided_ms),
                via_push: true,
            }),
            ..FanRecord::default()
        }
    }

    fn run() -> RunInfo {
        RunInfo {
            fans: 3,
            ended_unix_ms: 100_000,
            order_tolerance_ms: 100,
            ..RunInfo::default()
        }
    }

    #[test]
    fn admissions_in_order_pass() {
        let records = [
            fan(0, 1, 1000, 990),
            fan(1, 2, 1050, 990),
            fan(2, 3, 1020, 1000),
        ];
        let report = analyse(run(), &records, None);
        assert_eq!(report.checks.verdict, "ok", "{:#?}", report.checks);
        // Fan 1 (position 2) was told 30 ms after fan 2 (position 3): within tolerance.
        assert_eq!(report.checks.delivery_lag_worst_ms, 30.0);
        assert_eq!(report.admissions.delivery.max_ms, 60.0);
    }

    #[test]
    fn waiting_fans_position_updates_are_timed_from_the_opening() {
        let waiting = |index: u64, update_ms: Option<u64>| FanRecord {
            index,
            position: Some(10 + index),
            outcome: Outcome::Admitted,
            stage: Stage::Waiting,
            first_update_unix_us: update_ms.map(|ms| ms * 1000),
            ..FanRecord::default()
        };
        let run = RunInfo {
            sale_opened_unix_ms: Some(1_000),
            ..run()
        };
        let records = [
            fan(0, 1, 1_010, 1_000),
            waiting(1, Some(1_500)),
            waiting(2, Some(2_900)),
            waiting(3, None),
        ];
        let report = analyse(run, &records, None);
        let updates = &report.admissions.position_update;
        assert_eq!(updates.count, 2);
        assert_eq!(updates.max_ms, 1_900.0);
        assert_eq!(report.admissions.not_updated, 1, "fan 3 heard nothing");
    }

    #[test]
    fn a_later_decision_for_an_earlier_position_is_caught() {
        let records = [fan(0, 1, 1000, 995), fan(1, 2, 1000, 990)];
        let report = analyse(run(), &records, None);
        assert_eq!(report.checks.decided_out_of_order.violations, 1);
        assert_eq!(report.checks.verdict, "violated");
    }

    #[test]
    fn a_late_delivery_beyond_the_tolerance_is_caught() {
        let records = [
            fan(0, 1, 1500, 990),
            fan(1, 2, 1000, 990),
            fan(2, 3, 1400, 990),
        ];
        let report = analyse(run(), &records, None);
        assert_eq!(report.checks.delivered_out_of_order.violations, 1);
        assert_eq!(report.checks.delivery_lag_worst_ms, 500.0);
    }

    #[test]
    fn purchases_are_checked_against_the_audit() {
        use onsale_schema::{FanId, OrderId, PaymentId, Position, SeatIdx};
        let order = |order: u64, fan: u64, seats: &[u32]| OrderRecord {
            order: OrderId(order),
            fan: FanId(fan),
            position: Position(0),
            payment: PaymentId(order),
            seats: seats.iter().map(|s| SeatIdx(*s)).collect(),
            at: onsale_schema::Millis(0),
        };
        let buyer = |index: u64, outcome: Outcome, order: Option<u64>, seats: Vec<u32>| FanRecord {
            index,
            fan: Some(100 + index),
            position: Some(index + 1),
            outcome,
            order,
            seats,
            ..FanRecord::default()
        };
        let records = [
            buyer(0, Outcome::Purchased, Some(1), vec![4, 5]),
            buyer(1, Outcome::Purchased, Some(2), vec![6]),
            buyer(2, Outcome::PaymentRefused, None, vec![]),
            buyer(3, Outcome::TimedOut, None, vec![]),
        ];
        let audit = Audit {
            problem: None,
            journal_seq: 9,
            next_position: Position(5),
            orders: vec![
                order(1, 100, &[4, 5]),
                order(2, 101, &[7]),
                order(3, 102, &[8]),
                order(4, 103, &[9]),
                order(5, 999, &[10]),
            ],
        };
        let report = analyse(run(), &records, Some(&audit));
        let a = report.checks.audit.as_ref().expect("audited");
        assert_eq!(a.orders, 4);
        assert_eq!(a.told_not_durable.violations, 1, "{a:?}");
        assert_eq!(a.sold_after_refusal.violations, 1, "{a:?}");
        assert_eq!(a.orders_unheard, 1);
        assert_eq!(report.checks.verdict, "violated");
    }

    #[test]
    fn fans_that_gave_up_are_not_passed_over_and_reloads_must_keep_the_place() {
        let front = fan(0, 5, 1000, 990);
        let mut gave_up = fan(1, 2, 0, 0);
        gave_up.admission = None;
        gave_up.outcome = Outcome::Abandoned;
        let mut reloaded = fan(2, 3, 1000, 990);
        reloaded.reloads = 2;
        reloaded.reloads_kept_position = 2;
        let report = analyse(run(), &[front.clone(), gave_up, reloaded.clone()], None);
        assert_eq!(report.checks.verdict, "ok", "{:#?}", report.checks);

        let mut moved = reloaded;
        moved.reloads_kept_position = 1;
        moved.reload_moved = Some((3, 9));
        let info = RunInfo {
            scenario: Some("club".into()),
            time_scale: Some(0.01),
            ..run()
        };
        let report = analyse(info, &[front, moved], None);
        assert_eq!(report.checks.reload_moved.violations, 1);
        assert_eq!(report.checks.verdict, "violated");
        let b = report.behaviour.expect("a scenario run");
        assert_eq!(
            (b.reloads, b.fans_reloaded, b.fans_reloaded_kept_position),
            (2, 1, 0)
        );
    }

    #[test]
    fn resumes_are_counted_and_a_place_moved_by_one_is_a_violation() {
        let mut kept = fan(0, 1, 1000, 990);
        kept.disconnects = 2;
        kept.reconnect_attempts = 5;
        kept.resumes = 2;
        kept.resumes_kept_position = 2;
        let mut gave_up = fan(1, 2, 0, 0);
        gave_up.admission = None;
        gave_up.outcome = Outcome::Error;
        gave_up.disconnects = 1;
        gave_up.reconnect_attempts = 10;
        gave_up.reconnect_gave_up = true;
        let report = analyse(run(), &[kept.clone(), gave_up], None);
        assert_eq!(report.checks.verdict, "ok", "{:#?}", report.checks);
        let expected = Resumes {
            disconnects: 3,
            fans_disconnected: 2,
            reconnect_attempts: 15,
            resumes: 2,
            resumes_kept_position: 2,
            fans_gave_up: 1,
        };
        assert_eq!(report.resumes, expected);
        let text = summary(&report);
        assert!(text.contains("websocket breaks: 3 (2 fans)"), "{text}");

        let mut moved = kept;
        moved.resumes_kept_position = 1;
        moved.resume_moved = Some((1, 7));
        let report = analyse(run(), &[moved], None);
        assert_eq!(report.checks.resume_moved.violations, 1);
        assert_eq!(report.checks.verdict, "violated");
        let text = summary(&report);
        assert!(
            text.contains("violation: fan 0 resumed at position 7"),
            "{text}"
        );
    }

    #[test]
    fn an_admission_behind_a_fan_away_is_not_out_of_order_but_before_or_after_it_is() {
        // Fan 0 (position 1) was away from 900 to 1,100 ms and admitted at
        // 1,200 ms (the event's clock and the fans' are one here).
        let mut away = fan(0, 1, 1_210, 1_200);
        away.last_break = Some((900_000, 1_100_000));
        let behind = |decided_ms| fan(1, 2, decided_ms + 10, decided_ms);
        let report = analyse(run(), &[away.clone(), behind(1_000)], None);
        assert_eq!(report.checks.verdict, "ok", "{:#?}", report.checks);
        assert_eq!(report.checks.admitted_while_away, 1);
        for in_line_ms in [850, 1_100, 1_150] {
            let report = analyse(run(), &[away.clone(), behind(in_line_ms)], None);
            assert_eq!(
                report.checks.decided_out_of_order.violations, 1,
                "admitted behind at {in_line_ms} ms"
            );
            assert_eq!(report.checks.admitted_while_away, 0);
        }
        // Without the break, the same admission is out of order.
        away.last_break = None;
        let report = analyse(run(), &[away, behind(1_000)], None);
        assert_eq!(report.checks.decided_out_of_order.violations, 1);
    }

    #[test]
    fn pre_queued_fans_are_counted_by_how_they_learnt_their_place() {
        use crate::load::{Drawn, DrawnVia};
        let run = RunInfo {
            sale_opened_unix_ms: Some(1_000),
            ended_unix_ms: 100_000,
            ..run()
        };
        let drawn = |index: u64, position: u64, via: DrawnVia, heard_ms: u64| {
            let mut r = fan(index, position, 1_020 + index, 1_001);
            r.pre_queued = true;
            r.drawn = Some(Drawn {
                via,
                heard_unix_us: heard_ms * 1000,
            });
            r
        };
        let mut rewatched = drawn(2, 12, DrawnVia::Watching, 6_500);
        rewatched.draw_unheard = true;
        let mut later = fan(3, 13, 9_000, 8_000);
        later.admission = None;
        let records = [
            drawn(0, 11, DrawnVia::Push, 1_010),
            drawn(1, 10, DrawnVia::Push, 1_030),
            rewatched,
            later,
        ];
        let report = analyse(run.clone(), &records, None);
        assert_eq!(report.checks.verdict, "ok", "{:#?}", report.checks);
        let p = report.pre_queue.expect("fans were pre-queued");
        assert_eq!((p.pre_queued, p.placed), (3, 3));
        assert_eq!(
            (p.via_push, p.via_watching, p.unheard_at_opening),
            (2, 1, 1)
        );
        assert_eq!(
            (p.first_place, p.last_place, p.contiguous),
            (Some(10), Some(12), true)
        );
        assert_eq!(p.opening_to_place.max_ms, 5_500.0);
        // All three were admitted at the opening (decided 1 ms after it).
        assert_eq!(p.admitted_at_opening.count, 3);
        assert_eq!(report.admissions.at_opening.count, 3);
        assert_eq!(report.admissions.at_opening.max_ms, 21.0);

        // One still waiting without a place long after the opening.
        let mut lost = fan(4, 0, 0, 0);
        lost.position = None;
        lost.admission = None;
        lost.pre_queued = true;
        lost.outcome = Outcome::StillWaiting;
        let report = analyse(run, &[lost], None);
        assert_eq!(report.checks.never_placed.violations, 1);
        assert_eq!(report.checks.verdict, "violated");
        let p = report.pre_queue.expect("pre-queued");
        assert_eq!((p.placed, p.first_place), (0, None));
    }

    #[test]
    fn stamps_are_summed_over_fans_and_refusals_counted_by_code() {
        let stamped = |index: u64, bot: bool, work_us: &[u64]| {
            let mut r = fan(index, index + 1, 1_000, 990);
            r.bot = bot;
            r.stamps_solved = work_us.len() as u32;
            r.stamp_work_us = work_us.to_vec();
            r.stamp_us = work_us.iter().map(|w| w + 1_000).collect();
            r.stamp_refusals = [("stamp_required".to_owned(), 1)].into();
            r
        };
        let mut stale = stamped(2, false, &[3_000, 5_000]);
        stale.stamp_refusals.insert("stamp_stale".into(), 1);
        let records = [
            stamped(0, false, &[1_000]),
            stamped(1, true, &[2_000]),
            stale,
            fan(3, 4, 1_000, 990),
        ];
        let report = analyse(run(), &records, None);
        let st = report.stamps.as_ref().expect("stamps were solved");
        assert_eq!((st.solved, st.fans), (4, 3));
        assert_eq!((st.bot_solved, st.bot_accounts), (1, 1));
        assert_eq!(st.work.p50_ms, 3.0);
        assert_eq!(st.stamp.max_ms, 6.0);
        assert_eq!(st.work_s, 0.011);
        assert_eq!(st.bot_work_s, 0.002);
        assert_eq!(st.refused["stamp_required"], 3);
        assert_eq!(st.refused["stamp_stale"], 1);
        let text = summary(&report);
        assert!(text.contains("proof of work: 4 stamps by 3 fans"), "{text}");
        assert!(analyse(run(), &records[3..], None).stamps.is_none());
    }

    #[test]
    fn double_sales_shared_positions_and_fans_passed_over_are_caught() {
        let mut a = fan(0, 1, 1000, 990);
        a.outcome = Outcome::Purchased;
        a.seats = vec![4, 5];
        let mut b = fan(1, 2, 1000, 990);
        b.outcome = Outcome::Purchased;
        b.seats = vec![5];
        let mut c = fan(2, 2, 1000, 990);
        c.admission = None;
        c.position = Some(0);
        c.outcome = Outcome::StillWaiting;
        let mut d = fan(3, 2, 1000, 990);
        d.admission = None;
        d.outcome = Outcome::StillWaiting;
        let report = analyse(run(), &[a, b, c, d], None);
        assert_eq!(report.checks.seats_bought_twice.violations, 1);
        assert_eq!(report.checks.seats_bought, 3);
        assert_eq!(report.checks.positions_shared.violations, 1);
        assert_eq!(report.checks.passed_over.violations, 1);
    }
}
