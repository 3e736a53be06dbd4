//! The referee: what the simulated fans were told, kept independently of
//! the event core, and checked against every new answer.
//!
//! Lean on purpose (a seat table, the waiting positions the simulator
//! knows of, the payments in flight), so it can watch ten million fans.
//! Each check returns `Err(what)` naming the broken invariant; the engine
//! adds the seed and the step.

use std::collections::BTreeMap;

use onsale_schema::message::{PaymentSettled, ProviderAnswer};
use onsale_schema::snapshot::{OrderRecord, ReleaseReason};
use onsale_schema::{HoldId, Millis, OrderId, PaymentId, SeatIdx};
use rustc_hash::FxHashMap;

/// A payment submitted in time, as the fan was told.
#[derive(Clone, Copy, Debug)]
struct Pending {
    hold: HoldId,
    submitted_at: Millis,
    /// Declined, or voided after the provider timeout: the only two ways a
    /// payment submitted in time may end without a sale.
    dead: bool,
}

#[derive(Debug)]
pub struct Ledger {
    /// The order each seat was sold to (0: unsold), as told to buyers.
    seat_order: Vec<u64>,
    sold: u32,
    capacity: u32,
    orders: u64,
    /// Fans the simulator knows wait in this incarnation of the core:
    /// position → fan number.
    waiting: BTreeMap<u64, u32>,
    positions_issued_max: u64,
    pending: FxHashMap<PaymentId, Pending>,
    /// Live (not dead) pending payment of each hold.
    hold_payment: FxHashMap<HoldId, PaymentId>,
    provider_timeout_ms: u64,
}

impl Ledger {
    #[must_use]
    pub fn new(capacity: u32, provider_timeout_ms: u64) -> Ledger {
        Ledger {
            seat_order: vec![0; capacity as usize],
            sold: 0,
            capacity,
            orders: 0,
            waiting: BTreeMap::new(),
            positions_issued_max: 0,
            pending: FxHashMap::default(),
            hold_payment: FxHashMap::default(),
            provider_timeout_ms,
        }
    }

    #[must_use]
    pub fn sold(&self) -> u32 {
        self.sold
    }

    /// A fan got a new position: positions only ever increase.
    pub fn issued(&mut self, position: u64) -> Result<(), String> {
        if position <= self.positions_issued_max {
            return Err(format!(
                "position {position} handed out at or below {} issued before",
                self.positions_issued_max
            ));
        }
        self.positions_issued_max = position;
        Ok(())
    }

    pub fn waits(&mut self, position: u64, fan: u32) {
        self.waiting.insert(position, fan);
    }

    pub fn stops_waiting(&mut self, position: u64) {
        self.waiting.remove(&position);
    }

    /// Every waiting fan the simulator knows of leaves the room (a crash
    /// forgot them; a sellout or closing sent them away). Returns them in
    /// position order.
    pub fn take_waiting(&mut self) -> Vec<u32> {
        std::mem::take(&mut self.waiting).into_values().collect()
    }

    /// Fans waiting in position order (for refresh storms).
    pub fn waiting_fans(&self) -> impl Iterator<Item = u32> + '_ {
        self.waiting.values().copied()
    }

    #[must_use]
    pub fn waiting_len(&self) -> usize {
        self.waiting.len()
    }

    /// FIFO: nobody is admitted while a lower position waits.
    pub fn admitted(&mut self, position: u64) -> Result<(), String> {
        self.waiting.remove(&position);
        if let Some((first, fan)) = self.waiting.first_key_value()
            && *first < position
        {
            return Err(format!(
                "position {position} admitted while fan {fan} waits at position {first}"
            ));
        }
        Ok(())
    }

    /// A sale was acknowledged to its buyer: no seat twice, never more
    /// than capacity.
    pub fn sold_seats(&mut self, order: OrderId, seats: &[SeatIdx]) -> Result<(), String> {
        for seat in seats {
            let Some(slot) = self.seat_order.get_mut(seat.0 as usize) else {
                return Err(format!("{order} sold unknown {seat}"));
            };
            if *slot != 0 {
                return Err(format!("{seat} sold twice: order-{} and {order}", *slot));
            }
            *slot = order.0;
            self.sold += 1;
        }
        self.orders += 1;
        if self.sold > self.capacity {
            return Err(format!(
                "{} tickets sold for {} seats",
                self.sold, self.capacity
            ));
        }
        Ok(())
    }

    pub fn payment_submitted(&mut self, payment: PaymentId, hold: HoldId, at: Millis) {
        self.pending.insert(
            payment,
            Pending {
                hold,
                submitted_at: at,
                dead: false,
            },
        );
        self.hold_payment.insert(hold, payment);
    }

    pub fn payment_declined(&mut self, payment: PaymentId) {
        if let Some(p) = self.pending.get_mut(&payment) {
            p.dead = true;
            self.hold_payment.remove(&p.hold);
        }
    }

    /// A hold's seats went back on sale: never while a payment submitted
    /// in time still awaits the provider within its timeout.
    pub fn released(
        &mut self,
        hold: HoldId,
        reason: ReleaseReason,
        at: Millis,
    ) -> Result<(), String> {
        let Some(payment) = self.hold_payment.remove(&hold) else {
            return Ok(());
        };
        let p = self
            .pending
            .get_mut(&payment)
            .expect("tracked with its hold");
        p.dead = true;
        let timed_out = at >= p.submitted_at.saturating_add_ms(self.provider_timeout_ms);
        if reason != ReleaseReason::Voided || !timed_out {
            return Err(format!(
                "{hold} released ({reason:?}) at {at} while {payment}, submitted in time at {}, awaited the provider",
                p.submitted_at
            ));
        }
        Ok(())
    }

    /// The provider's answer was delivered at `clock` and settled as `r`:
    /// a confirmation within the provider timeout of a live payment sells.
    pub fn answered(
        &mut self,
        payment: PaymentId,
        answer: ProviderAnswer,
        clock: Millis,
        r: &PaymentSettled,
    ) -> Result<(), String> {
        let Some(p) = self.pending.get(&payment).copied() else {
            return Ok(());
        };
        let in_time = clock < p.submitted_at.saturating_add_ms(self.provider_timeout_ms);
        if answer == ProviderAnswer::Confirmed
            && !p.dead
            && in_time
            && !matches!(r, PaymentSettled::Sold { .. })
        {
            return Err(format!(
                "{payment} submitted in time at {} and confirmed at {clock} settled as {r:?}, not sold",
                p.submitted_at
            ));
        }
        if matches!(r, PaymentSettled::Sold { .. }) {
            self.pending.remove(&payment);
            self.hold_payment.remove(&p.hold);
        }
        Ok(())
    }

    /// At the end: the core's orders are exactly the sales acknowledged.
    pub fn matches_core(&self, orders: &[OrderRecord], core_sold: u32) -> Result<(), String> {
        if core_sold != self.sold || orders.len() as u64 != self.orders {
            return Err(format!(
                "the core has {core_sold} tickets in {} orders; buyers were told of {} in {}",
                orders.len(),
                self.sold,
                self.orders
            ));
        }
        for order in orders {
            for seat in &order.seats {
                if self.seat_order.get(seat.0 as usize) != Some(&order.order.0) {
                    return Err(format!(
                        "the core's {} has {seat}, which its buyer was not told of",
                        order.order
                    ));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seat_sold_twice_is_caught() {
        let mut l = Ledger::new(10, 1_000);
        l.sold_seats(OrderId(1), &[SeatIdx(3), SeatIdx(4)]).unwrap();
        let e = l.sold_seats(OrderId(2), &[SeatIdx(4)]).unwrap_err();
        assert!(e.contains("seat-4 sold twice"), "{e}");
    }

    #[test]
    fn admission_out_of_order_is_caught() {
        let mut l = Ledger::new(10, 1_000);
        l.waits(5, 1);
        l.waits(7, 2);
        l.admitted(5).unwrap();
        l.waits(9, 3);
        l.waits(8, 4);
        assert!(l.admitted(9).unwrap_err().contains("waits at position 7"));
    }

    #[test]
    fn releasing_seats_of_a_payment_in_flight_is_caught() {
        let mut l = Ledger::new(10, 1_000);
        l.payment_submitted(PaymentId(1), HoldId(1), Millis(100));
        assert!(
            l.released(HoldId(1), ReleaseReason::Expired, Millis(500))
                .is_err()
        );
        l.payment_submitted(PaymentId(2), HoldId(2), Millis(100));
        l.released(HoldId(2), ReleaseReason::Voided, Millis(1_100))
            .unwrap();
    }
}
