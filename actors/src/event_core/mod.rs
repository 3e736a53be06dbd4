//! `EventCore`: one event's waiting room, admissions, seats, holds,
//! checkouts and sales, as a pure state machine.
//!
//! No async, no clock, no randomness, no I/O. Every input carries `now`;
//! time never runs backwards (an earlier `now` counts as the latest seen).
//! Outputs are the returned reply plus [`Effect`]s the shell drains:
//! journal entries to make durable, counter blocks to reserve, pushes to
//! gateways, payments to start or refund.
//!
//! Every durable change goes through [`EventCore::apply`], both live and
//! when a journal is replayed after a restore, so the two cannot differ.
//! Waiting fans are deliberately not durable (see `snapshot`): a queue of
//! millions survives as the counter ceiling plus the fans' queue tokens.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, VecDeque};
use std::sync::Arc;

use onsale_schema::config::ConfigError;
use onsale_schema::message::{
    Area, DeclineReason, EventOverview, FanStatus, HoldPlaced, HoldRejected, HoldRequest,
    JoinRefused, Joined, PaymentRefused, PaymentSettled, PaymentStarted, ProviderAnswer, Push,
    SaleCommand, SectionSeats,
};
use onsale_schema::snapshot::{
    DrawRecord, JournalEntry, JournalRecord, OrderRecord, ReleaseReason, SCHEMA_VERSION,
    SCHEMA_VERSION_READ_MIN, draw_order,
};
use onsale_schema::token::VerifiedQueueToken;
use onsale_schema::venue::Venue;
use onsale_schema::{
    EventConfig, EventId, FanId, HoldId, Millis, OrderId, PaymentId, Position, SaleState, SeatIdx,
    SectionIdx, limits,
};
use rustc_hash::{FxHashMap, FxHashSet};

use crate::checkout_core::{CheckoutCore, CheckoutDue, CheckoutRules, PAYMENT_QUERY_AFTER_MS};
use crate::seat_map::SeatMap;
use crate::waiting_room::{FanState, WaitingRoom};

mod restore;

/// What the shell must do after an input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Make this record durable. Anything told to a fan after it may be
    /// acknowledged only once it (and every record before it) is durable.
    Journal(JournalRecord),
    /// Reserve positions up to `ceiling` in the store, then call
    /// [`EventCore::counter_durable`].
    ReserveCounter { ceiling: Position },
    /// Tell gateways (and through them, fans).
    Push(Push),
    /// Ask the payment provider to charge the fan.
    RequestPayment {
        payment: PaymentId,
        hold: HoldId,
        fan: FanId,
        amount_cents: u64,
    },
    /// The provider took money for a payment the event no longer honours.
    /// At most once per payment: the refund is journalled first.
    Refund { payment: PaymentId },
    /// Ask the provider what became of a payment it has not answered.
    QueryPayment { payment: PaymentId, hold: HoldId },
    /// Set the one alarm of `hold`'s checkout session to `at` (replacing
    /// any earlier one); call [`EventCore::checkout_alarm`] when it rings.
    ArmCheckout { hold: HoldId, at: Millis },
    /// `hold`'s checkout ended (sold or released): stop its session.
    EndCheckout { hold: HoldId },
}

/// An admitted fan whose turn is not over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Shopper {
    position: Position,
    admitted_at: Millis,
    entered: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Hold {
    fan: FanId,
    seats: Vec<SeatIdx>,
    checkout: CheckoutCore,
}

/// The core's own timers: admission windows. Checkout alarms are kept by
/// the shell's checkout sessions ([`Effect::ArmCheckout`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    Turn(FanId),
    /// The sale's scheduled opening (`EventConfig::opens_at`).
    Open,
}

/// Why a snapshot or journal could not be restored. Nothing is half-applied
/// from the caller's point of view: a failed restore yields no core.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RestoreError {
    #[error("state belongs to {found}, not {expected}")]
    WrongEvent { expected: EventId, found: EventId },
    #[error("snapshot was taken over a different venue")]
    WrongVenue,
    #[error(
        "snapshot schema version {0} is not one this build reads ({SCHEMA_VERSION_READ_MIN} to {SCHEMA_VERSION})"
    )]
    Version(u32),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("journal record {found} follows {last}: records are missing or repeated")]
    JournalGap { last: u64, found: u64 },
    #[error("corrupt event state: {0}")]
    Corrupt(String),
}

fn corrupt<T>(why: impl Into<String>) -> Result<T, RestoreError> {
    Err(RestoreError::Corrupt(why.into()))
}

/// One event, pure.
#[derive(Clone, Debug)]
pub struct EventCore {
    event: EventId,
    config: EventConfig,
    /// Checkout timing: from the config, plus the node's query interval
    /// (not durable: set by the shell after every start or restore).
    rules: CheckoutRules,
    venue_digest: u64,
    sale: SaleState,
    clock: Millis,
    journal_seq: u64,
    seats: SeatMap,
    room: WaitingRoom,
    shoppers: FxHashMap<FanId, Shopper>,
    holds: BTreeMap<HoldId, Hold>,
    fan_holds: FxHashMap<FanId, HoldId>,
    payments: FxHashMap<PaymentId, HoldId>,
    orders: Vec<OrderRecord>,
    paid: FxHashMap<PaymentId, OrderId>,
    /// Payments the event will not honour (voided, declined): a later
    /// confirmation is refunded. Bounded by `VOIDED_PAYMENTS_MAX`.
    dead: VecDeque<PaymentId>,
    dead_set: FxHashSet<PaymentId>,
    timers: BinaryHeap<Reverse<(Millis, Timer)>>,
    next_hold: HoldId,
    next_payment: PaymentId,
    next_order: OrderId,
    admitted_through: Position,
    /// Fans waiting before a restore who have not come back yet (estimate).
    unresumed: u64,
    /// The counter ceiling at restore: positions below were issued before.
    restored_floor: Position,
    effects: Vec<Effect>,
    pushed_through: Position,
    pushed_full: bool,
    /// Fans who joined the pre-queue, in the order they joined (durable:
    /// each is journalled); kept after the draw, which a restore redoes.
    pre_queue: Vec<FanId>,
    /// The opening's draw, once made.
    draw: Option<DrawRecord>,
    /// Fans who joined with their presale code (durable: each code makes
    /// one place in line).
    presale_joined: FxHashSet<FanId>,
    /// The proof-of-work difficulty an operator set (bits; durable).
    stamp_bits: u8,
    /// Fresh joins in the clock's current second, and in the last whole
    /// one: the join rate the automatic proof-of-work rule reads.
    joins_second: (u64, u64, u64),
    pushed_stamp: u8,
    /// Randomness from the shell for the next draw's seed (not durable:
    /// the seed a draw used is journalled).
    entropy: u64,
}

impl EventCore {
    /// A new event, before its sale opens.
    pub fn new(
        event: EventId,
        venue: Arc<Venue>,
        config: EventConfig,
        now: Millis,
    ) -> Result<EventCore, ConfigError> {
        config.check()?;
        let digest = venue.digest();
        let mut core = EventCore::empty(event, (venue, digest), config, now, Position(1));
        core.request_block();
        core.arm_opening();
        Ok(core)
    }

    fn empty(
        event: EventId,
        (venue, venue_digest): (Arc<Venue>, u64),
        config: EventConfig,
        now: Millis,
        ceiling: Position,
    ) -> EventCore {
        EventCore {
            event,
            venue_digest,
            room: WaitingRoom::new(ceiling.0, config.counter_block),
            seats: SeatMap::new(venue),
            rules: CheckoutRules::new(&config, PAYMENT_QUERY_AFTER_MS),
            config,
            sale: SaleState::Scheduled,
            clock: now,
            journal_seq: 0,
            shoppers: FxHashMap::default(),
            holds: BTreeMap::new(),
            fan_holds: FxHashMap::default(),
            payments: FxHashMap::default(),
            orders: Vec::new(),
            paid: FxHashMap::default(),
            dead: VecDeque::new(),
            dead_set: FxHashSet::default(),
            timers: BinaryHeap::new(),
            next_hold: HoldId(1),
            next_payment: PaymentId(1),
            next_order: OrderId(1),
            admitted_through: Position(0),
            unresumed: 0,
            restored_floor: Position(0),
            effects: Vec::new(),
            pushed_through: Position(0),
            pushed_full: false,
            pre_queue: Vec::new(),
            draw: None,
            presale_joined: FxHashSet::default(),
            stamp_bits: 0,
            joins_second: (0, 0, 0),
            pushed_stamp: 0,
            entropy: 0,
        }
    }

    /// Randomness for the seed of the opening's draw: the shell gives it
    /// after every start or restore (a core is never random by itself).
    /// Without it the draw is seeded by 0: fair to nobody in particular,
    /// but predictable.
    pub fn set_entropy(&mut self, entropy: u64) {
        self.entropy = entropy;
    }

    /// Fans in the pre-queue (joined before a drawn opening), drawn or not.
    #[must_use]
    pub fn pre_queue_len(&self) -> usize {
        self.pre_queue.len()
    }

    /// The opening's draw, once made.
    #[must_use]
    pub fn draw(&self) -> Option<DrawRecord> {
        self.draw
    }

    // ----- reading -------------------------------------------------------

    #[must_use]
    pub fn event(&self) -> EventId {
        self.event
    }

    #[must_use]
    pub fn config(&self) -> &EventConfig {
        &self.config
    }

    /// The rules every checkout of this event follows.
    #[must_use]
    pub fn checkout_rules(&self) -> &CheckoutRules {
        &self.rules
    }

    /// Ask the provider about a silent payment this long after it was
    /// submitted (a node setting; see [`PAYMENT_QUERY_AFTER_MS`]).
    pub fn set_payment_query_after_ms(&mut self, ms: u64) {
        self.rules = CheckoutRules::new(&self.config, ms);
        for h in self.holds.values_mut() {
            h.checkout.reschedule(&self.rules);
        }
    }

    /// Every open checkout's next alarm, by hold: what a shell arms after
    /// a start or restore.
    #[must_use]
    pub fn checkout_alarms(&self) -> Vec<(HoldId, Millis)> {
        self.holds
            .iter()
            .map(|(id, h)| (*id, h.checkout.next_alarm(&self.rules)))
            .collect()
    }

    #[must_use]
    pub fn venue(&self) -> &Arc<Venue> {
        self.seats.venue()
    }

    #[must_use]
    pub fn seats(&self) -> &SeatMap {
        &self.seats
    }

    #[must_use]
    pub fn sale(&self) -> SaleState {
        self.sale
    }

    #[must_use]
    pub fn clock(&self) -> Millis {
        self.clock
    }

    #[must_use]
    pub fn journal_seq(&self) -> u64 {
        self.journal_seq
    }

    #[must_use]
    pub fn admitted_through(&self) -> Position {
        self.admitted_through
    }

    #[must_use]
    pub fn next_position(&self) -> Position {
        self.room.next_position()
    }

    /// Fans waiting, including those expected back after a restore.
    #[must_use]
    pub fn waiting(&self) -> u64 {
        self.room.waiting() + self.room.pre_queued() + self.unresumed
    }

    /// Admitted fans whose turn is on and who hold nothing.
    #[must_use]
    pub fn shopping(&self) -> u32 {
        (self.shoppers.len() - self.fan_holds.len()) as u32
    }

    /// Every open checkout, by hold.
    #[must_use]
    pub fn checkouts(&self) -> Vec<(HoldId, CheckoutCore)> {
        self.holds.iter().map(|(id, h)| (*id, h.checkout)).collect()
    }

    #[must_use]
    pub fn checkout(&self, hold: HoldId) -> Option<CheckoutCore> {
        self.holds.get(&hold).map(|h| h.checkout)
    }

    #[must_use]
    pub fn orders(&self) -> &[OrderRecord] {
        &self.orders
    }

    /// Whether a new arrival would be turned away as "full".
    #[must_use]
    pub fn is_full(&self) -> bool {
        let unsold = u64::from(self.seats.capacity() - self.seats.sold());
        self.waiting() >= u64::from(self.config.full_factor) * unsold
    }

    /// When the core next needs `handle_timeout`, if ever (admission
    /// windows; checkout alarms come as [`Effect::ArmCheckout`]).
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Millis> {
        self.timers.peek().map(|Reverse((at, _))| *at)
    }

    /// Take the effects produced so far, in order.
    pub fn drain_effects(&mut self) -> std::vec::Drain<'_, Effect> {
        self.effects.drain(..)
    }

    #[must_use]
    pub fn status(&self, fan: FanId) -> Option<FanStatus> {
        let entry = self.room.fan(fan)?;
        Some(match entry.state {
            FanState::PreQueued => FanStatus::PreQueued {
                opens_at: self.config.opens_at,
            },
            FanState::Waiting => FanStatus::Waiting {
                position: entry.position,
                ahead: self.ahead_estimate(entry.position),
            },
            FanState::Admitted => self.turn_status(fan, entry.position),
            FanState::Purchased { order } => self.purchased_status(OrderId(u64::from(order))),
            FanState::Expired => FanStatus::Expired,
            FanState::Left => FanStatus::Left,
        })
    }

    fn purchased_status(&self, order: OrderId) -> FanStatus {
        // Orders are kept sorted by id.
        let seats = self
            .orders
            .binary_search_by_key(&order, |o| o.order)
            .map(|i| self.orders[i].seats.clone())
            .unwrap_or_default();
        FanStatus::Purchased {
            tickets: seats.len() as u8,
            order,
            seats,
        }
    }

    fn turn_status(&self, fan: FanId, position: Position) -> FanStatus {
        if let Some(hold_id) = self.fan_holds.get(&fan) {
            let hold = &self.holds[hold_id];
            return FanStatus::Holding {
                hold: *hold_id,
                deadline: hold.checkout.deadline,
                paying: hold.checkout.payment().is_some(),
            };
        }
        let shopper = self.shoppers[&fan];
        FanStatus::Admitted {
            position,
            shopping_until: shopper
                .admitted_at
                .saturating_add_ms(self.config.shopping_window_ms),
        }
    }

    /// Fans in front of `position`, estimated: the span to the admission
    /// frontier scaled by how densely that span is still occupied. Exact
    /// without gaps or departures; never a walk over the queue.
    fn ahead_estimate(&self, position: Position) -> u64 {
        let span = position.0.saturating_sub(self.admitted_through.0 + 1);
        let issued = self
            .room
            .next_position()
            .0
            .saturating_sub(self.admitted_through.0 + 1);
        if issued == 0 {
            return 0;
        }
        let waiting = self.waiting().min(issued);
        (u128::from(span) * u128::from(waiting) / u128::from(issued)) as u64
    }

    #[must_use]
    pub fn overview(&self) -> EventOverview {
        EventOverview {
            sections: (0..self.venue().sections.len())
                .map(|s| self.seats.section_summary(SectionIdx(s as u16)))
                .collect(),
            ..self.numbers()
        }
    }

    /// The overview without its section summaries (cheap: no seat is
    /// looked at).
    #[must_use]
    pub fn numbers(&self) -> EventOverview {
        EventOverview {
            event: self.event,
            sale: self.sale,
            capacity: self.seats.capacity(),
            sold: self.seats.sold(),
            held: self.seats.held(),
            waiting: self.waiting(),
            full: self.is_full() && self.sale != SaleState::SoldOut,
            admitted_through: self.admitted_through,
            sections: Vec::new(),
            stamp_bits: self.stamp_required(),
        }
    }

    #[must_use]
    pub fn section_seats(&self, section: SectionIdx) -> Option<SectionSeats> {
        self.seats.section_seats(section)
    }

    // ----- the waiting room ------------------------------------------------

    /// A fan arrives. Joining twice keeps the first position. During the
    /// presale only a fan already in line gets an answer other than
    /// [`JoinRefused::CodeRequired`].
    pub fn join(&mut self, fan: FanId, now: Millis) -> Result<Joined, JoinRefused> {
        self.advance(now);
        let result = if self.in_presale() && !self.in_line(fan) {
            Err(JoinRefused::CodeRequired)
        } else {
            self.join_inner(fan)
        };
        self.finish();
        result
    }

    /// A fan arrives with its presale code, which the shell checked is
    /// this fan's for this event. During the presale the code makes one
    /// place in line, once: a fan who used it and is not known (a crash
    /// forgot it while it waited) comes back with its queue token. After
    /// the presale this is a plain join.
    pub fn join_with_code(&mut self, fan: FanId, now: Millis) -> Result<Joined, JoinRefused> {
        self.advance(now);
        let result = self.join_with_code_inner(fan);
        self.finish();
        result
    }

    fn join_with_code_inner(&mut self, fan: FanId) -> Result<Joined, JoinRefused> {
        if !self.in_presale() || self.in_line(fan) {
            return self.join_inner(fan);
        }
        if self.presale_joined.contains(&fan) {
            return Err(JoinRefused::CodeUsed);
        }
        let joined = self.join_inner(fan)?;
        self.record(JournalEntry::PresaleJoined { fan });
        Ok(joined)
    }

    /// Whether the event's presale lasts (only fans with codes join).
    #[must_use]
    pub fn in_presale(&self) -> bool {
        self.config
            .presale_until
            .is_some_and(|until| self.clock < until)
    }

    /// Whether the fan is known and not gone from the line.
    fn in_line(&self, fan: FanId) -> bool {
        self.room
            .fan(fan)
            .is_some_and(|e| e.state != FanState::Left)
    }

    fn join_inner(&mut self, fan: FanId) -> Result<Joined, JoinRefused> {
        let known = self.room.fan(fan);
        if let Some(entry) = known
            && entry.state != FanState::Left
        {
            return Ok(self.joined(fan, entry.position, false));
        }
        match self.sale {
            SaleState::Closed => return Err(JoinRefused::Closed),
            SaleState::SoldOut => return Err(JoinRefused::SoldOut),
            _ => {}
        }
        if let Some(entry) = known {
            // A fan who left comes back to its first position.
            self.room.resume(fan, entry.position);
            self.admit();
            return Ok(self.joined(fan, entry.position, false));
        }
        if self.is_full() {
            return Err(JoinRefused::Full);
        }
        if self.pre_queue_open() {
            if self.pre_queue.len() >= limits::PRE_QUEUE_MAX
                || self.room.fans_known() >= limits::EVENT_FANS_MAX
            {
                return Err(JoinRefused::Busy);
            }
            self.record(JournalEntry::PreQueued { fan });
            self.count_join();
            return Ok(self.joined(fan, Position(0), true));
        }
        if self.room.fans_known() >= limits::EVENT_FANS_MAX {
            return Err(JoinRefused::Busy);
        }
        let Some(position) = self.room.join(fan) else {
            self.request_block();
            return Err(JoinRefused::Busy);
        };
        self.request_block();
        self.count_join();
        self.admit();
        Ok(self.joined(fan, position, true))
    }

    // ----- proof of work -----------------------------------------------------

    /// The difficulty an operator set (bits).
    #[must_use]
    pub fn stamp_set(&self) -> u8 {
        self.stamp_bits
    }

    /// The proof of work a join needs now: the operator's setting, or the
    /// automatic rule's if higher. The rule asks for
    /// `stamp_auto_bits` while the room would fill within
    /// `stamp_auto_fill_s` at the last whole second's rate of fresh joins.
    #[must_use]
    pub fn stamp_required(&self) -> u8 {
        let auto = self.config.stamp_auto_bits;
        if auto <= self.stamp_bits || matches!(self.sale, SaleState::SoldOut | SaleState::Closed) {
            return self.stamp_bits;
        }
        let unsold = u64::from(self.seats.capacity() - self.seats.sold());
        let room = (u64::from(self.config.full_factor) * unsold).saturating_sub(self.waiting());
        let rate = self.join_rate();
        let filling = rate.saturating_mul(u64::from(self.config.stamp_auto_fill_s)) >= room;
        if rate > 0 && filling {
            auto
        } else {
            self.stamp_bits
        }
    }

    /// An operator sets the proof of work joins need (at most
    /// `limits::STAMP_BITS_MAX`; higher is clamped).
    pub fn set_stamp(&mut self, bits: u8, now: Millis) -> u8 {
        self.advance(now);
        let bits = bits.min(limits::STAMP_BITS_MAX);
        if bits != self.stamp_bits {
            self.record(JournalEntry::StampDifficulty { bits });
        }
        self.finish();
        self.stamp_required()
    }

    /// Fresh joins in the last whole second of the clock.
    fn join_rate(&self) -> u64 {
        let (current, count, last) = self.joins_second;
        match (self.clock.0 / 1_000).saturating_sub(current) {
            0 => last,
            1 => count,
            _ => 0,
        }
    }

    /// Count a fresh join in the clock's current second.
    fn count_join(&mut self) {
        let second = self.clock.0 / 1_000;
        let (current, count, last) = self.joins_second;
        self.joins_second = match second.checked_sub(current) {
            Some(0) => (current, count + 1, last),
            Some(1) => (second, 1, count),
            _ => (second, 1, 0),
        };
    }

    fn joined(&self, fan: FanId, position: Position, fresh: bool) -> Joined {
        Joined {
            position,
            fresh,
            status: self.status(fan).expect("a joined fan is known"),
        }
    }

    /// A fan comes back with a verified queue token: it gets the token's
    /// position back (or keeps a better one it already has).
    pub fn resume(
        &mut self,
        token: &VerifiedQueueToken,
        now: Millis,
    ) -> Result<Joined, JoinRefused> {
        self.advance(now);
        let result = self.resume_inner(token);
        self.finish();
        result
    }

    fn resume_inner(&mut self, token: &VerifiedQueueToken) -> Result<Joined, JoinRefused> {
        let claims = token.claims();
        if claims.event != self.event {
            return Err(JoinRefused::InvalidToken);
        }
        if claims.position.0 == 0 {
            // A pre-queue token (only events with a draw sign them): the
            // pre-queue and the draw are durable, so the fan is known
            // wherever it stands (or never was).
            if !self.config.pre_queue_draw {
                return Err(JoinRefused::InvalidToken);
            }
            return match self.room.fan(claims.fan) {
                Some(entry) => Ok(self.joined(claims.fan, entry.position, false)),
                None => Err(JoinRefused::InvalidToken),
            };
        }
        if claims.position >= self.room.next_position() {
            return Err(JoinRefused::InvalidToken);
        }
        let known = self.room.fan(claims.fan);
        let back_in_line =
            known.is_none_or(|e| matches!(e.state, FanState::Waiting | FanState::Left));
        if back_in_line {
            match self.sale {
                SaleState::Closed => return Err(JoinRefused::Closed),
                SaleState::SoldOut => return Err(JoinRefused::SoldOut),
                _ => {}
            }
            if known.is_none() && claims.position < self.restored_floor {
                self.unresumed = self.unresumed.saturating_sub(1);
            }
            self.room.resume(claims.fan, claims.position);
            self.admit();
        }
        let entry = self.room.fan(claims.fan).expect("resumed fan is known");
        Ok(self.joined(claims.fan, entry.position, known.is_none()))
    }

    /// A waiting fan gives up its place; an admitted one its turn.
    pub fn leave(&mut self, fan: FanId, now: Millis) -> Option<FanStatus> {
        self.advance(now);
        if let Some(entry) = self.room.fan(fan) {
            match entry.state {
                FanState::Waiting => self.room.set(fan, entry.position, FanState::Left),
                // Its turn is over, as if it had lapsed (which is also how
                // the journal replays it): it cannot queue again, or
                // leave-and-resume would buy a fresh turn ahead of the line.
                FanState::Admitted if !self.fan_holds.contains_key(&fan) => {
                    self.record(JournalEntry::AdmissionLapsed { fan });
                }
                _ => {}
            }
        }
        self.admit();
        self.finish();
        self.status(fan)
    }

    /// An admitted fan showed up (opened the seat map, say).
    pub fn enter(&mut self, fan: FanId, now: Millis) -> Option<FanStatus> {
        self.advance(now);
        if self.shoppers.get(&fan).is_some_and(|s| !s.entered) {
            self.record(JournalEntry::Entered { fan });
        }
        self.finish();
        self.status(fan)
    }

    /// Admit waiting fans in position order while every fan shopping can
    /// still get a ticket and the shopper cap allows.
    fn admit(&mut self) {
        if self.sale != SaleState::OnSale {
            return;
        }
        // Fans admitted together are journalled together, a bounded entry
        // at a time. Each is applied as it is taken (the next one taken
        // depends on it), through the same `apply_admitted` the entry's
        // replay runs.
        let at = self.clock;
        let mut burst = Vec::new();
        loop {
            let shopping = self.shopping();
            if shopping >= self.config.shoppers_max || shopping >= self.seats.available() {
                break;
            }
            let Some((position, fan)) = self.room.peek_next() else {
                break;
            };
            self.room.take_next((position, fan));
            if let Err(e) = self.apply_admitted(fan, position, at) {
                panic!("admitting {fan} at {position} failed: {e}");
            }
            burst.push((fan, position));
            if burst.len() == limits::ADMISSIONS_PER_ENTRY_MAX {
                self.journal_admissions(std::mem::take(&mut burst));
            }
        }
        if !burst.is_empty() {
            self.journal_admissions(burst);
        }
    }

    /// Journal fans already admitted (applied one by one), then tell
    /// gateways about those below the frontier they know.
    fn journal_admissions(&mut self, fans: Vec<(FanId, Position)>) {
        let at = self.clock;
        let below: Vec<(FanId, Position)> = fans
            .iter()
            .filter(|(_, position)| *position <= self.pushed_through)
            .copied()
            .collect();
        self.journal(JournalEntry::AdmittedMany { at, fans });
        for (fan, position) in below {
            // Below the frontier gateways know: tell them about this fan.
            self.push_effect(Effect::Push(Push::FanAdmitted {
                fan,
                position,
                decided_at: at,
            }));
        }
    }

    // ----- the counter -----------------------------------------------------

    fn request_block(&mut self) {
        if let Some(ceiling) = self.room.block_due() {
            self.push_effect(Effect::ReserveCounter { ceiling });
        }
    }

    /// The store could not reserve the block last asked for: ask again.
    pub fn counter_reservation_failed(&mut self) {
        self.room.block_failed();
        self.request_block();
    }

    /// The store made positions below `ceiling` durable.
    pub fn counter_durable(&mut self, ceiling: Position) {
        self.room.block_durable(ceiling);
        self.request_block();
    }

    // ----- holds -----------------------------------------------------------

    /// Hold seats for an admitted fan: all or nothing.
    pub fn hold(
        &mut self,
        fan: FanId,
        request: &HoldRequest,
        now: Millis,
    ) -> Result<HoldPlaced, HoldRejected> {
        self.advance(now);
        let result = self.hold_inner(fan, request);
        self.admit();
        self.finish();
        result
    }

    fn hold_inner(
        &mut self,
        fan: FanId,
        request: &HoldRequest,
    ) -> Result<HoldPlaced, HoldRejected> {
        self.may_hold(fan)?;
        if self.shoppers.get(&fan).is_some_and(|s| !s.entered) {
            self.record(JournalEntry::Entered { fan });
        }
        let seats = self.choose_seats(request)?;
        let hold = self.next_hold;
        let deadline = self.clock.saturating_add_ms(self.config.checkout_window_ms);
        self.record(JournalEntry::HoldPlaced {
            hold,
            fan,
            seats: seats.clone(),
            deadline,
        });
        self.push_seat_changes(&seats, false);
        self.arm_checkout(hold);
        let total_cents = seats.iter().map(|s| self.venue().price_cents(*s)).sum();
        Ok(HoldPlaced {
            hold,
            seats,
            deadline,
            total_cents,
        })
    }

    fn may_hold(&self, fan: FanId) -> Result<(), HoldRejected> {
        match self.sale {
            SaleState::SoldOut => return Err(HoldRejected::SoldOut),
            SaleState::OnSale => {}
            _ => return Err(HoldRejected::SaleNotOpen),
        }
        let Some(entry) = self.room.fan(fan) else {
            return Err(HoldRejected::NotInLine);
        };
        match entry.state {
            FanState::Admitted => {}
            FanState::PreQueued | FanState::Waiting | FanState::Left => {
                return Err(HoldRejected::NotAdmitted);
            }
            FanState::Expired => return Err(HoldRejected::AdmissionExpired),
            FanState::Purchased { .. } => return Err(HoldRejected::TicketLimit { max: 0 }),
        }
        if let Some(hold) = self.fan_holds.get(&fan) {
            return Err(HoldRejected::AlreadyHolding { hold: *hold });
        }
        Ok(())
    }

    fn choose_seats(&self, request: &HoldRequest) -> Result<Vec<SeatIdx>, HoldRejected> {
        let count = match request {
            HoldRequest::Seats { seats } => seats.len(),
            HoldRequest::Best { count, .. } => usize::from(*count),
        };
        if count == 0 || count > limits::HOLD_SEATS_MAX {
            return Err(HoldRejected::BadRequest);
        }
        let limit = self.config.tickets_per_fan_max;
        if count > usize::from(limit) {
            return Err(HoldRejected::TicketLimit { max: limit });
        }
        // Every other fan shopping keeps a claim on one ticket.
        let fair = 1 + self.seats.available() - self.shopping();
        if count as u32 > fair {
            return Err(HoldRejected::FairShare { max: fair });
        }
        match request {
            HoldRequest::Seats { seats } => self.check_seat_list(seats),
            HoldRequest::Best { count, area } => self.check_area(*area).and_then(|()| {
                self.seats
                    .best_block(u32::from(*count), *area)
                    .ok_or(HoldRejected::NotEnoughSeats)
            }),
        }
    }

    fn check_seat_list(&self, seats: &[SeatIdx]) -> Result<Vec<SeatIdx>, HoldRejected> {
        if let Some(seat) = seats.iter().find(|s| self.venue().seat(**s).is_none()) {
            return Err(HoldRejected::UnknownSeat { seat: *seat });
        }
        let mut sorted = seats.to_vec();
        sorted.sort_unstable();
        if sorted.windows(2).any(|w| w[0] == w[1]) {
            return Err(HoldRejected::BadRequest);
        }
        let taken = self.seats.taken(&sorted);
        if taken.is_empty() {
            return Ok(sorted);
        }
        Err(HoldRejected::SeatsUnavailable {
            taken,
            alternative: self.seats.nearest_block(sorted.len() as u32, sorted[0]),
        })
    }

    fn check_area(&self, area: Area) -> Result<(), HoldRejected> {
        let venue = self.venue();
        let known = match area {
            Area::Section { section } => venue.section(section).is_some(),
            Area::PriceLevel { price_level } => {
                venue.price_levels.len() > usize::from(price_level.0)
            }
            Area::Anywhere => true,
        };
        if known {
            Ok(())
        } else {
            Err(HoldRejected::UnknownArea)
        }
    }

    /// The fan lets its (unpaid) hold go.
    pub fn release(&mut self, fan: FanId, hold: HoldId, now: Millis) -> Result<(), PaymentRefused> {
        self.advance(now);
        let result = match self.holds.get(&hold) {
            Some(h) if h.fan == fan && h.checkout.payment().is_some() => {
                Err(PaymentRefused::Pending)
            }
            Some(h) if h.fan == fan => {
                self.end_hold(hold, ReleaseReason::ByFan);
                Ok(())
            }
            _ => Err(PaymentRefused::HoldNotFound),
        };
        self.admit();
        self.finish();
        result
    }

    fn end_hold(&mut self, hold: HoldId, reason: ReleaseReason) {
        let fan = self.holds[&hold].fan;
        let seats = self.holds[&hold].seats.clone();
        if reason == ReleaseReason::Voided {
            // Tell the fan why, not only that the hold is gone.
            self.push_effect(Effect::Push(Push::PaymentDeclined {
                fan,
                hold,
                retry_until: None,
                reason: DeclineReason::NoAnswer,
            }));
        }
        self.record(JournalEntry::HoldReleased { hold, reason });
        self.push_effect(Effect::EndCheckout { hold });
        self.push_seat_changes(&seats, true);
        if reason != ReleaseReason::ByFan {
            self.push_effect(Effect::Push(Push::HoldExpired { fan, hold }));
        }
        // The fan may hold again while its shopping window lasts.
        let turn_over = self.shoppers.get(&fan).is_some_and(|s| {
            self.clock
                >= s.admitted_at
                    .saturating_add_ms(self.config.shopping_window_ms)
        });
        if turn_over || matches!(self.sale, SaleState::Closed | SaleState::SoldOut) {
            self.lapse(fan);
        }
    }

    fn lapse(&mut self, fan: FanId) {
        if self.shoppers.contains_key(&fan) {
            self.record(JournalEntry::AdmissionLapsed { fan });
            self.push_effect(Effect::Push(Push::AdmissionExpired { fan }));
        }
    }

    // ----- payments --------------------------------------------------------

    /// The fan pays for its hold. Refused once the checkout deadline passed.
    pub fn submit_payment(
        &mut self,
        fan: FanId,
        hold: HoldId,
        now: Millis,
    ) -> Result<PaymentStarted, PaymentRefused> {
        let now = now.max(self.clock);
        // Judge lateness at `now` before timers run, so a late payment is
        // told "late" rather than "no such hold".
        let verdict = match self.holds.get(&hold) {
            Some(h) if h.fan == fan => h.checkout.can_submit(now),
            _ => Err(PaymentRefused::HoldNotFound),
        };
        self.advance(now);
        if verdict == Err(PaymentRefused::Late) {
            // Its session's alarm may not have rung yet: end it now.
            self.checkout_due(hold);
        }
        let result = verdict.map(|()| self.start_payment(hold));
        self.admit();
        self.finish();
        result
    }

    fn start_payment(&mut self, hold: HoldId) -> PaymentStarted {
        let payment = self.next_payment;
        let at = self.clock;
        self.record(JournalEntry::PaymentSubmitted { hold, payment, at });
        let h = &self.holds[&hold];
        let amount_cents = h.seats.iter().map(|s| self.venue().price_cents(*s)).sum();
        let fan = h.fan;
        self.push_effect(Effect::RequestPayment {
            payment,
            hold,
            fan,
            amount_cents,
        });
        self.arm_checkout(hold);
        PaymentStarted {
            payment,
            hold,
            amount_cents,
        }
    }

    /// The payment provider answered. Idempotent: a repeated answer gets
    /// the same result and changes nothing.
    pub fn provider_answer(
        &mut self,
        payment: PaymentId,
        answer: ProviderAnswer,
        now: Millis,
    ) -> PaymentSettled {
        self.advance(now);
        let settled = self.settle(payment, answer);
        self.admit();
        self.finish();
        settled
    }

    fn settle(&mut self, payment: PaymentId, answer: ProviderAnswer) -> PaymentSettled {
        let Some(&hold) = self.payments.get(&payment) else {
            return self.settle_unknown(payment, answer);
        };
        match answer {
            ProviderAnswer::Confirmed => {
                let order = self.next_order;
                let at = self.clock;
                self.record(JournalEntry::Sold { hold, order, at });
                self.push_effect(Effect::EndCheckout { hold });
                let sold = self.orders.last().expect("just sold").clone();
                self.push_effect(Effect::Push(Push::Purchased {
                    fan: sold.fan,
                    order,
                    seats: sold.seats,
                }));
                if self.sale == SaleState::SoldOut {
                    self.on_sold_out();
                }
                PaymentSettled::Sold { order }
            }
            ProviderAnswer::Declined => {
                self.record(JournalEntry::PaymentDeclined { hold, payment });
                let fan = self.holds[&hold].fan;
                let deadline = self.holds[&hold].checkout.deadline;
                // A closed sale spared this checkout only while it was paying.
                if self.clock < deadline && self.sale != SaleState::Closed {
                    self.push_effect(Effect::Push(Push::PaymentDeclined {
                        fan,
                        hold,
                        retry_until: Some(deadline),
                        reason: DeclineReason::Declined,
                    }));
                    self.arm_checkout(hold);
                    return PaymentSettled::Declined {
                        hold,
                        retry_until: Some(deadline),
                    };
                }
                self.push_effect(Effect::Push(Push::PaymentDeclined {
                    fan,
                    hold,
                    retry_until: None,
                    reason: DeclineReason::Declined,
                }));
                self.end_hold(hold, ReleaseReason::Declined);
                PaymentSettled::Declined {
                    hold,
                    retry_until: None,
                }
            }
        }
    }

    fn settle_unknown(&mut self, payment: PaymentId, answer: ProviderAnswer) -> PaymentSettled {
        if let Some(order) = self.paid.get(&payment) {
            return match answer {
                ProviderAnswer::Confirmed => PaymentSettled::Sold { order: *order },
                ProviderAnswer::Declined => PaymentSettled::Ignored,
            };
        }
        if self.dead_set.contains(&payment) {
            return match answer {
                ProviderAnswer::Confirmed => {
                    // Journalled first, so a confirmation delivered again
                    // (before or after a restart) is never refunded twice.
                    self.record(JournalEntry::Refunded { payment });
                    self.push_effect(Effect::Refund { payment });
                    PaymentSettled::Refund { payment }
                }
                ProviderAnswer::Declined => PaymentSettled::Ignored,
            };
        }
        if payment < self.next_payment {
            // Settled long ago, or refunded already.
            return PaymentSettled::Ignored;
        }
        PaymentSettled::Unknown
    }

    fn on_sold_out(&mut self) {
        self.push_effect(Effect::Push(Push::SoldOut));
        self.room.clear_waiting();
        self.unresumed = 0;
        let mut idle: Vec<FanId> = self
            .shoppers
            .keys()
            .filter(|f| !self.fan_holds.contains_key(f))
            .copied()
            .collect();
        idle.sort_unstable();
        for fan in idle {
            self.lapse(fan);
        }
    }

    // ----- the sale --------------------------------------------------------

    /// An operator opens, pauses or closes the sale. Returns the new state,
    /// or the current one if the command does not apply to it.
    pub fn sale_command(
        &mut self,
        command: SaleCommand,
        now: Millis,
    ) -> Result<SaleState, SaleState> {
        self.advance(now);
        let next = match (command, self.sale) {
            (_, SaleState::Closed | SaleState::SoldOut) => Err(self.sale),
            (SaleCommand::Open, SaleState::Scheduled | SaleState::Paused) => Ok(SaleState::OnSale),
            (SaleCommand::Pause, SaleState::OnSale) => Ok(SaleState::Paused),
            (SaleCommand::Close, _) => Ok(SaleState::Closed),
            _ => Err(self.sale),
        };
        if next == Ok(SaleState::OnSale) && self.sale == SaleState::Scheduled {
            self.draw_pre_queue();
        }
        if let Ok(state) = next {
            self.record(JournalEntry::Sale { state });
            self.push_effect(Effect::Push(Push::Sale { state }));
            if state == SaleState::Closed {
                self.on_closed();
            }
        }
        self.admit();
        self.finish();
        next
    }

    /// Whether a fan joining now goes to the pre-queue.
    fn pre_queue_open(&self) -> bool {
        self.config.pre_queue_draw && self.sale == SaleState::Scheduled && self.draw.is_none()
    }

    /// The opening's draw: every pre-queued fan gets a position, in random
    /// order, from the next position on. Journalled as one entry (seed,
    /// base, count) before anyone is told; gateways hear the positions in
    /// bounded pushes, best positions first, ahead of the admissions.
    fn draw_pre_queue(&mut self) {
        if !self.config.pre_queue_draw || self.draw.is_some() || self.pre_queue.is_empty() {
            return;
        }
        // Mixed with the clock so that a shell that gave no entropy still
        // does not draw the same order for every event.
        let seed = self.entropy ^ self.clock.0.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let base = self.room.next_position();
        let count = self.pre_queue.len() as u64;
        let drawn = match self.apply_drawn(seed, base, count) {
            Ok(drawn) => drawn,
            Err(e) => panic!("drawing {count} pre-queued fans failed: {e}"),
        };
        self.journal(JournalEntry::Drawn { seed, base, count });
        for chunk in drawn.chunks(limits::DRAWN_PER_PUSH_MAX) {
            self.push_effect(Effect::Push(Push::Drawn {
                fans: chunk.to_vec(),
            }));
        }
        self.request_block();
    }

    /// Give the pre-queue its drawn positions (live and on replay).
    fn apply_drawn(
        &mut self,
        seed: u64,
        base: Position,
        count: u64,
    ) -> Result<Vec<(FanId, Position)>, RestoreError> {
        if self.draw.is_some() {
            return corrupt("a second draw");
        }
        if count != self.pre_queue.len() as u64 {
            return corrupt(format!(
                "a draw of {count} fans over a pre-queue of {}",
                self.pre_queue.len()
            ));
        }
        if base.0 == 0 || base <= self.admitted_through || base.0.checked_add(count).is_none() {
            return corrupt(format!("a draw from impossible {base}"));
        }
        self.draw = Some(DrawRecord { seed, base });
        let drawn: Vec<(FanId, Position)> = draw_order(seed, &self.pre_queue)
            .into_iter()
            .enumerate()
            .map(|(i, fan)| (fan, Position(base.0 + i as u64)))
            .collect();
        for (fan, position) in &drawn {
            let waiting = *position > self.admitted_through;
            self.room.place_drawn(*fan, *position, waiting);
        }
        Ok(drawn)
    }

    /// Arm the scheduled opening, if the sale opens by itself.
    fn arm_opening(&mut self) {
        if self.sale == SaleState::Scheduled
            && let Some(at) = self.config.opens_at
        {
            self.timers.push(Reverse((at, Timer::Open)));
        }
    }

    fn on_closed(&mut self) {
        self.room.clear_waiting();
        self.unresumed = 0;
        let open: Vec<HoldId> = self
            .holds
            .iter()
            .filter(|(_, h)| h.checkout.payment().is_none())
            .map(|(id, _)| *id)
            .collect();
        for hold in open {
            self.end_hold(hold, ReleaseReason::Closed);
        }
        let mut idle: Vec<FanId> = self
            .shoppers
            .keys()
            .filter(|f| !self.fan_holds.contains_key(f))
            .copied()
            .collect();
        idle.sort_unstable();
        for fan in idle {
            self.lapse(fan);
        }
    }

    // ----- time ------------------------------------------------------------

    /// Run every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Millis) {
        self.advance(now);
        self.admit();
        self.finish();
    }

    /// A checkout session's alarm rang: do what is due for `hold` (warn
    /// the fan, ask the provider about a silent payment, or end the
    /// checkout) and re-arm. A stale or early alarm changes nothing but
    /// re-arming.
    pub fn checkout_alarm(&mut self, hold: HoldId, now: Millis) {
        self.advance(now);
        self.checkout_due(hold);
        self.admit();
        self.finish();
    }

    fn advance(&mut self, now: Millis) {
        self.clock = self.clock.max(now);
        while let Some(Reverse((at, timer))) = self.timers.peek().copied() {
            if at > self.clock {
                break;
            }
            self.timers.pop();
            match timer {
                Timer::Turn(fan) => self.turn_timer(fan),
                Timer::Open => self.scheduled_opening(),
            }
        }
    }

    /// The scheduled opening came: open, unless an operator already did
    /// (or closed the sale).
    fn scheduled_opening(&mut self) {
        if self.sale != SaleState::Scheduled {
            return;
        }
        self.draw_pre_queue();
        let state = SaleState::OnSale;
        self.record(JournalEntry::Sale { state });
        self.push_effect(Effect::Push(Push::Sale { state }));
    }

    fn turn_timer(&mut self, fan: FanId) {
        let Some(shopper) = self.shoppers.get(&fan).copied() else {
            return; // stale: the turn already ended
        };
        let due = self.turn_due(&shopper);
        if self.clock < due {
            self.timers.push(Reverse((due, Timer::Turn(fan))));
            return;
        }
        if !self.fan_holds.contains_key(&fan) {
            self.lapse(fan);
        }
    }

    /// When `shopper`'s turn ends unless it shows up or holds.
    fn turn_due(&self, shopper: &Shopper) -> Millis {
        let window = if shopper.entered {
            self.config.shopping_window_ms
        } else {
            self.config.show_up_window_ms
        };
        shopper.admitted_at.saturating_add_ms(window)
    }

    fn checkout_due(&mut self, hold: HoldId) {
        let (clock, rules) = (self.clock, self.rules);
        while let Some(h) = self.holds.get_mut(&hold) {
            let fan = h.fan;
            let deadline = h.checkout.deadline;
            match h.checkout.due(clock, &rules) {
                None => {
                    self.arm_checkout(hold);
                    return;
                }
                Some(CheckoutDue::Warn) => {
                    self.push_effect(Effect::Push(Push::HoldExpiring {
                        fan,
                        hold,
                        deadline,
                    }));
                }
                Some(CheckoutDue::QueryPayment(payment)) => {
                    self.push_effect(Effect::QueryPayment { payment, hold });
                }
                Some(CheckoutDue::End(reason)) => {
                    self.end_hold(hold, reason);
                    return;
                }
            }
        }
    }

    /// Tell the shell when `hold`'s checkout next needs attention.
    fn arm_checkout(&mut self, hold: HoldId) {
        if let Some(h) = self.holds.get(&hold) {
            let at = h.checkout.next_alarm(&self.rules);
            self.push_effect(Effect::ArmCheckout { hold, at });
        }
    }

    // ----- effects ---------------------------------------------------------

    fn push_effect(&mut self, effect: Effect) {
        assert!(
            self.effects.len() < limits::EFFECTS_MAX,
            "the shell stopped draining effects"
        );
        self.effects.push(effect);
    }

    fn push_seat_changes(&mut self, seats: &[SeatIdx], available: bool) {
        let venue = Arc::clone(self.venue());
        let mut start = 0;
        while start < seats.len() {
            let section = venue.section_of(seats[start]);
            let end = start
                + seats[start..]
                    .iter()
                    .take_while(|s| venue.section_of(**s) == section)
                    .count();
            self.push_effect(Effect::Push(Push::SeatsChanged {
                section,
                seats: seats[start..end].to_vec(),
                available,
            }));
            start = end;
        }
    }

    /// After every input: tell gateways what changed for everyone.
    fn finish(&mut self) {
        if self.admitted_through > self.pushed_through {
            self.pushed_through = self.admitted_through;
            let position = self.admitted_through;
            self.push_effect(Effect::Push(Push::AdmittedThrough {
                position,
                decided_at: self.clock,
            }));
        }
        let full = self.is_full() && self.sale != SaleState::SoldOut;
        if full != self.pushed_full {
            self.pushed_full = full;
            self.push_effect(Effect::Push(Push::Full { full }));
        }
        let bits = self.stamp_required();
        if bits != self.pushed_stamp {
            self.pushed_stamp = bits;
            self.push_effect(Effect::Push(Push::Stamp { bits }));
        }
    }

    // ----- the journal -----------------------------------------------------

    /// Apply a durable change live: it is checked already, so failure here
    /// is a bug and stops the core.
    fn record(&mut self, entry: JournalEntry) {
        if let Err(e) = self.apply(&entry) {
            panic!("live journal entry {entry:?} failed to apply: {e}");
        }
        self.journal(entry);
    }

    /// Journal an entry whose change is applied already.
    fn journal(&mut self, entry: JournalEntry) {
        let at = self.clock;
        self.journal_seq += 1;
        self.push_effect(Effect::Journal(JournalRecord {
            schema_version: SCHEMA_VERSION,
            event: self.event,
            seq: self.journal_seq,
            at,
            entry,
        }));
    }

    /// Replay one journal record after a restore.
    pub fn replay(&mut self, record: &JournalRecord) -> Result<(), RestoreError> {
        if record.event != self.event {
            return Err(RestoreError::WrongEvent {
                expected: self.event,
                found: record.event,
            });
        }
        if record.seq != self.journal_seq + 1 {
            return Err(RestoreError::JournalGap {
                last: self.journal_seq,
                found: record.seq,
            });
        }
        self.clock = self.clock.max(record.at);
        self.apply(&record.entry)?;
        self.journal_seq = record.seq;
        Ok(())
    }

    /// The one place durable state changes. Checks everything so that a
    /// corrupt journal is refused, not believed.
    fn apply(&mut self, entry: &JournalEntry) -> Result<(), RestoreError> {
        match entry {
            JournalEntry::Sale { state } => {
                self.sale = *state;
                if *state == SaleState::Closed {
                    self.unresumed = 0;
                }
            }
            JournalEntry::Admitted { fan, position, at } => {
                self.apply_admitted(*fan, *position, *at)?
            }
            JournalEntry::AdmittedMany { at, fans } => {
                if fans.is_empty() || fans.len() > limits::ADMISSIONS_PER_ENTRY_MAX {
                    return corrupt(format!("{} fans admitted in one entry", fans.len()));
                }
                for (fan, position) in fans {
                    self.apply_admitted(*fan, *position, *at)?;
                }
            }
            JournalEntry::Entered { fan } => {
                let Some(shopper) = self.shoppers.get_mut(fan) else {
                    return corrupt(format!("{fan} entered without a turn"));
                };
                shopper.entered = true;
                let due = shopper
                    .admitted_at
                    .saturating_add_ms(self.config.shopping_window_ms);
                self.timers.push(Reverse((due, Timer::Turn(*fan))));
            }
            JournalEntry::AdmissionLapsed { fan } => {
                let Some(shopper) = self.shoppers.remove(fan) else {
                    return corrupt(format!("{fan} lapsed without a turn"));
                };
                if self.fan_holds.contains_key(fan) {
                    return corrupt(format!("{fan} lapsed while holding seats"));
                }
                self.room.set(*fan, shopper.position, FanState::Expired);
            }
            JournalEntry::HoldPlaced {
                hold,
                fan,
                seats,
                deadline,
            } => self.apply_hold(*hold, *fan, seats, *deadline)?,
            JournalEntry::HoldReleased { hold, .. } => self.apply_release(*hold)?,
            JournalEntry::PaymentSubmitted { hold, payment, at } => {
                self.apply_payment(*hold, *payment, *at)?;
            }
            JournalEntry::PaymentDeclined { hold, payment } => {
                let Some(h) = self.holds.get_mut(hold) else {
                    return corrupt(format!("decline for unknown {hold}"));
                };
                if h.checkout.payment() != Some(*payment) {
                    return corrupt(format!("decline of {payment} not pending on {hold}"));
                }
                h.checkout.declined();
                self.payments.remove(payment);
                self.bury(*payment);
            }
            JournalEntry::Sold { hold, order, at } => self.apply_sold(*hold, *order, *at)?,
            JournalEntry::PreQueued { fan } => {
                if !self.pre_queue_open() {
                    return corrupt(format!("{fan} pre-queued outside a pre-queue"));
                }
                if self.room.fan(*fan).is_some() {
                    return corrupt(format!("{fan} pre-queued twice"));
                }
                if self.pre_queue.len() >= limits::PRE_QUEUE_MAX {
                    return corrupt("the pre-queue is over its limit");
                }
                self.room.pre_queue(*fan);
                self.pre_queue.push(*fan);
            }
            JournalEntry::Drawn { seed, base, count } => {
                self.apply_drawn(*seed, *base, *count)?;
            }
            JournalEntry::StampDifficulty { bits } => {
                if *bits > limits::STAMP_BITS_MAX {
                    return corrupt(format!("a proof of work of {bits} bits"));
                }
                self.stamp_bits = *bits;
            }
            JournalEntry::PresaleJoined { fan } => {
                if self.config.presale_until.is_none() {
                    return corrupt(format!("{fan} used a code for an event without a presale"));
                }
                if !self.presale_joined.insert(*fan) {
                    return corrupt(format!("{fan} used its presale code twice"));
                }
            }
            JournalEntry::Refunded { payment } => {
                if !self.dead_set.remove(payment) {
                    return corrupt(format!("refund of {payment}, which was not voided"));
                }
                self.dead.retain(|p| p != payment);
            }
        }
        Ok(())
    }

    fn apply_admitted(
        &mut self,
        fan: FanId,
        position: Position,
        at: Millis,
    ) -> Result<(), RestoreError> {
        if self.shoppers.contains_key(&fan) {
            return corrupt(format!("{fan} admitted twice"));
        }
        self.shoppers.insert(
            fan,
            Shopper {
                position,
                admitted_at: at,
                entered: false,
            },
        );
        if self.room.fan(fan).is_none() && position < self.restored_floor {
            // Replayed after a restore: one of the fans counted as waiting
            // in the snapshot has been admitted meanwhile.
            self.unresumed = self.unresumed.saturating_sub(1);
        }
        self.room.set(fan, position, FanState::Admitted);
        self.admitted_through = self.admitted_through.max(position);
        if self.admitted_through >= self.restored_floor {
            self.unresumed = 0;
        }
        let due = at.saturating_add_ms(self.config.show_up_window_ms);
        self.timers.push(Reverse((due, Timer::Turn(fan))));
        Ok(())
    }

    fn apply_hold(
        &mut self,
        hold: HoldId,
        fan: FanId,
        seats: &[SeatIdx],
        deadline: Millis,
    ) -> Result<(), RestoreError> {
        if !self.shoppers.contains_key(&fan) || self.fan_holds.contains_key(&fan) {
            return corrupt(format!("{hold} for {fan}, who may not hold"));
        }
        if self.holds.contains_key(&hold) || hold < self.next_hold {
            return corrupt(format!("{hold} reused"));
        }
        if seats.is_empty() || !self.seats.taken(seats).is_empty() {
            return corrupt(format!("{hold} takes seats that are not available"));
        }
        let mut sorted = seats.to_vec();
        sorted.sort_unstable();
        if sorted.windows(2).any(|w| w[0] == w[1]) {
            return corrupt(format!("{hold} names a seat twice"));
        }
        self.seats.hold(seats, hold);
        self.holds.insert(
            hold,
            Hold {
                fan,
                seats: seats.to_vec(),
                checkout: CheckoutCore::new(deadline),
            },
        );
        self.fan_holds.insert(fan, hold);
        self.next_hold = HoldId(hold.0 + 1);
        Ok(())
    }

    fn apply_release(&mut self, hold: HoldId) -> Result<(), RestoreError> {
        let Some(h) = self.holds.remove(&hold) else {
            return corrupt(format!("release of unknown {hold}"));
        };
        self.seats.release(&h.seats, hold);
        self.fan_holds.remove(&h.fan);
        if let Some(payment) = h.checkout.payment() {
            self.payments.remove(&payment);
            self.bury(payment);
        }
        Ok(())
    }

    fn apply_payment(
        &mut self,
        hold: HoldId,
        payment: PaymentId,
        at: Millis,
    ) -> Result<(), RestoreError> {
        if payment < self.next_payment {
            return corrupt(format!("{payment} reused"));
        }
        let Some(h) = self.holds.get_mut(&hold) else {
            return corrupt(format!("payment for unknown {hold}"));
        };
        if h.checkout.payment().is_some() || at >= h.checkout.deadline {
            return corrupt(format!("{payment} submitted when {hold} could not take it"));
        }
        h.checkout.submitted(payment, at, &self.rules);
        self.payments.insert(payment, hold);
        self.next_payment = PaymentId(payment.0 + 1);
        Ok(())
    }

    fn apply_sold(&mut self, hold: HoldId, order: OrderId, at: Millis) -> Result<(), RestoreError> {
        if order < self.next_order {
            return corrupt(format!("{order} reused"));
        }
        let Some(h) = self.holds.get(&hold) else {
            return corrupt(format!("sale of unknown {hold}"));
        };
        let Some(payment) = h.checkout.payment() else {
            return corrupt(format!("sale of {hold} without a payment"));
        };
        let h = self.holds.remove(&hold).expect("checked above");
        self.seats.sell(&h.seats, hold, order);
        self.fan_holds.remove(&h.fan);
        self.payments.remove(&payment);
        let position = self
            .shoppers
            .remove(&h.fan)
            .map_or(Position(0), |s| s.position);
        let Ok(id) = u32::try_from(order.0) else {
            return corrupt(format!("{order} is beyond any venue's orders"));
        };
        self.room
            .set(h.fan, position, FanState::Purchased { order: id });
        self.paid.insert(payment, order);
        self.next_order = OrderId(order.0 + 1);
        self.orders.push(OrderRecord {
            order,
            fan: h.fan,
            position,
            payment,
            seats: h.seats,
            at,
        });
        if self.seats.sold() == self.seats.capacity() {
            self.unresumed = 0;
            self.sale = match self.sale {
                SaleState::Closed => SaleState::Closed,
                _ => SaleState::SoldOut,
            };
        }
        Ok(())
    }

    fn bury(&mut self, payment: PaymentId) {
        if self.dead_set.insert(payment) {
            self.dead.push_back(payment);
        }
        while self.dead.len() > limits::VOIDED_PAYMENTS_MAX {
            let oldest = self.dead.pop_front().expect("non-empty");
            self.dead_set.remove(&oldest);
        }
    }
}
