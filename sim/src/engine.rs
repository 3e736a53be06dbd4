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
//! Fans are ~24-byte records in one vector indexed by fan number (the
//! `FanId` is the number + 1). Arrivals are drawn lazily in time order, so
//! the agenda only holds what fans already in play will do next.
//!
//! Every answer is refereed by the [`Ledger`], and `check_invariants` runs
//! every `checks.core_every_steps` steps and at the end. The first
//! violation stops the run and names the seed and the step.

use std::fmt;
use std::sync::Arc;

use onsale_actors::{Effect, EventCore};
use onsale_schema::message::{
    FanStatus, HoldRejected, HoldRequest, JoinRefused, Joined, PaymentRefused, PaymentSettled,
    ProviderAnswer, Push, SaleCommand,
};
use onsale_schema::snapshot::{EventSnapshot, JournalEntry, JournalRecord};
use onsale_schema::token::{self, QueueClaims, TokenKey, VerifiedQueueToken};
use onsale_schema::{
    EventId, FanId, HoldId, Millis, OrderId, PaymentId, Position, SaleState, Venue,
};

use crate::agenda::Agenda;
use crate::arrivals::Arrivals;
use crate::behaviour::{self, Areas, Model};
use crate::ledger::Ledger;
use crate::metrics::{self, Fairness, Invariants, Percentiles, Sample, Summary};
use crate::rng::Rng;
use crate::scenario::{Curve, Scenario, ScenarioFile};

const EVENT: EventId = EventId(1);
/// Fans told "busy" (the counter awaits its next durable block) retry after this.
const BUSY_RETRY_MS: u64 = 200;
/// "Busy" answers one fan takes before giving up.
const BUSY_TRIES_MAX: u8 = 50;
/// Steps between progress reports.
const PROGRESS_EVERY_STEPS: u64 = 1 << 20;
const NOT_YET: u32 = u32::MAX;

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
    SaleOpen,
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
    lobby: Vec<u32>,
    randomize_lobby: bool,
    rng: Rng,
    provider_rng: Rng,
    key: TokenKey,
    edge: Edge,
    ledger: Ledger,
    store: Store,
    effects: Vec<Effect>,
    t: Summary,
    samples: Vec<Sample>,
    next_sample_ms: u64,
    marks: Marks,
    /// The core's gauges at the last sample it was up for (shown while down).
    last_gauges: (u64, u32, u32),
    waits_ms: Vec<u32>,
    purchases: Vec<Purchase>,
    violation: Option<Violation>,
    /// What fans and bots do (`[fans]`, `[bots]`, `[[storms]]`).
    model: Model,
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
        let randomize_lobby = matches!(
            sc.arrivals.curve,
            Curve::PreQueue {
                randomize: true,
                ..
            }
        );
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
            lobby: Vec::new(),
            randomize_lobby,
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
            purchases: Vec::new(),
            violation: None,
            model: Model::new(sc, Areas::of(&venue)),
            opened_at: None,
            sold_out_at: None,
            venue,
            core: Some(core),
        };
        sim.settle();
        Ok(sim)
    }

    fn schedule_fixed_events(&mut self) {
        let sc = self.sc;
        self.agenda.push(sc.sale.opens_at_s * 1000, Ev::SaleOpen);
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
        }
    }

    // ----- effects ---------------------------------------------------------

    fn core_mut(&mut self) -> &mut EventCore {
        self.core.as_mut().expect("the node is up")
    }

    /// Drain the core's effects like a shell; store a snapshot when due.
    fn settle(&mut self) {
        loop {
            let Some(core) = self.core.as_mut() else {
                return;
            };
            let mut effects = std::mem::take(&mut self.effects);
            effects.extend(core.drain_effects());
            if effects.is_empty() {
                self.effects = effects;
                break;
            }
            for effect in effects.drain(..) {
                self.on_effect(effect);
            }
            self.effects = effects;
        }
        if self.store.journal.len() as u64 >= self.sc.store.snapshot_every_records {
            let snapshot = self.core_mut().snapshot();
            match snapshot.encode() {
                Ok(bytes) => self.store.snapshot = bytes,
                Err(e) => self.fail(format!("snapshot does not encode: {e}")),
            }
            self.store.journal.clear();
            self.t.snapshots += 1;
        }
    }

    fn on_effect(&mut self, effect: Effect) {
        match effect {
            Effect::Journal(record) => {
                self.on_record(&record);
                self.store.journal.push(record);
                self.t.journal_records += 1;
            }
            Effect::ReserveCounter { ceiling } => {
                // The store commits at once; the node hears back later.
                self.store.ceiling = self.store.ceiling.max(ceiling);
                let at = self.now + self.sc.store.counter_latency_ms;
                let incarnation = self.incarnation;
                self.agenda.push(
                    at,
                    Ev::CounterDurable {
                        ceiling: ceiling.0,
                        incarnation,
                    },
                );
            }
            Effect::Push(push) => self.on_push(push),
            Effect::RequestPayment { payment, fan, .. } => self.provider(payment, fan),
            Effect::Refund { .. } => self.t.refunds += 1,
            Effect::ArmCheckout { hold, at } => {
                let incarnation = self.incarnation;
                self.agenda.push(
                    at.0.max(self.now),
                    Ev::CheckoutAlarm {
                        hold: hold.0,
                        incarnation,
                    },
                );
            }
            // The simulated provider's silence is total: asking changes
            // nothing. A stale alarm of an ended checkout is harmless.
            Effect::QueryPayment { .. } | Effect::EndCheckout { .. } => {}
        }
    }

    fn on_record(&mut self, record: &JournalRecord) {
        for (fan, position, at) in record.entry.admissions() {
            let r = self.ledger.admitted(position.0);
            self.check(r);
            self.on_admitted(slot_of(fan), at);
        }
        match &record.entry {
            JournalEntry::AdmissionLapsed { fan } => {
                let f = &mut self.fans[slot_of(*fan) as usize];
                if matches!(f.phase, Phase::Admitted | Phase::Shopping) {
                    f.phase = Phase::Gone;
                    self.t.turns_lapsed += 1;
                }
            }
            JournalEntry::HoldReleased { hold, reason } => {
                let r = self.ledger.released(*hold, *reason, record.at);
                self.check(r);
            }
            JournalEntry::PaymentDeclined { payment, .. } => {
                self.ledger.payment_declined(*payment);
                self.t.payments_declined += 1;
            }
            _ => {}
        }
    }

    fn on_admitted(&mut self, slot: u32, at: Millis) {
        self.t.admitted += 1;
        let f = &mut self.fans[slot as usize];
        f.phase = Phase::Admitted;
        if f.joined_ms != NOT_YET {
            let waited = at.0.saturating_sub(u64::from(f.joined_ms));
            self.waits_ms.push(waited.min(u64::from(u32::MAX)) as u32);
        }
        let bot = f.flags & BOT != 0;
        match self.model.show_up_after_ms(&mut self.rng, bot) {
            Some(after) => self.agenda.push(self.now + after, Ev::ShowUp(slot)),
            None => self.t.no_shows += 1,
        }
    }

    fn on_push(&mut self, push: Push) {
        let p = &mut self.t.pushes;
        p.total += 1;
        match push {
            Push::AdmittedThrough { .. } | Push::FanAdmitted { .. } => p.admitted_through += 1,
            Push::Full { full } => {
                p.full += 1;
                self.edge.full = full;
            }
            Push::SoldOut => {
                p.sold_out += 1;
                self.edge.sold_out = true;
                self.sold_out_at.get_or_insert(self.now);
                self.send_waiting_away();
            }
            Push::Sale { state } => {
                p.sale += 1;
                if state == SaleState::Closed {
                    self.edge.closed = true;
                    self.send_waiting_away();
                }
            }
            Push::SeatsChanged { .. } => p.seats_changed += 1,
            Push::HoldExpiring { .. } => p.hold_expiring += 1,
            Push::HoldExpired { fan, .. } => {
                p.hold_expired += 1;
                self.hold_ended(slot_of(fan));
            }
            Push::AdmissionExpired { fan } => {
                p.admission_expired += 1;
                let f = &mut self.fans[slot_of(fan) as usize];
                if f.phase != Phase::Bought {
                    f.phase = Phase::Gone;
                }
            }
            Push::Purchased { fan, order, seats } => {
                p.purchased += 1;
                self.purchased(slot_of(fan), order, &seats);
            }
            // The fan learns from the payment's own answer in this model.
            Push::PaymentDeclined { .. } => p.payment_declined += 1,
        }
    }

    /// Sold out or closed: the core sent every waiting fan away, and what
    /// fans planned to do next (retry, reload, give up waiting) is moot.
    /// Only the provider's answers (refunds), the store and the node's
    /// crashes still matter; arrivals still come, and are told at the edge.
    fn send_waiting_away(&mut self) {
        self.agenda.retain(|e| {
            matches!(
                e,
                Ev::Answer { .. }
                    | Ev::Pay(_)
                    | Ev::CounterDurable { .. }
                    | Ev::SaleClose
                    | Ev::Crash(_)
                    | Ev::Restart
                    | Ev::Reload(_, Reload::Reconnect)
            )
        });
        for slot in self.ledger.take_waiting() {
            let f = &mut self.fans[slot as usize];
            if f.phase == Phase::Waiting {
                f.phase = Phase::Gone;
                self.t.turned_away_sold_out += 1;
            }
        }
    }

    fn purchased(&mut self, slot: u32, order: OrderId, seats: &[onsale_schema::SeatIdx]) {
        let r = self.ledger.sold_seats(order, seats);
        self.check(r);
        if self.sc.faults.inject_double_sell_at_order == Some(self.t.orders + 1) {
            // Test-only fault: report this order's first seat as sold again,
            // as a core that sold it twice would.
            let again = OrderId(order.0 + 1_000_000_000);
            let r = self.ledger.sold_seats(again, &seats[..1]);
            self.check(r);
        }
        let f = &mut self.fans[slot as usize];
        f.phase = Phase::Bought;
        let bot = f.flags & BOT != 0;
        self.t.orders += 1;
        self.t.tickets_sold += seats.len() as u32;
        if bot {
            self.t.bot_orders += 1;
            self.t.bot_tickets += seats.len() as u64;
        }
        self.purchases.push(Purchase {
            rank: f.rank,
            position: f.position,
            at_ms: self.now,
            tickets: seats.len() as u8,
            bot,
        });
    }

    /// A fan's hold ended without a sale (expired, declined, voided).
    fn hold_ended(&mut self, slot: u32) {
        let f = &mut self.fans[slot as usize];
        if !matches!(f.phase, Phase::Holding | Phase::Paying) {
            return;
        }
        f.phase = Phase::Shopping;
        if f.flags & BOT != 0 {
            let at = self.now + self.sc.bots.react_ms;
            self.agenda.push(at, Ev::Shop(slot));
        } else {
            // People close the tab, freeing their turn for the next fan.
            let at = self.now + self.rng.between(1_000, 10_000);
            self.agenda.push(at, Ev::Leave(slot));
        }
    }

    fn provider(&mut self, payment: PaymentId, fan: FanId) {
        let p = &self.sc.payments;
        let x = self.provider_rng.unit();
        let fan = slot_of(fan);
        let (delay_ms, confirmed) = if x < p.silent_share {
            self.t.payments_silent += 1;
            return;
        } else if x < p.silent_share + p.late_share {
            self.t.payments_answered_late += 1;
            (
                behaviour::span_ms(&mut self.provider_rng, p.late_delay_s, 1000.0),
                true,
            )
        } else if x < p.silent_share + p.late_share + p.failure_rate {
            (
                behaviour::span_ms(&mut self.provider_rng, p.latency_ms, 1.0),
                false,
            )
        } else {
            (
                behaviour::span_ms(&mut self.provider_rng, p.latency_ms, 1.0),
                true,
            )
        };
        self.agenda.push(
            self.now + delay_ms,
            Ev::Answer {
                payment: payment.0,
                fan,
                confirmed,
            },
        );
    }

    // ----- fans ------------------------------------------------------------

    /// Try again once the node is back (a gateway answered 503).
    fn defer(&mut self, event: Ev) {
        let spread = (self.sc.fans.reconnect_spread_s * 1000.0) as u64;
        let at = self.up_at.max(self.now) + 1 + self.rng.below(spread + 1);
        self.agenda.push(at, event);
    }

    fn arrive(&mut self) {
        let arrival = self.arrivals.pop().expect("peeked");
        let rank = self.t.arrivals as u32;
        self.t.arrivals += 1;
        let bot = self.model.is_bot(&mut self.rng);
        let accounts = if bot {
            self.t.bots += 1;
            self.sc.bots.accounts
        } else {
            self.t.people += 1;
            1
        };
        for _ in 0..accounts {
            let slot = self.new_fan(rank, bot);
            if arrival.early && self.randomize_lobby && self.opened_at.is_none() {
                self.fans[slot as usize].phase = Phase::Lobby;
                self.lobby.push(slot);
            } else {
                self.try_join(slot);
            }
        }
    }

    fn new_fan(&mut self, rank: u32, bot: bool) -> u32 {
        let traits = self.model.traits(&mut self.rng, bot);
        let party = traits.party;
        let mut flags = if bot { BOT } else { 0 };
        if traits.impatient {
            flags |= IMPATIENT;
        }
        if traits.refresher {
            flags |= REFRESHER;
        }
        let slot = self.fans.len() as u32;
        self.fans.push(Fan {
            rank,
            joined_ms: NOT_YET,
            position: 0,
            phase: Phase::Arriving,
            party,
            tries: 0,
            busy_tries: 0,
            refreshes: 0,
            flags,
        });
        self.t.accounts += 1;
        slot
    }

    fn try_join(&mut self, slot: u32) {
        self.t.join_attempts += 1;
        if self.edge.sold_out || self.edge.closed {
            self.t.turned_away_sold_out += 1;
            self.fans[slot as usize].phase = Phase::Gone;
            return;
        }
        if self.edge.full {
            return self.turned_away_full(slot);
        }
        if self.core.is_none() {
            self.fans[slot as usize].phase = Phase::Arriving;
            return self.defer(Ev::Retry(slot));
        }
        let now = Millis(self.now);
        match self.core_mut().join(fan_id(slot), now) {
            Ok(joined) => self.joined(slot, &joined),
            Err(JoinRefused::Full) => self.turned_away_full(slot),
            Err(JoinRefused::SoldOut | JoinRefused::Closed) => {
                self.t.turned_away_sold_out += 1;
                self.fans[slot as usize].phase = Phase::Gone;
            }
            Err(JoinRefused::Busy) => self.busy(slot),
            Err(other) => self.fail(format!("join of {} refused as {other:?}", fan_id(slot))),
        }
        self.settle();
    }

    /// Before the core's effects (an admission of this very fan) are drained.
    fn joined(&mut self, slot: u32, joined: &Joined) {
        if joined.fresh {
            let r = self.ledger.issued(joined.position.0);
            self.check(r);
            self.t.joined += 1;
        }
        let Ok(position) = u32::try_from(joined.position.0) else {
            return self.fail(format!("{} beyond the simulator's range", joined.position));
        };
        let now = self.now.min(u64::from(u32::MAX - 1)) as u32;
        let f = &mut self.fans[slot as usize];
        f.position = position;
        let first = f.joined_ms == NOT_YET;
        if first {
            f.joined_ms = now;
        }
        if !matches!(joined.status, FanStatus::Waiting { .. }) {
            return;
        }
        f.phase = Phase::Waiting;
        let flags = f.flags;
        self.ledger.waits(joined.position.0, slot);
        if !first {
            return;
        }
        if flags & IMPATIENT != 0 {
            let patience = self.model.patience_ms(&mut self.rng);
            self.agenda.push(self.now + patience, Ev::Abandon(slot));
        }
        if flags & REFRESHER != 0 && self.sc.fans.refreshes_max > 0 {
            let at = self.now + self.model.refresh_after_ms(&mut self.rng);
            self.agenda.push(at, Ev::Reload(slot, Reload::Refresh));
        }
    }

    /// "Busy": the counter awaits its next durable block (or the core is
    /// at its fan limit). Retried soon, at most `BUSY_TRIES_MAX` times.
    fn busy(&mut self, slot: u32) {
        self.t.busy_answers += 1;
        let f = &mut self.fans[slot as usize];
        if f.busy_tries >= BUSY_TRIES_MAX {
            f.phase = Phase::Gone;
            self.t.gave_up_busy += 1;
            return;
        }
        f.busy_tries += 1;
        f.phase = Phase::Arriving;
        self.agenda.push(self.now + BUSY_RETRY_MS, Ev::Retry(slot));
    }

    fn turned_away_full(&mut self, slot: u32) {
        self.t.turned_away_full += 1;
        let f = self.fans[slot as usize];
        let bot = f.flags & BOT != 0;
        let Some(after) = self.model.full_retry_after_ms(&mut self.rng, bot, f.tries) else {
            self.t.gave_up_full += 1;
            self.fans[slot as usize].phase = Phase::Gone;
            return;
        };
        let at = self.now + after;
        let f = &mut self.fans[slot as usize];
        f.tries += 1;
        f.phase = Phase::Arriving;
        self.agenda.push(at, Ev::Retry(slot));
    }

    fn show_up(&mut self, slot: u32) {
        if self.fans[slot as usize].phase != Phase::Admitted {
            return;
        }
        if self.core.is_none() {
            return self.defer(Ev::ShowUp(slot));
        }
        let now = Millis(self.now);
        let status = self.core_mut().enter(fan_id(slot), now);
        self.settle();
        if !matches!(status, Some(FanStatus::Admitted { .. })) {
            return;
        }
        let f = &mut self.fans[slot as usize];
        f.phase = Phase::Shopping;
        let bot = f.flags & BOT != 0;
        let at = self.now + self.model.shopping_ms(&mut self.rng, bot);
        self.agenda.push(at, Ev::Shop(slot));
    }

    /// Ask for seats, settling for fewer or anywhere if need be.
    fn shop(&mut self, slot: u32) {
        if self.fans[slot as usize].phase != Phase::Shopping {
            return;
        }
        if self.core.is_none() {
            return self.defer(Ev::Shop(slot));
        }
        let f = self.fans[slot as usize];
        let bot = f.flags & BOT != 0;
        let mut count = f.party;
        let mut area = self.model.area(&mut self.rng, bot);
        for _ in 0..8 {
            let now = Millis(self.now);
            let request = HoldRequest::Best { count, area };
            let r = self.core_mut().hold(fan_id(slot), &request, now);
            self.settle();
            let rejected = match r {
                Ok(_) => return self.held(slot, bot),
                Err(HoldRejected::SoldOut | HoldRejected::AdmissionExpired) => {
                    self.fans[slot as usize].phase = Phase::Gone;
                    return;
                }
                Err(rejected) => rejected,
            };
            self.t.hold_rejections += 1;
            let Some(less) = behaviour::settle_for_less(count, area, &rejected) else {
                break;
            };
            (count, area) = less;
        }
        self.t.gave_up_no_seats += 1;
        self.leave(slot);
    }

    fn held(&mut self, slot: u32, bot: bool) {
        self.t.holds += 1;
        self.fans[slot as usize].phase = Phase::Holding;
        match self.model.checkout_ms(&mut self.rng, bot) {
            Some(after) => self.agenda.push(self.now + after, Ev::Pay(slot)),
            None => self.t.abandoned_checkout += 1,
        }
    }

    /// The fan gives up its turn (or place).
    fn leave(&mut self, slot: u32) {
        self.fans[slot as usize].phase = Phase::Gone;
        if self.core.is_some() {
            let now = Millis(self.now);
            self.core_mut().leave(fan_id(slot), now);
            self.settle();
        }
    }

    fn leave_after_hold(&mut self, slot: u32) {
        if self.fans[slot as usize].phase == Phase::Shopping {
            self.leave(slot);
        }
    }

    fn pay(&mut self, slot: u32) {
        if self.fans[slot as usize].phase != Phase::Holding {
            return;
        }
        if self.core.is_none() {
            return self.defer(Ev::Pay(slot));
        }
        let fan = fan_id(slot);
        let Some(FanStatus::Holding {
            hold,
            deadline,
            paying: false,
        }) = self.core_mut().status(fan)
        else {
            return;
        };
        let now = Millis(self.now);
        let r = self.core_mut().submit_payment(fan, hold, now);
        match r {
            Ok(started) => {
                if now >= deadline {
                    self.fail(format!(
                        "payment submitted at {now} after the deadline {deadline} was accepted"
                    ));
                }
                let clock = self.core_mut().clock();
                self.ledger
                    .payment_submitted(started.payment, started.hold, clock);
                self.t.payments_submitted += 1;
                self.fans[slot as usize].phase = Phase::Paying;
            }
            Err(PaymentRefused::Late) => self.t.payments_late += 1,
            Err(_) => {}
        }
        self.settle();
    }

    fn answer(&mut self, payment: PaymentId, slot: u32, confirmed: bool) {
        if self.core.is_none() {
            // The provider redelivers its webhook until someone takes it.
            let fan = slot;
            return self.defer(Ev::Answer {
                payment: payment.0,
                fan,
                confirmed,
            });
        }
        let answer = if confirmed {
            ProviderAnswer::Confirmed
        } else {
            ProviderAnswer::Declined
        };
        let now = Millis(self.now);
        let deadline = match self.core_mut().status(fan_id(slot)) {
            Some(FanStatus::Holding { deadline, .. }) => Some(deadline),
            _ => None,
        };
        let settled = self.core_mut().provider_answer(payment, answer, now);
        if matches!(settled, PaymentSettled::Sold { .. }) && deadline.is_some_and(|d| now >= d) {
            self.t.sold_after_deadline += 1;
        }
        let clock = self.core_mut().clock();
        let r = self.ledger.answered(payment, answer, clock, &settled);
        self.check(r);
        self.settle();
        let PaymentSettled::Declined {
            retry_until: Some(until),
            ..
        } = settled
        else {
            return;
        };
        let f = self.fans[slot as usize];
        if f.phase != Phase::Paying {
            return;
        }
        self.fans[slot as usize].phase = Phase::Holding;
        let bot = f.flags & BOT != 0;
        match self.model.pay_again_after_ms(&mut self.rng, bot) {
            Some(delay) if self.now + delay < until.0 => {
                self.agenda.push(self.now + delay, Ev::Pay(slot));
            }
            _ => self.t.abandoned_checkout += 1,
        }
    }

    fn abandon(&mut self, slot: u32) {
        let f = self.fans[slot as usize];
        if f.phase != Phase::Waiting {
            return;
        }
        self.fans[slot as usize].phase = Phase::Gone;
        self.t.abandoned_waiting += 1;
        if f.flags & DISCONNECTED != 0 || self.core.is_none() {
            return;
        }
        self.ledger.stops_waiting(u64::from(f.position));
        let now = Millis(self.now);
        self.core_mut().leave(fan_id(slot), now);
        self.settle();
    }

    fn token(&self, slot: u32) -> Result<VerifiedQueueToken, String> {
        let f = self.fans[slot as usize];
        let claims = QueueClaims {
            event: EVENT,
            fan: fan_id(slot),
            position: Position(u64::from(f.position)),
            issued_at: Millis(u64::from(f.joined_ms)),
        };
        let text = token::sign(&self.key, &claims);
        token::verify(&self.key, &text, EVENT, fan_id(slot), Millis(self.now))
            .map_err(|e| format!("{}'s own queue token does not verify: {e}", fan_id(slot)))
    }

    /// A waiting fan reloads its page or reconnects: it must keep its place.
    fn reload(&mut self, slot: u32, kind: Reload) {
        let f = self.fans[slot as usize];
        if f.phase != Phase::Waiting {
            return;
        }
        if kind == Reload::Refresh {
            self.t.refreshes += 1;
            if f.refreshes + 1 < self.sc.fans.refreshes_max {
                self.fans[slot as usize].refreshes += 1;
                let at = self.now + self.model.refresh_after_ms(&mut self.rng);
                self.agenda.push(at, Ev::Reload(slot, Reload::Refresh));
            }
        }
        if self.core.is_none() {
            if f.flags & DISCONNECTED != 0 {
                self.defer(Ev::Reload(slot, Reload::Reconnect));
            }
            return;
        }
        let disconnected = f.flags & DISCONNECTED != 0;
        let now = Millis(self.now);
        let r = if !disconnected
            && kind == Reload::Refresh
            && self.model.rejoins_plainly(&mut self.rng)
        {
            self.core_mut().join(fan_id(slot), now)
        } else {
            match self.token(slot) {
                Ok(token) => self.core_mut().resume(&token, now),
                Err(e) => return self.fail(e),
            }
        };
        match r {
            Ok(joined) => {
                if joined.position.0 != u64::from(f.position) {
                    self.fail(format!(
                        "{} reloaded at position {} but holds a token for {}",
                        fan_id(slot),
                        joined.position.0,
                        f.position
                    ));
                }
                if disconnected {
                    self.t.resumes += 1;
                    self.fans[slot as usize].flags &= !DISCONNECTED;
                    if matches!(joined.status, FanStatus::Waiting { .. }) {
                        self.ledger.waits(joined.position.0, slot);
                    }
                }
            }
            Err(JoinRefused::SoldOut | JoinRefused::Closed) => {
                self.fans[slot as usize].phase = Phase::Gone;
                self.t.turned_away_sold_out += 1;
            }
            Err(other) => self.fail(format!(
                "{} with a valid token for position {} refused as {other:?}",
                fan_id(slot),
                f.position
            )),
        }
        self.settle();
    }

    // ----- the operator and the node ------------------------------------------

    fn sale_open(&mut self) {
        if self.core.is_none() {
            return self.defer(Ev::SaleOpen);
        }
        let now = Millis(self.now);
        let _ = self.core_mut().sale_command(SaleCommand::Open, now);
        self.opened_at = Some(self.now);
        self.settle();
        let mut lobby = std::mem::take(&mut self.lobby);
        self.rng.shuffle(&mut lobby);
        for slot in lobby {
            self.try_join(slot);
        }
    }

    fn crash(&mut self, i: u16) {
        let Some(core) = self.core.take() else {
            return;
        };
        self.before_crash = Some(core.snapshot());
        drop(core);
        self.t.crashes += 1;
        self.incarnation += 1;
        let downtime_ms = (self.sc.crashes[usize::from(i)].downtime_s * 1000.0) as u64;
        self.up_at = self.now + downtime_ms;
        self.agenda.push(self.up_at, Ev::Restart);
        for slot in self.ledger.take_waiting() {
            self.fans[slot as usize].flags |= DISCONNECTED;
            self.defer(Ev::Reload(slot, Reload::Reconnect));
        }
    }

    /// Another node adopts the event: snapshot + journal, as stored.
    fn restart(&mut self) {
        match self.restore() {
            Ok(core) => self.core = Some(core),
            Err(e) => return self.fail(e),
        }
        self.t.restores += 1;
        // A new owner's gateways start with an empty cache.
        self.edge.full = false;
        let now = Millis(self.now);
        self.core_mut().handle_timeout(now);
        // The new incarnation's sessions, armed from the core.
        let incarnation = self.incarnation;
        for (hold, at) in self.core_mut().checkout_alarms() {
            self.agenda.push(
                at.0.max(self.now),
                Ev::CheckoutAlarm {
                    hold: hold.0,
                    incarnation,
                },
            );
        }
        self.settle();
    }

    fn restore(&mut self) -> Result<EventCore, String> {
        let snapshot = EventSnapshot::decode(&self.store.snapshot)
            .map_err(|e| format!("stored snapshot does not decode: {e}"))?;
        let mut core = EventCore::restore(Arc::clone(&self.venue), &snapshot, self.store.ceiling)
            .map_err(|e| format!("stored snapshot does not restore: {e}"))?;
        for record in &self.store.journal {
            core.replay(record)
                .map_err(|e| format!("stored journal does not replay: {e}"))?;
        }
        let Some(mut expected) = self.before_crash.take() else {
            return Err("restart without a crash".into());
        };
        let mut after = core.snapshot();
        after.waiting = 0;
        expected.waiting = 0;
        after.counter_ceiling = expected.counter_ceiling;
        if after.clock > expected.clock {
            return Err("restore moved the clock forward".into());
        }
        after.clock = expected.clock;
        if after != expected {
            return Err("restore lost or changed durable state".into());
        }
        core.check_invariants()
            .map_err(|e| format!("restored core: {e}"))?;
        Ok(core)
    }

    fn storm(&mut self, i: u16) {
        let storm = &self.sc.storms[usize::from(i)];
        let waiting: Vec<u32> = self.ledger.waiting_fans().collect();
        for slot in waiting {
            if let Some(after) = self.model.storm_reload_after_ms(&mut self.rng, storm) {
                self.agenda
                    .push(self.now + after, Ev::Reload(slot, Reload::Storm));
            }
        }
    }

    // ----- checks and measures ------------------------------------------------

    fn fail(&mut self, what: String) {
        if self.violation.is_none() {
            self.violation = Some(Violation {
                seed: self.seed,
                step: self.step,
                at_ms: self.now,
                what,
            });
        }
    }

    fn check(&mut self, r: Result<(), String>) {
        if let Err(what) = r {
            self.fail(what);
        }
    }

    fn check_core(&mut self) {
        let Some(core) = self.core.as_ref() else {
            return;
        };
        self.t.invariants.core_checks += 1;
        let r = core
            .check_invariants()
            .map_err(|e| format!("event core: {e}"));
        let (core_sold, ledger_sold) = (core.seats().sold(), self.ledger.sold());
        self.check(r);
        if core_sold != ledger_sold {
            self.fail(format!(
                "the core sold {core_sold} tickets, buyers were told of {ledger_sold}"
            ));
        }
    }

    fn sample_until(&mut self, t: u64) {
        let every_ms = self.sc.run.sample_every_s * 1000;
        while self.next_sample_ms <= t {
            let at = self.next_sample_ms;
            self.take_sample(at, every_ms);
            self.next_sample_ms += every_ms;
        }
    }

    fn take_sample(&mut self, at: u64, every_ms: u64) {
        let t = &self.t;
        let now = Marks {
            arrivals: t.arrivals,
            joined: t.joined,
            turned_away: t.turned_away_full + t.turned_away_sold_out,
            admitted: t.admitted,
            tickets: u64::from(t.tickets_sold),
            abandoned: t.abandoned_waiting + t.abandoned_checkout,
        };
        let last = self.marks;
        let per_s = |n: u64| metrics::round6(n as f64 * 1000.0 / every_ms as f64);
        let mut sample = Sample {
            t_s: at / 1000,
            sale: "down",
            node_up: self.core.is_some(),
            full: self.edge.full,
            waiting: self.last_gauges.0,
            shopping: self.last_gauges.1,
            held: self.last_gauges.2,
            arrivals: now.arrivals - last.arrivals,
            joined: now.joined - last.joined,
            turned_away: now.turned_away - last.turned_away,
            admitted: now.admitted - last.admitted,
            tickets_sold: now.tickets - last.tickets,
            abandoned: now.abandoned - last.abandoned,
            admitted_per_s: per_s(now.admitted - last.admitted),
            sales_per_s: per_s(now.tickets - last.tickets),
            sold: self.ledger.sold(),
        };
        if let Some(core) = self.core.as_ref() {
            sample.sale = core.sale().as_str();
            sample.waiting = core.waiting();
            sample.shopping = core.shopping();
            sample.held = core.seats().held();
            sample.sold = core.seats().sold();
            self.last_gauges = (sample.waiting, sample.shopping, sample.held);
        }
        self.samples.push(sample);
        self.marks = now;
    }

    fn finish(&mut self) {
        let every_ms = self.sc.run.sample_every_s * 1000;
        let last = (self.now / every_ms + 1) * every_ms;
        self.sample_until(last);
        if self.violation.is_some() {
            return;
        }
        self.check_core();
        if let Some(core) = self.core.as_ref() {
            let r = self.ledger.matches_core(core.orders(), core.seats().sold());
            self.check(r);
        }
    }

    fn output(mut self) -> RunOutput {
        let mut t = std::mem::take(&mut self.t);
        t.sell_through = metrics::round6(f64::from(t.tickets_sold) / f64::from(t.capacity));
        t.sale_opened_at_s = self.opened_at.unwrap_or(0) as f64 / 1000.0;
        t.sold_out_after_s = self
            .sold_out_at
            .map(|at| at.saturating_sub(self.opened_at.unwrap_or(0)) as f64 / 1000.0);
        let opened = self.opened_at.unwrap_or(0);
        let target = u64::from(t.capacity) * 99 / 100;
        let mut sold = 0u64;
        t.sold_99_after_s = self.purchases.iter().find_map(|p| {
            sold += u64::from(p.tickets);
            (sold >= target.max(1)).then(|| p.at_ms.saturating_sub(opened) as f64 / 1000.0)
        });
        t.bot_ticket_share = if t.tickets_sold == 0 {
            0.0
        } else {
            metrics::round6(t.bot_tickets as f64 / f64::from(t.tickets_sold))
        };
        t.fairness = fairness(&self.purchases);
        t.time_in_queue = Percentiles::of_ms(&mut self.waits_ms);
        t.events_processed = self.step;
        t.virtual_duration_s = self.now as f64 / 1000.0;
        t.invariants = Invariants {
            verdict: if self.violation.is_some() {
                "violated".into()
            } else {
                "ok".into()
            },
            violation: self.violation.as_ref().map(ToString::to_string),
            violation_step: self.violation.as_ref().map(|v| v.step),
            core_checks: t.invariants.core_checks,
            checked: CHECKED.iter().map(|s| (*s).to_owned()).collect(),
        };
        RunOutput {
            summary: t,
            samples: self.samples,
            queue_waits_ms: self.waits_ms,
            purchases: self.purchases,
            violation: self.violation,
        }
    }
}

/// What the referee checks, as listed in `summary.json`.
const CHECKED: [&str; 8] = [
    "no seat sold twice (every acknowledged sale, across crashes)",
    "tickets sold never exceed capacity",
    "positions strictly increase",
    "FIFO admission: nobody admitted while a lower position the simulator knows of waits",
    "a payment submitted in time and confirmed within the provider timeout is sold; its seats are never released meanwhile",
    "a waiting fan keeps its position through reloads and crashes (queue tokens)",
    "restore from snapshot + journal brings back exactly the durable state",
    "EventCore::check_invariants, periodically and at the end; the core's orders are exactly the sales acknowledged",
];

fn fairness(purchases: &[Purchase]) -> Fairness {
    let ranks: Vec<u64> = purchases.iter().map(|p| u64::from(p.rank)).collect();
    let n = ranks.len() as u64;
    let by_purchase = metrics::inversions(&ranks);
    let mut by_position: Vec<&Purchase> = purchases.iter().collect();
    by_position.sort_by_key(|p| (p.position, p.rank));
    let ranks: Vec<u64> = by_position.iter().map(|p| u64::from(p.rank)).collect();
    let by_position = metrics::inversions(&ranks);
    Fairness {
        purchases: n,
        arrival_purchase_inversions: by_purchase,
        arrival_purchase_inversion_share: metrics::inversion_share(by_purchase, n),
        arrival_position_inversions: by_position,
        arrival_position_inversion_share: metrics::inversion_share(by_position, n),
    }
}
