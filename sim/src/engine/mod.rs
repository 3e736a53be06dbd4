//! The simulation: a lean shell around the real [`EventCore`], driven by a
//! virtual clock, a seeded generator and an agenda.
//!
//! The shell does what the event actor's shell does, in virtual time: it
//! keeps the last snapshot and the journal after it "in the store"
//! (snapshot every `store.snapshot_every_records` records), confirms
//! counter reservations after the store's latency, answers "full" and
//! "sold out" from the pushed flags as a gateway's cache would, sends
//! payments to a simulated provider, and on a crash rebuilds the core with
//! `EventCore::restore` + `replay`. Waiting fans then come back with their
//! queue tokens.
//!
//! Journal records are durable only when the simulated writer's group
//! commit covering them lands (`store.commit_latency_ms`; records produced
//! while a commit runs go in the next). Everything the event says (answers
//! to calls, pushes, charges, refunds) waits for that in an
//! [`OutputGate`], and fans act on it only when it leaves; a crash loses
//! the records not yet durable and drops what waited for them.
//!
//! Fans are ~24-byte records in one vector indexed by fan number (the
//! `FanId` is the number + 1). Arrivals are drawn lazily in time order, so
//! the agenda only holds what fans already in play will do next.
//!
//! Every answer is refereed by the [`Ledger`], and `check_invariants` runs
//! every `checks.core_every_steps` steps and at the end. The first
//! violation stops the run and names the seed and the step.
//!
//! Who arrives (bot or person, party, patience, code, address) is drawn
//! from generators of its own in arrival order, apart from the journeys'
//! draws, so runs of one seed that differ in their defences or config
//! have the same crowd.
//!
//! Here: the run's types, the state, the loop and its dispatch. Beside it:
//! `effects` (the core's effects: store, provider, pushes and journal
//! records as fans hear of them), `fans` (what fans do), `defences` (codes,
//! proof of work, per-address limits, the draw), `node` (the operator,
//! crashes and restores, storms), `measures` (checks, samples, the
//! summary).

use std::fmt;
use std::sync::Arc;

use onsale_actors::{Effect, EventCore, OutputGate};
use onsale_schema::message::{
    FanStatus, JoinRefused, Joined, PaymentRefused, PaymentSettled, ProviderAnswer, Push,
    SaleCommand,
};
use onsale_schema::snapshot::{EventSnapshot, JournalRecord};
use onsale_schema::token::TokenKey;
use onsale_schema::{EventId, FanId, HoldId, Millis, PaymentId, Position, Venue};

use crate::agenda::Agenda;
use crate::arrivals::Arrivals;
use crate::behaviour::{Areas, Model};
use crate::ledger::Ledger;
use crate::metrics::{Sample, Summary, ms32};
use crate::rng::Rng;
use crate::scenario::{Curve, Scenario, ScenarioFile};

use defences::Defences;

mod defences;
mod effects;
mod fans;
mod measures;
mod node;

const EVENT: EventId = EventId(1);
/// Fans told "busy" (the counter awaits its next durable block) retry after this.
const BUSY_RETRY_MS: u64 = 200;
/// "Busy" answers one fan takes before giving up.
const BUSY_TRIES_MAX: u8 = 50;
/// Steps between progress reports.
const PROGRESS_EVERY_STEPS: u64 = 1 << 20;
const NOT_YET: u32 = u32::MAX;
/// Things said and not yet durable, at most: a run that holds more back
/// than this is reported as a violation (the event actor would answer
/// `busy` long before: `GATED_MAX` is 400,000).
const GATED_MAX: usize = 4_000_000;

/// The first broken invariant of a run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    pub seed: u64,
    pub step: u64,
    pub at_ms: u64,
    pub what: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invariant violated at step {} (virtual time {:.3} s) with seed {}: {}",
            self.step,
            self.at_ms as f64 / 1000.0,
            self.seed,
            self.what
        )
    }
}

/// How far a run is, for a progress bar.
#[derive(Clone, Copy, Debug)]
pub struct Progress {
    pub at_ms: u64,
    pub arrivals: u64,
    pub fans: u64,
    pub steps: u64,
}

/// One buyer's order, in sale order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Purchase {
    /// Arrival order of the person (a bot's accounts share their bot's).
    pub rank: u32,
    pub position: u32,
    /// When the buyer (person or bot) arrived, and when it bought.
    pub arrived_ms: u64,
    pub at_ms: u64,
    pub tickets: u8,
    pub bot: bool,
}

/// Everything a run produced.
#[derive(Clone, Debug)]
pub struct RunOutput {
    pub summary: Summary,
    pub samples: Vec<Sample>,
    /// Time from getting a place in line to admission, ms, sorted.
    pub queue_waits_ms: Vec<u32>,
    pub purchases: Vec<Purchase>,
    pub violation: Option<Violation>,
}

/// Where a fan is, as the fan sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Not in line: about to (re)try joining.
    Arriving,
    /// In a randomised pre-queue, until the opening.
    Lobby,
    Waiting,
    /// Admitted, has not opened the seat map yet.
    Admitted,
    /// Admitted and browsing (or between holds).
    Shopping,
    Holding,
    Paying,
    Bought,
    /// Done without tickets: turned away, left, lapsed, gave up.
    Gone,
}

const BOT: u8 = 1;
const IMPATIENT: u8 = 2;
const REFRESHER: u8 = 4;
/// Forgotten by a crashed core; comes back with its token.
const DISCONNECTED: u8 = 8;
/// Holds a presale code (`[defences.codes]`).
const CODED: u8 = 16;

/// One fan account. Kept small: there may be tens of millions.
#[derive(Clone, Copy, Debug)]
struct Fan {
    rank: u32,
    joined_ms: u32,
    position: u32,
    phase: Phase,
    party: u8,
    tries: u8,
    busy_tries: u8,
    refreshes: u8,
    flags: u8,
}

// Tens of millions of these, and a retry reads a fan's phase at random
// (eras' time is mostly those cache misses): 20 bytes each keeps its 10M
// fans near 200 MB.
const _: () = assert!(std::mem::size_of::<Fan>() <= 20);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reload {
    /// The fan reloads its page now and then.
    Refresh,
    /// Part of a refresh storm.
    Storm,
    /// The node crashed: the fan's page reconnects.
    Reconnect,
}

#[derive(Clone, Copy, Debug)]
enum Ev {
    Retry(u32),
    /// The fan's proof of work is solved: its join goes out.
    Solved(u32),
    ShowUp(u32),
    Shop(u32),
    Pay(u32),
    Leave(u32),
    Abandon(u32),
    Reload(u32, Reload),
    Answer {
        payment: u64,
        fan: u32,
        confirmed: bool,
    },
    CounterDurable {
        ceiling: u64,
        incarnation: u32,
    },
    /// A checkout session's alarm (`Effect::ArmCheckout`); sessions die
    /// with their node, so an alarm of an earlier incarnation is dropped.
    CheckoutAlarm {
        hold: u64,
        incarnation: u32,
    },
    /// The journal's group commit covering records up to `seq` is durable.
    Committed {
        seq: u64,
        incarnation: u32,
    },
    SaleOpen,
    /// The presale ends: fans without a code may join.
    GeneralSale,
    SaleClose,
    Crash(u16),
    Restart,
    Storm(u16),
}

/// The gateways' cache of the event's pushed flags.
#[derive(Clone, Copy, Debug, Default)]
struct Edge {
    full: bool,
    sold_out: bool,
    closed: bool,
}

/// What the event said (or stored behind its records), waiting in the
/// output gate until the journal records it depends on are durable.
#[derive(Debug)]
enum Said {
    /// A journal record, durable now: the store keeps it, and fans hear
    /// of what it records (admissions, lapses, releases, declines).
    Record(JournalRecord),
    /// A snapshot, written behind the records up to `seq` it includes.
    Snapshot {
        bytes: Vec<u8>,
        seq: u64,
    },
    Push(Push),
    Charge {
        payment: PaymentId,
        fan: FanId,
    },
    Refund,
    /// The answer to a fan's (or the provider's) call.
    Answer(Answer),
}

/// A call's answer, with what the caller needs to act on it.
#[derive(Debug)]
enum Answer {
    Join {
        slot: u32,
        result: Result<Joined, JoinRefused>,
    },
    Enter {
        slot: u32,
        status: Option<FanStatus>,
    },
    Hold {
        slot: u32,
        bot: bool,
        outcome: HoldOutcome,
    },
    Pay {
        slot: u32,
        result: Result<(PaymentId, onsale_schema::HoldId), PaymentRefused>,
        clock: Millis,
    },
    Reload {
        slot: u32,
        disconnected: bool,
        result: Result<Joined, JoinRefused>,
    },
    Provider {
        payment: PaymentId,
        slot: u32,
        answer: ProviderAnswer,
        settled: PaymentSettled,
        clock: Millis,
        after_deadline: bool,
    },
}

/// How a fan's search for a hold ended (its tries happen at once; only
/// the last answer is waited for).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum HoldOutcome {
    Held,
    Gone,
    NoSeats,
}

/// The journal writer: one group commit at a time.
#[derive(Clone, Copy, Debug, Default)]
struct Writer {
    /// A commit is running.
    committing: bool,
    /// Records up to this one are in a commit, running or done.
    taken_seq: u64,
    /// Journal records produced since the last snapshot was taken.
    records_since_snapshot: u64,
}

/// The simulated store: last snapshot (encoded, as stored), the journal
/// after it, the counter ceiling.
#[derive(Debug)]
struct Store {
    snapshot: Vec<u8>,
    journal: Vec<JournalRecord>,
    ceiling: Position,
}

/// Cumulative counters at the last sample.
#[derive(Clone, Copy, Debug, Default)]
struct Marks {
    arrivals: u64,
    joined: u64,
    turned_away: u64,
    admitted: u64,
    tickets: u64,
    abandoned: u64,
}

struct Sim<'a> {
    sc: &'a ScenarioFile,
    venue: Arc<Venue>,
    seed: u64,
    now: u64,
    step: u64,
    core: Option<EventCore>,
    incarnation: u32,
    up_at: u64,
    before_crash: Option<EventSnapshot>,
    agenda: Agenda<Ev>,
    arrivals: Arrivals,
    fans: Vec<Fan>,
    /// When each person or bot arrived (by rank), before any defence: read
    /// only at purchases, so kept out of the fans' hot records.
    arrived_ms: Vec<u32>,
    lobby: Vec<u32>,
    randomize_lobby: bool,
    /// Who arrives: bot or person, and each account's traits.
    crowd: Rng,
    rng: Rng,
    provider_rng: Rng,
    key: TokenKey,
    edge: Edge,
    ledger: Ledger,
    store: Store,
    effects: Vec<Effect>,
    /// Nothing the event says leaves before its journal records are durable.
    gate: OutputGate<Said>,
    writer: Writer,
    /// Charges the last crash dropped, asked again after the restore.
    lost_charges: Vec<(PaymentId, FanId)>,
    /// Records the last crash lost, for checking the restore.
    lost_records: Vec<JournalRecord>,
    t: Summary,
    samples: Vec<Sample>,
    next_sample_ms: u64,
    marks: Marks,
    /// The core's gauges at the last sample it was up for (shown while down).
    last_gauges: (u64, u32, u32),
    waits_ms: Vec<u32>,
    /// Genuine buyers' times from arrival to purchase, to their place in
    /// line, and from there to purchase, ms.
    genuine_waits_ms: [Vec<u32>; 3],
    purchases: Vec<Purchase>,
    violation: Option<Violation>,
    /// What fans and bots do (`[fans]`, `[bots]`, `[[storms]]`).
    model: Model,
    defences: Defences,
    opened_at: Option<u64>,
    sold_out_at: Option<u64>,
}

/// Run a scenario with a seed. Setup problems are errors; a broken
/// invariant is reported in `RunOutput::violation`.
pub fn run(
    scenario: &Scenario,
    seed: u64,
    progress: &mut dyn FnMut(&Progress),
) -> anyhow::Result<RunOutput> {
    let mut sim = Sim::new(scenario, seed)?;
    sim.schedule_fixed_events();
    sim.run_loop(progress);
    sim.finish();
    Ok(sim.output())
}

fn fan_id(slot: u32) -> FanId {
    FanId(u64::from(slot) + 1)
}

fn slot_of(fan: FanId) -> u32 {
    (fan.0 - 1) as u32
}

impl<'a> Sim<'a> {
    fn new(scenario: &'a Scenario, seed: u64) -> anyhow::Result<Sim<'a>> {
        let sc = &scenario.file;
        let venue = Arc::clone(&scenario.venue);
        let core = EventCore::new(EVENT, Arc::clone(&venue), sc.event.clone(), Millis(0))
            .map_err(|e| anyhow::anyhow!("scenario {}: {e}", scenario.path.display()))?;
        let snapshot = core.snapshot().encode()?;
        let opens_at_ms = sc.sale.opens_at_s * 1000;
        let arrivals = Arrivals::new(
            &sc.arrivals.curve,
            sc.arrivals.fans,
            opens_at_ms,
            Rng::new(seed, 1),
        );
        let pre_queue = matches!(sc.arrivals.curve, Curve::PreQueue { .. });
        let randomize_lobby = matches!(
            sc.arrivals.curve,
            Curve::PreQueue {
                randomize: true,
                ..
            }
        ) || (pre_queue && sc.defences.draw);
        let capacity = venue.seat_count();
        let mut sim = Sim {
            sc,
            seed,
            now: 0,
            step: 0,
            incarnation: 0,
            up_at: 0,
            before_crash: None,
            agenda: Agenda::default(),
            arrivals,
            fans: Vec::with_capacity(scenario.accounts_max().min(1 << 31) as usize),
            arrived_ms: Vec::with_capacity(sc.arrivals.fans.min(1 << 31) as usize),
            lobby: Vec::new(),
            randomize_lobby,
            crowd: Rng::new(seed, 4),
            rng: Rng::new(seed, 2),
            provider_rng: Rng::new(seed, 3),
            key: TokenKey::derive(&seed.to_le_bytes()),
            edge: Edge::default(),
            ledger: Ledger::new(capacity, sc.event.provider_timeout_ms),
            store: Store {
                snapshot,
                journal: Vec::new(),
                ceiling: Position(1),
            },
            effects: Vec::new(),
            gate: OutputGate::new(0, GATED_MAX),
            writer: Writer::default(),
            lost_charges: Vec::new(),
            lost_records: Vec::new(),
            t: Summary {
                scenario: sc.name.clone(),
                seed,
                venue: venue.name.clone(),
                capacity,
                fans: sc.arrivals.fans,
                ..Summary::default()
            },
            samples: Vec::new(),
            next_sample_ms: 0,
            marks: Marks::default(),
            last_gauges: (0, 0, 0),
            waits_ms: Vec::new(),
            genuine_waits_ms: [Vec::new(), Vec::new(), Vec::new()],
            purchases: Vec::new(),
            violation: None,
            model: Model::new(sc, Areas::of(&venue)),
            defences: Defences::new(sc, seed),
            opened_at: None,
            sold_out_at: None,
            venue,
            core: Some(core),
        };
        sim.settle();
        sim.flush();
        Ok(sim)
    }

    fn schedule_fixed_events(&mut self) {
        let sc = self.sc;
        self.agenda.push(sc.sale.opens_at_s * 1000, Ev::SaleOpen);
        if let Some(at) = self.defences.general_at_ms() {
            self.agenda.push(at, Ev::GeneralSale);
        }
        if let Some(close) = sc.sale.closes_at_s {
            self.agenda.push(close * 1000, Ev::SaleClose);
        }
        for (i, crash) in sc.crashes.iter().enumerate() {
            self.agenda
                .push((crash.at_s * 1000.0) as u64, Ev::Crash(i as u16));
        }
        for (i, storm) in sc.storms.iter().enumerate() {
            self.agenda
                .push((storm.at_s * 1000.0) as u64, Ev::Storm(i as u16));
        }
    }

    // ----- the loop --------------------------------------------------------

    fn run_loop(&mut self, progress: &mut dyn FnMut(&Progress)) {
        let horizon = self.sc.run.duration_max_s * 1000;
        let check_every = self.sc.checks.core_every_steps;
        while self.violation.is_none() {
            let next_timer = self
                .core
                .as_ref()
                .and_then(EventCore::poll_timeout)
                .map(|m| m.0);
            let next_agenda = self.agenda.peek_time();
            let next_arrival = self.arrivals.peek().map(|a| a.at_ms);
            let Some(t) = [next_timer, next_agenda, next_arrival]
                .into_iter()
                .flatten()
                .min()
            else {
                break;
            };
            if t > horizon {
                break;
            }
            self.sample_until(t);
            self.now = self.now.max(t);
            self.step += 1;
            if next_timer == Some(t) {
                let now = Millis(self.now);
                if let Some(core) = self.core.as_mut() {
                    core.handle_timeout(now);
                }
                self.settle();
            } else if next_agenda == Some(t) {
                let (_, event) = self.agenda.pop().expect("peeked");
                self.handle(event);
            } else {
                self.arrive();
            }
            self.flush();
            if self.step.is_multiple_of(check_every) {
                self.check_core();
            }
            if self.step.is_multiple_of(PROGRESS_EVERY_STEPS) {
                progress(&Progress {
                    at_ms: self.now,
                    arrivals: self.t.arrivals,
                    fans: self.sc.arrivals.fans,
                    steps: self.step,
                });
            }
        }
    }

    fn handle(&mut self, event: Ev) {
        match event {
            Ev::Retry(slot) => {
                if self.fans[slot as usize].phase == Phase::Arriving {
                    self.try_join(slot);
                }
            }
            Ev::Solved(slot) => {
                if self.fans[slot as usize].phase == Phase::Arriving {
                    self.send_join(slot);
                }
            }
            Ev::ShowUp(slot) => self.show_up(slot),
            Ev::Shop(slot) => self.shop(slot),
            Ev::Pay(slot) => self.pay(slot),
            Ev::Leave(slot) => self.leave_after_hold(slot),
            Ev::Abandon(slot) => self.abandon(slot),
            Ev::Reload(slot, kind) => self.reload(slot, kind),
            Ev::Answer {
                payment,
                fan,
                confirmed,
            } => self.answer(PaymentId(payment), fan, confirmed),
            Ev::CounterDurable {
                ceiling,
                incarnation,
            } => {
                if incarnation == self.incarnation
                    && let Some(core) = self.core.as_mut()
                {
                    core.counter_durable(Position(ceiling));
                    self.settle();
                }
            }
            Ev::CheckoutAlarm { hold, incarnation } => {
                if incarnation == self.incarnation
                    && let Some(core) = self.core.as_mut()
                {
                    core.checkout_alarm(HoldId(hold), Millis(self.now));
                    self.settle();
                }
            }
            Ev::SaleOpen => self.sale_open(),
            Ev::GeneralSale => self.general_sale(),
            Ev::SaleClose => {
                if self.core.is_none() {
                    return self.defer(Ev::SaleClose);
                }
                let now = Millis(self.now);
                let _ = self.core_mut().sale_command(SaleCommand::Close, now);
                self.settle();
            }
            Ev::Crash(i) => self.crash(i),
            Ev::Restart => self.restart(),
            Ev::Storm(i) => self.storm(i),
            Ev::Committed { seq, incarnation } => {
                if incarnation == self.incarnation {
                    self.committed(seq);
                }
            }
        }
    }

    fn core_mut(&mut self) -> &mut EventCore {
        self.core.as_mut().expect("the node is up")
    }
}
