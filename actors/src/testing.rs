//! A shell for driving an [`EventCore`] in tests, benchmarks and the
//! simulator: a store that is durable at once, fans that keep their queue
//! tokens, and a ledger that checks the product's invariants after every
//! input from the outside, independently of the core's own bookkeeping.
//!
//! The ledger is the referee: it records what fans were told (positions,
//! admissions, holds, payments, sales) and fails loudly when the core
//! contradicts it, including across crashes and restores.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use onsale_schema::message::{
    FanStatus, HoldPlaced, HoldRejected, HoldRequest, JoinRefused, Joined, PaymentRefused,
    PaymentSettled, PaymentStarted, ProviderAnswer, Push, SaleCommand,
};
use onsale_schema::snapshot::{EventSnapshot, JournalEntry, JournalRecord, ReleaseReason};
use onsale_schema::token::{self, QueueClaims, TokenKey};
use onsale_schema::venue::{
    PriceLevelFile, RowFile, SeatFile, SectionFile, SectionMap, Venue, VenueFile,
};
use onsale_schema::{
    EventConfig, EventId, FanId, HoldId, Millis, OrderId, PaymentId, Position, SeatIdx,
};

use crate::{Effect, EventCore};

/// A venue of `sections` × `rows` × `seats_per_row`, two price levels
/// (front half of the rows dearer), first and last seat of each row
/// accessible.
#[must_use]
pub fn grid_venue(sections: u32, rows: u32, seats_per_row: u32) -> Arc<Venue> {
    let file = VenueFile {
        name: format!("Grid {sections}x{rows}x{seats_per_row}"),
        city: "Testville".into(),
        price_levels: vec![
            PriceLevelFile {
                id: "front".into(),
                name: "Front".into(),
                price_cents: 12_000,
            },
            PriceLevelFile {
                id: "back".into(),
                name: "Back".into(),
                price_cents: 6_000,
            },
        ],
        sections: (0..sections)
            .map(|s| SectionFile {
                id: format!("S{s}"),
                name: format!("Section {s}"),
                price_level: Some("back".into()),
                map: Some(SectionMap {
                    x: s as f32 * 110.0,
                    y: 0.0,
                    width: 100.0,
                    height: 100.0,
                }),
                rows: (0..rows)
                    .map(|r| RowFile {
                        id: format!("{}", r + 1),
                        price_level: (r < rows / 2).then(|| "front".into()),
                        seats: (0..seats_per_row)
                            .map(|n| SeatFile {
                                id: format!("{}", n + 1),
                                price_level: None,
                                accessible: n == 0 || n + 1 == seats_per_row,
                            })
                            .collect(),
                    })
                    .collect(),
            })
            .collect(),
    };
    Arc::new(Venue::from_file(&file).expect("grid venues are valid"))
}

/// What the ledger knows of one payment a fan submitted in time.
#[derive(Clone, Debug)]
struct PendingPayment {
    hold: HoldId,
    seats: Vec<SeatIdx>,
    submitted_at: Millis,
    /// Declined by the provider, or voided after the provider timeout: the
    /// only two ways a payment submitted in time may end without a sale.
    dead: bool,
}

/// Drives one event core like a real shell would, and referees it.
#[derive(Debug)]
pub struct Harness {
    pub core: EventCore,
    pub now: Millis,
    key: TokenKey,
    venue: Arc<Venue>,
    /// The fans' queue tokens: the only record of waiting fans that
    /// survives a crash.
    pub tokens: HashMap<FanId, String>,
    /// The "store": the last snapshot, the journal after it, the counter.
    stored_snapshot: Option<EventSnapshot>,
    stored_journal: Vec<JournalRecord>,
    stored_ceiling: Position,
    /// Everything ever issued, for "positions strictly increase".
    pub positions_issued_max: Position,
    /// Fans the ledger believes wait in this incarnation, by position.
    waiting: BTreeMap<Position, FanId>,
    /// Seats sold, by order, as acknowledged to fans.
    sold: HashMap<SeatIdx, OrderId>,
    pub acknowledged_orders: BTreeMap<OrderId, Vec<SeatIdx>>,
    pending: HashMap<PaymentId, PendingPayment>,
    pub payments_requested: Vec<PaymentId>,
    /// Status queries the core asked of the provider.
    pub payment_queries: Vec<PaymentId>,
    pub refunds: Vec<PaymentId>,
    /// The checkout sessions' alarms, as the core armed them.
    alarms: BTreeMap<HoldId, Millis>,
    pub pushes: Vec<Push>,
    pub admissions: Vec<(FanId, Position)>,
    pub restores: u32,
    /// Fans told they are in the pre-queue.
    pub pre_queued: std::collections::HashSet<FanId>,
    /// Positions the draw told, by fan: fixed once told.
    pub drawn: HashMap<FanId, Position>,
    drawn_by_position: HashMap<Position, FanId>,
}

impl Harness {
    #[must_use]
    pub fn new(venue: Arc<Venue>, config: EventConfig) -> Harness {
        let now = Millis(1_000_000);
        let core = EventCore::new(EventId(1), Arc::clone(&venue), config, now)
            .expect("harness config is valid");
        let mut h = Harness {
            core,
            now,
            key: TokenKey::derive(b"harness"),
            venue,
            tokens: HashMap::new(),
            stored_snapshot: None,
            stored_journal: Vec::new(),
            stored_ceiling: Position(1),
            positions_issued_max: Position(0),
            waiting: BTreeMap::new(),
            sold: HashMap::new(),
            acknowledged_orders: BTreeMap::new(),
            pending: HashMap::new(),
            payments_requested: Vec::new(),
            payment_queries: Vec::new(),
            refunds: Vec::new(),
            alarms: BTreeMap::new(),
            pushes: Vec::new(),
            admissions: Vec::new(),
            restores: 0,
            pre_queued: std::collections::HashSet::new(),
            drawn: HashMap::new(),
            drawn_by_position: HashMap::new(),
        };
        h.settle();
        // A shell stores the new event's first snapshot before serving it.
        h.snapshot();
        h
    }

    /// Move the shell's clock without telling the core: its timers are late,
    /// as an actor's timer may be behind a message that arrived first.
    pub fn drift(&mut self, delta_ms: u64) {
        self.now = self.now.saturating_add_ms(delta_ms);
    }

    /// Move time by `delta_ms` (negative: a clock that jumped back; the
    /// core must treat it as no time passing).
    pub fn advance(&mut self, delta_ms: i64) {
        self.now = Millis(self.now.0.saturating_add_signed(delta_ms));
        self.core.handle_timeout(self.now);
        self.settle();
        self.ring_alarms();
    }

    /// Ring every checkout alarm due by now, earliest first, as the
    /// sessions would (each may re-arm its own).
    fn ring_alarms(&mut self) {
        loop {
            let due = self
                .alarms
                .iter()
                .filter(|(_, at)| **at <= self.now)
                .min_by_key(|(hold, at)| (**at, **hold))
                .map(|(hold, _)| *hold);
            let Some(hold) = due else {
                return;
            };
            self.alarms.remove(&hold);
            self.core.checkout_alarm(hold, self.now);
            self.settle();
        }
    }

    /// When the next checkout alarm rings, if any is armed.
    #[must_use]
    pub fn next_alarm(&self) -> Option<Millis> {
        self.alarms.values().min().copied()
    }

    pub fn sale(
        &mut self,
        command: SaleCommand,
    ) -> Result<onsale_schema::SaleState, onsale_schema::SaleState> {
        let r = self.core.sale_command(command, self.now);
        self.settle();
        r
    }

    pub fn join(&mut self, fan: FanId) -> Result<Joined, JoinRefused> {
        let r = self.core.join(fan, self.now);
        if let Ok(joined) = &r {
            if joined.fresh && !matches!(joined.status, FanStatus::PreQueued { .. }) {
                assert!(
                    joined.position > self.positions_issued_max,
                    "position {} handed out at or below {} issued before",
                    joined.position,
                    self.positions_issued_max
                );
            }
            self.on_joined(fan, joined);
        }
        self.settle();
        r
    }

    /// The fan joins with its presale code (the shell checked the code).
    pub fn join_with_code(&mut self, fan: FanId) -> Result<Joined, JoinRefused> {
        let r = self.core.join_with_code(fan, self.now);
        if let Ok(joined) = &r {
            self.on_joined(fan, joined);
        }
        self.settle();
        r
    }

    /// The fan comes back with the token it kept (if it has one).
    pub fn resume(&mut self, fan: FanId) -> Option<Result<Joined, JoinRefused>> {
        let text = self.tokens.get(&fan)?;
        let verified = token::verify(&self.key, text, self.core.event(), fan, self.now).ok()?;
        let r = self.core.resume(&verified, self.now);
        if let Ok(joined) = &r {
            self.on_joined(fan, joined);
        }
        self.settle();
        Some(r)
    }

    fn on_joined(&mut self, fan: FanId, joined: &Joined) {
        if let FanStatus::PreQueued { .. } = joined.status {
            assert_eq!(
                joined.position,
                Position(0),
                "a pre-queued fan has no position"
            );
            assert!(
                !self.drawn.contains_key(&fan),
                "{fan} was drawn and is pre-queued again"
            );
            self.pre_queued.insert(fan);
            if !self.tokens.contains_key(&fan) {
                let claims = QueueClaims {
                    event: self.core.event(),
                    fan,
                    position: Position(0),
                    issued_at: self.now,
                };
                self.tokens.insert(fan, token::sign(&self.key, &claims));
            }
            return;
        }
        if let Some(drawn) = self.drawn.get(&fan) {
            assert_eq!(
                *drawn, joined.position,
                "{fan} was told drawn position {drawn}, now {}",
                joined.position
            );
        }
        if joined.position > self.positions_issued_max {
            self.positions_issued_max = joined.position;
        }
        let claims = QueueClaims {
            event: self.core.event(),
            fan,
            position: joined.position,
            issued_at: self.now,
        };
        let keep_old = self
            .tokens
            .get(&fan)
            .and_then(|t| token::verify(&self.key, t, self.core.event(), fan, self.now).ok())
            .is_some_and(|t| t.claims().position <= joined.position);
        if !keep_old {
            self.tokens.insert(fan, token::sign(&self.key, &claims));
        }
        self.waiting.retain(|_, f| *f != fan);
        if let FanStatus::Waiting { position, .. } = joined.status {
            self.waiting.insert(position, fan);
        }
    }

    pub fn leave(&mut self, fan: FanId) {
        self.core.leave(fan, self.now);
        if !matches!(self.core.status(fan), Some(FanStatus::Waiting { .. })) {
            self.waiting.retain(|_, f| *f != fan);
        }
        self.settle();
    }

    pub fn enter(&mut self, fan: FanId) {
        self.core.enter(fan, self.now);
        self.settle();
    }

    pub fn hold(&mut self, fan: FanId, request: &HoldRequest) -> Result<HoldPlaced, HoldRejected> {
        let r = self.core.hold(fan, request, self.now);
        // Journal records first: a payment voided by this very input's
        // timers frees its seats legitimately.
        self.settle();
        if let Ok(placed) = &r {
            for seat in &placed.seats {
                let sold = self.sold.get(seat);
                assert!(sold.is_none(), "{seat} held after it was sold in {sold:?}");
                let paying = self
                    .pending
                    .values()
                    .any(|p| !p.dead && p.seats.contains(seat));
                assert!(!paying, "{seat} re-held while a payment for it is pending");
            }
        }
        r
    }

    pub fn release(&mut self, fan: FanId, hold: HoldId) -> Result<(), PaymentRefused> {
        let r = self.core.release(fan, hold, self.now);
        self.settle();
        r
    }

    pub fn submit_payment(
        &mut self,
        fan: FanId,
        hold: HoldId,
    ) -> Result<PaymentStarted, PaymentRefused> {
        let deadline = match self.core.status(fan) {
            Some(FanStatus::Holding {
                hold: h, deadline, ..
            }) if h == hold => Some(deadline),
            _ => None,
        };
        let r = self.core.submit_payment(fan, hold, self.now);
        if let Some(deadline) = deadline
            && self.now.max(self.core.clock()) >= deadline
        {
            assert!(
                r.is_err(),
                "payment submitted at {} after deadline {deadline} was accepted",
                self.now
            );
        }
        if let Ok(started) = &r {
            let seats = self.core_hold_seats(fan);
            self.pending.insert(
                started.payment,
                PendingPayment {
                    hold,
                    seats,
                    submitted_at: self.core.clock(),
                    dead: false,
                },
            );
        }
        self.settle();
        r
    }

    fn core_hold_seats(&self, fan: FanId) -> Vec<SeatIdx> {
        let snapshot = self.core.snapshot();
        snapshot
            .holds
            .iter()
            .find(|h| h.fan == fan)
            .map(|h| h.seats.clone())
            .unwrap_or_default()
    }

    pub fn provider_answer(
        &mut self,
        payment: PaymentId,
        answer: ProviderAnswer,
    ) -> PaymentSettled {
        let r = self.core.provider_answer(payment, answer, self.now);
        if let Some(p) = self.pending.get(&payment).cloned() {
            let in_time = self.core.clock()
                < p.submitted_at
                    .saturating_add_ms(self.core.config().provider_timeout_ms);
            if answer == ProviderAnswer::Confirmed && !p.dead && in_time {
                assert!(
                    matches!(r, PaymentSettled::Sold { .. }),
                    "{payment} confirmed in time but settled as {r:?}"
                );
            }
        }
        if let PaymentSettled::Sold { order } = r {
            let seats = self.orders_seats(order);
            if let Some(previous) = self.acknowledged_orders.insert(order, seats.clone()) {
                assert_eq!(previous, seats, "{order} changed its seats");
            }
        }
        self.settle();
        r
    }

    fn orders_seats(&self, order: OrderId) -> Vec<SeatIdx> {
        self.core
            .orders()
            .iter()
            .find(|o| o.order == order)
            .map(|o| o.seats.clone())
            .expect("a sold order is in the core")
    }

    /// Persist a snapshot and truncate the journal, as a shell would.
    pub fn snapshot(&mut self) {
        let snapshot = self.core.snapshot();
        let bytes = snapshot.encode().expect("snapshot encodes");
        let decoded = EventSnapshot::decode(&bytes).expect("snapshot decodes");
        assert_eq!(
            decoded, snapshot,
            "snapshot does not round-trip through bytes"
        );
        self.stored_snapshot = Some(decoded);
        self.stored_journal.clear();
    }

    /// The process dies: rebuild the core from the store alone. Waiting
    /// fans are forgotten until they resume with their tokens.
    pub fn crash_and_restore(&mut self) {
        let before = self.core.snapshot();
        let stored = self
            .stored_snapshot
            .as_ref()
            .expect("the first snapshot is stored at creation");
        let mut core = EventCore::restore(Arc::clone(&self.venue), stored, self.stored_ceiling)
            .expect("stored snapshot restores");
        for record in &self.stored_journal {
            core.replay(record).expect("stored journal replays");
        }
        core.counter_durable(self.stored_ceiling);
        // Everything durable came back exactly (waiting fans are not durable).
        let mut after = core.snapshot();
        let mut expected = before;
        after.waiting = 0;
        expected.waiting = 0;
        after.counter_ceiling = expected.counter_ceiling;
        // Time passing without a durable change is not durable itself.
        assert!(
            after.clock <= expected.clock,
            "restore moved the clock forward"
        );
        after.clock = expected.clock;
        assert_eq!(after, expected, "restore lost or changed durable state");
        // Effects of the restore (the next counter block, pushes) go out as
        // from any input.
        self.core = core;
        self.waiting.clear();
        self.restores += 1;
        // The sessions died with the process: re-arm from the core.
        self.alarms = self.core.checkout_alarms().into_iter().collect();
        self.settle();
    }

    /// Drain effects like a shell: journal to the store, counter blocks
    /// confirmed at once, pushes recorded; then check every invariant.
    fn settle(&mut self) {
        loop {
            let effects: Vec<Effect> = self.core.drain_effects().collect();
            if effects.is_empty() {
                break;
            }
            for effect in effects {
                self.on_effect(effect);
            }
        }
        if let Err(e) = self.core.check_invariants() {
            panic!("invariant broken: {e}");
        }
        for (order, seats) in &self.acknowledged_orders {
            let kept = self
                .core
                .orders()
                .iter()
                .any(|o| o.order == *order && &o.seats == seats);
            assert!(kept, "acknowledged {order} was lost");
        }
    }

    fn on_effect(&mut self, effect: Effect) {
        match effect {
            Effect::Journal(record) => {
                self.check_record(&record);
                self.stored_journal.push(record);
            }
            Effect::ReserveCounter { ceiling } => {
                self.stored_ceiling = self.stored_ceiling.max(ceiling);
                self.core.counter_durable(ceiling);
            }
            Effect::Push(push) => {
                if let Push::Drawn { fans } = &push {
                    self.on_drawn(fans);
                }
                self.pushes.push(push);
            }
            Effect::RequestPayment { payment, .. } => self.payments_requested.push(payment),
            Effect::QueryPayment { payment, .. } => self.payment_queries.push(payment),
            Effect::Refund { payment } => {
                assert!(!self.refunds.contains(&payment), "{payment} refunded twice");
                self.refunds.push(payment);
            }
            Effect::ArmCheckout { hold, at } => {
                self.alarms.insert(hold, at);
            }
            Effect::EndCheckout { hold } => {
                self.alarms.remove(&hold);
            }
        }
    }

    /// The draw told pre-queued fans their positions: each fan once, each
    /// position once, all above any position handed out before.
    fn on_drawn(&mut self, fans: &[(FanId, Position)]) {
        for (fan, position) in fans {
            assert!(
                self.pre_queued.contains(fan),
                "{fan} drawn but never pre-queued"
            );
            assert!(
                *position > self.positions_issued_max,
                "{fan} drawn at {position}, at or below {} handed out before",
                self.positions_issued_max
            );
            assert!(
                self.drawn.insert(*fan, *position).is_none(),
                "{fan} drawn twice"
            );
            if let Some(other) = self.drawn_by_position.insert(*position, *fan) {
                panic!("{position} drawn for {other} and {fan}");
            }
            self.positions_issued_max = *position;
            self.waiting.insert(*position, *fan);
            let claims = QueueClaims {
                event: self.core.event(),
                fan: *fan,
                position: *position,
                issued_at: self.now,
            };
            self.tokens.insert(*fan, token::sign(&self.key, &claims));
        }
    }

    fn check_record(&mut self, record: &JournalRecord) {
        for (fan, position, _) in record.entry.admissions() {
            self.waiting.retain(|_, f| *f != fan);
            if let Some((first, other)) = self.waiting.first_key_value() {
                assert!(
                    position < *first,
                    "{fan} admitted at {position} while {other} waits at {first}"
                );
            }
            self.admissions.push((fan, position));
        }
        match &record.entry {
            JournalEntry::Sold { hold: _, order, .. } => {
                let seats = self.orders_seats(*order);
                for seat in &seats {
                    if let Some(other) = self.sold.insert(*seat, *order) {
                        panic!("{seat} sold twice: {other} and {order}");
                    }
                }
                self.pending.retain(|_, p| p.seats != seats);
            }
            JournalEntry::PaymentDeclined { payment, .. } => {
                if let Some(p) = self.pending.get_mut(payment) {
                    p.dead = true;
                }
            }
            JournalEntry::HoldReleased { hold, reason } => {
                let timeout_ms = self.core.config().provider_timeout_ms;
                for (payment, p) in &mut self.pending {
                    if p.hold != *hold || p.dead {
                        continue;
                    }
                    let timed_out = record.at >= p.submitted_at.saturating_add_ms(timeout_ms);
                    assert!(
                        *reason == ReleaseReason::Voided && timed_out,
                        "{hold} released ({reason:?}) at {} while {payment}, submitted in time at {}, awaits the provider",
                        record.at,
                        p.submitted_at
                    );
                    p.dead = true;
                }
            }
            _ => {}
        }
    }
}
