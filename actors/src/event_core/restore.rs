//! Snapshots of an `EventCore`, restoring one, and the invariant check.

use std::sync::Arc;

use onsale_schema::snapshot::{
    CheckoutRecord, EventSnapshot, HoldRecord, JournalEntry, SCHEMA_VERSION,
    SCHEMA_VERSION_READ_MIN, ShopperRecord,
};
use onsale_schema::venue::Venue;
use onsale_schema::{FanId, Position, SaleState, limits};

use super::{EventCore, RestoreError, corrupt};
use crate::seat_map::SeatState;
use crate::waiting_room::FanState;

impl EventCore {
    /// The durable state, as of journal record `journal_seq`.
    #[must_use]
    pub fn snapshot(&self) -> EventSnapshot {
        let mut shoppers: Vec<ShopperRecord> = self
            .shoppers
            .iter()
            .map(|(fan, s)| ShopperRecord {
                fan: *fan,
                position: s.position,
                admitted_at: s.admitted_at,
                entered: s.entered,
            })
            .collect();
        shoppers.sort_unstable_by_key(|s| s.fan);
        EventSnapshot {
            schema_version: SCHEMA_VERSION,
            event: self.event,
            venue_digest: self.venue_digest,
            config: self.config.clone(),
            sale: self.sale,
            journal_seq: self.journal_seq,
            clock: self.clock,
            counter_ceiling: self.room.ceiling(),
            admitted_through: self.admitted_through,
            waiting: self.waiting(),
            next_hold: self.next_hold,
            next_payment: self.next_payment,
            next_order: self.next_order,
            shoppers,
            holds: self
                .holds
                .iter()
                .map(|(id, h)| HoldRecord {
                    hold: *id,
                    fan: h.fan,
                    seats: h.seats.clone(),
                    deadline: h.checkout.deadline,
                    checkout: h.checkout.state,
                })
                .collect(),
            orders: self.orders.clone(),
            voided: self.dead.iter().copied().collect(),
            pre_queue: {
                let mut fans = self.pre_queue.clone();
                fans.sort_unstable();
                fans
            },
            draw: self.draw,
            stamp_bits: self.stamp_bits,
            presale_joined: {
                let mut fans: Vec<FanId> = self.presale_joined.iter().copied().collect();
                fans.sort_unstable();
                fans
            },
        }
    }

    /// Rebuild an event from its snapshot. `store_ceiling` is the counter
    /// ceiling the store holds, which may be above the snapshot's: the
    /// counter restarts above both. Replay the journal after the snapshot
    /// with [`EventCore::replay`]. Every field is checked against the
    /// venue and the others; a corrupt snapshot is refused, not believed.
    pub fn restore(
        venue: Arc<Venue>,
        snapshot: &EventSnapshot,
        store_ceiling: Position,
    ) -> Result<EventCore, RestoreError> {
        if !(SCHEMA_VERSION_READ_MIN..=SCHEMA_VERSION).contains(&snapshot.schema_version) {
            return Err(RestoreError::Version(snapshot.schema_version));
        }
        let digest = venue.digest();
        if snapshot.venue_digest != digest {
            return Err(RestoreError::WrongVenue);
        }
        snapshot.config.check()?;
        let ceiling = snapshot.counter_ceiling.max(store_ceiling).max(Position(1));
        let mut core = EventCore::empty(
            snapshot.event,
            (venue, digest),
            snapshot.config.clone(),
            snapshot.clock,
            ceiling,
        );
        core.sale = snapshot.sale;
        core.restored_floor = ceiling;
        core.restore_orders(snapshot)?;
        core.restore_shoppers(snapshot, ceiling)?;
        core.restore_holds(&snapshot.holds)?;
        core.restore_pre_queue(snapshot)?;
        if !snapshot.presale_joined.is_sorted_by(|a, b| a < b) {
            return corrupt("presale fans are not sorted");
        }
        for fan in &snapshot.presale_joined {
            core.apply(&JournalEntry::PresaleJoined { fan: *fan })?;
        }
        core.apply(&JournalEntry::StampDifficulty {
            bits: snapshot.stamp_bits,
        })?;
        // Set after the shoppers, whose admission is not a waiting fan's,
        // and the pre-queue, whose fans are back already.
        core.unresumed = snapshot.waiting.saturating_sub(core.waiting());
        for payment in &snapshot.voided {
            core.bury(*payment);
        }
        core.adopt_counters(snapshot)?;
        core.journal_seq = snapshot.journal_seq;
        core.check_invariants().or_else(corrupt)?;
        core.request_block();
        core.arm_opening();
        Ok(core)
    }

    /// The pre-queue, and the draw's positions if it was made: every drawn
    /// fan not a buyer or shopper waits again at its position, or has had
    /// its turn if the line moved past it.
    fn restore_pre_queue(&mut self, snapshot: &EventSnapshot) -> Result<(), RestoreError> {
        if snapshot.pre_queue.len() > limits::PRE_QUEUE_MAX {
            return corrupt("the pre-queue is over its limit");
        }
        if !snapshot.pre_queue.is_sorted_by(|a, b| a < b) {
            return corrupt("the pre-queue is not sorted by fan");
        }
        if !snapshot.pre_queue.is_empty() && !snapshot.config.pre_queue_draw {
            return corrupt("a pre-queue for an event without a draw");
        }
        if snapshot.draw.is_none()
            && !snapshot.pre_queue.is_empty()
            && !matches!(snapshot.sale, SaleState::Scheduled | SaleState::Closed)
        {
            return corrupt("an open sale with an undrawn pre-queue");
        }
        for fan in &snapshot.pre_queue {
            if snapshot.draw.is_none() && self.room.fan(*fan).is_some() {
                return corrupt(format!("{fan} is pre-queued and elsewhere"));
            }
            self.room.pre_queue(*fan);
            self.pre_queue.push(*fan);
        }
        if let Some(draw) = snapshot.draw {
            let count = self.pre_queue.len() as u64;
            // Positions below the frontier count as had: apply_drawn
            // refuses a base at or below it, as a live draw would.
            let through = std::mem::replace(&mut self.admitted_through, Position(0));
            let drawn = self.apply_drawn(draw.seed, draw.base, count);
            self.admitted_through = through;
            let drawn = drawn?;
            for (fan, position) in drawn {
                if position <= through
                    && self
                        .room
                        .fan(fan)
                        .is_some_and(|e| e.state == FanState::Waiting)
                {
                    self.room.set(fan, position, FanState::Expired);
                }
            }
        } else if snapshot.sale == SaleState::Closed {
            self.room.clear_waiting();
        }
        Ok(())
    }

    fn restore_orders(&mut self, snapshot: &EventSnapshot) -> Result<(), RestoreError> {
        for order in &snapshot.orders {
            if order.order < self.next_order || order.seats.is_empty() {
                return corrupt(format!("{} out of order or empty", order.order));
            }
            if order.seats.len() > limits::HOLD_SEATS_MAX {
                return corrupt(format!("{} has too many seats", order.order));
            }
            if order
                .seats
                .iter()
                .any(|s| self.seats.state(*s) != Some(SeatState::Available))
            {
                return corrupt(format!(
                    "{} sells a seat twice or an unknown seat",
                    order.order
                ));
            }
            if self.paid.insert(order.payment, order.order).is_some() {
                return corrupt(format!("{} paid twice", order.payment));
            }
            let Ok(id) = u32::try_from(order.order.0) else {
                return corrupt(format!("{} is beyond any venue's orders", order.order));
            };
            if self.room.fan(order.fan).is_some() {
                return corrupt(format!("{} bought twice", order.fan));
            }
            self.room
                .set(order.fan, order.position, FanState::Purchased { order: id });
            self.seats.restore_sold(&order.seats, order.order);
            self.next_order = onsale_schema::OrderId(order.order.0 + 1);
            self.orders.push(order.clone());
        }
        Ok(())
    }

    fn restore_shoppers(
        &mut self,
        snapshot: &EventSnapshot,
        ceiling: Position,
    ) -> Result<(), RestoreError> {
        let mut last: Option<FanId> = None;
        for s in &snapshot.shoppers {
            if last.is_some_and(|l| l >= s.fan) {
                return corrupt("shoppers are not sorted by fan");
            }
            last = Some(s.fan);
            if s.position.0 == 0 || s.position >= ceiling || s.position > snapshot.admitted_through
            {
                return corrupt(format!("{} admitted at impossible {}", s.fan, s.position));
            }
            if self.room.fan(s.fan).is_some() {
                return corrupt(format!("{} is both a buyer and a shopper", s.fan));
            }
            self.apply(&JournalEntry::Admitted {
                fan: s.fan,
                position: s.position,
                at: s.admitted_at,
            })?;
            if s.entered {
                self.apply(&JournalEntry::Entered { fan: s.fan })?;
            }
        }
        Ok(())
    }

    fn restore_holds(&mut self, holds: &[HoldRecord]) -> Result<(), RestoreError> {
        for h in holds {
            if h.seats.len() > limits::HOLD_SEATS_MAX {
                return corrupt(format!("{} has too many seats", h.hold));
            }
            let entry = JournalEntry::HoldPlaced {
                hold: h.hold,
                fan: h.fan,
                seats: h.seats.clone(),
                deadline: h.deadline,
            };
            self.apply(&entry)?;
            if let CheckoutRecord::Paying {
                payment,
                submitted_at,
            } = h.checkout
            {
                if self.paid.contains_key(&payment) {
                    return corrupt(format!("{payment} both pending and paid"));
                }
                let entry = JournalEntry::PaymentSubmitted {
                    hold: h.hold,
                    payment,
                    at: submitted_at,
                };
                // Payments need not be in id order across holds.
                self.next_payment = onsale_schema::PaymentId(0);
                self.apply(&entry)?;
            }
        }
        Ok(())
    }

    fn adopt_counters(&mut self, snapshot: &EventSnapshot) -> Result<(), RestoreError> {
        let max_payment = self
            .payments
            .keys()
            .chain(self.paid.keys())
            .chain(snapshot.voided.iter())
            .map(|p| p.0 + 1)
            .max()
            .unwrap_or(1);
        if snapshot.next_hold < self.next_hold
            || snapshot.next_order < self.next_order
            || snapshot.next_payment.0 < max_payment
        {
            return corrupt("next ids are below ids already used");
        }
        if snapshot.admitted_through < self.admitted_through
            || snapshot.admitted_through >= self.room.ceiling()
        {
            return corrupt("admission frontier is outside the positions handed out");
        }
        self.next_hold = snapshot.next_hold;
        self.next_order = snapshot.next_order;
        self.next_payment = snapshot.next_payment;
        self.admitted_through = snapshot.admitted_through;
        self.pushed_through = Position(0);
        Ok(())
    }

    /// Check every invariant of the event's state. For tests, the
    /// simulator and restore; a failure names the broken invariant.
    pub fn check_invariants(&self) -> Result<(), String> {
        self.seats.check()?;
        self.room.check()?;
        if self.shopping() > self.seats.available() {
            return Err(format!(
                "{} fans shopping but only {} tickets available",
                self.shopping(),
                self.seats.available()
            ));
        }
        if self.fan_holds.len() != self.holds.len() {
            return Err("a fan holds more than one hold".into());
        }
        for (id, hold) in &self.holds {
            if self.fan_holds.get(&hold.fan) != Some(id) || !self.shoppers.contains_key(&hold.fan) {
                return Err(format!("{id} belongs to {} whose turn is over", hold.fan));
            }
            if hold
                .seats
                .iter()
                .any(|s| self.seats.state(*s) != Some(SeatState::Held(*id)))
            {
                return Err(format!("{id} names seats not held for it"));
            }
            if let Some(payment) = hold.checkout.payment()
                && self.payments.get(&payment) != Some(id)
            {
                return Err(format!("{payment} of {id} is not tracked"));
            }
        }
        if self.payments.len()
            != self
                .holds
                .values()
                .filter(|h| h.checkout.payment().is_some())
                .count()
        {
            return Err("a tracked payment has no hold".into());
        }
        let mut sold = 0u32;
        for order in &self.orders {
            sold += order.seats.len() as u32;
            if order
                .seats
                .iter()
                .any(|s| self.seats.state(*s) != Some(SeatState::Sold(order.order)))
            {
                return Err(format!("{} names seats not sold to it", order.order));
            }
        }
        if sold != self.seats.sold() {
            return Err(format!(
                "orders hold {sold} seats but {} are sold",
                self.seats.sold()
            ));
        }
        for (fan, shopper) in &self.shoppers {
            let entry = self.room.fan(*fan);
            if entry.is_none_or(|e| e.state != FanState::Admitted || e.position != shopper.position)
            {
                return Err(format!("{fan} shops but the waiting room disagrees"));
            }
            if shopper.position > self.admitted_through {
                return Err(format!("{fan} admitted beyond the frontier"));
            }
        }
        let sold_out = self.seats.sold() == self.seats.capacity();
        if sold_out != (self.sale == SaleState::SoldOut) && self.sale != SaleState::Closed {
            return Err(format!(
                "sale is {:?} with {} of {} sold",
                self.sale,
                self.seats.sold(),
                self.seats.capacity()
            ));
        }
        Ok(())
    }
}
