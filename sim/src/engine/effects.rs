//! The shell's side of the core: draining its effects into the store,
//! the provider and the fans, and the journal records and pushes fans hear of.

use super::{BOT, Ev, GATED_MAX, NOT_YET, Phase, Purchase, Reload, Said, Sim, ms32, slot_of};
use crate::behaviour;
use onsale_actors::{Effect, EventCore};
use onsale_schema::message::Push;
use onsale_schema::snapshot::{JournalEntry, JournalRecord};
use onsale_schema::{FanId, HoldId, Millis, OrderId, PaymentId, SaleState};

impl Sim<'_> {
    /// Drain the core's effects like a shell: journal records go to the
    /// writer, what the event says into the output gate behind them; take a
    /// snapshot when due (stored behind the records it includes); start a
    /// commit if the writer is idle.
    pub(super) fn settle(&mut self) {
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
        if self.writer.records_since_snapshot >= self.sc.store.snapshot_every_records {
            let snapshot = self.core_mut().snapshot();
            let seq = self.core_mut().journal_seq();
            match snapshot.encode() {
                Ok(bytes) => self.gate.push(seq, Said::Snapshot { bytes, seq }),
                Err(e) => self.fail(format!("snapshot does not encode: {e}")),
            }
            self.writer.records_since_snapshot = 0;
        }
        self.start_commit();
    }

    /// The writer takes every record produced so far into one commit, if
    /// no commit is running (group commit).
    pub(super) fn start_commit(&mut self) {
        let Some(core) = self.core.as_ref() else {
            return;
        };
        let seq = core.journal_seq();
        if self.writer.committing || seq <= self.writer.taken_seq {
            return;
        }
        self.writer.committing = true;
        self.writer.taken_seq = seq;
        self.t.commits += 1;
        let at = self.now + self.sc.store.commit_latency_ms;
        let incarnation = self.incarnation;
        self.agenda.push(at, Ev::Committed { seq, incarnation });
    }

    /// A commit is durable: what waited for it may leave; the records
    /// produced meanwhile go in the next commit.
    pub(super) fn committed(&mut self, seq: u64) {
        self.writer.committing = false;
        self.gate.durable(seq);
        self.start_commit();
    }

    /// Let out everything the gate allows, in order, and act on it.
    pub(super) fn flush(&mut self) {
        if self.gate.is_full() {
            let len = self.gate.len();
            self.fail(format!(
                "{len} things said wait for the journal (bound {GATED_MAX})"
            ));
        }
        while let Some(said) = self.gate.pop() {
            match said {
                Said::Record(record) => {
                    self.on_record(&record);
                    self.store.journal.push(record);
                }
                Said::Snapshot { bytes, seq } => {
                    self.store.snapshot = bytes;
                    self.store.journal.retain(|r| r.seq > seq);
                    self.t.snapshots += 1;
                }
                Said::Push(push) => self.on_push(push),
                Said::Charge { payment, fan } => self.provider(payment, fan),
                Said::Refund => self.t.refunds += 1,
                Said::Answer(answer) => self.answered(answer),
            }
        }
    }

    /// What the event said waits for the journal produced so far.
    pub(super) fn say(&mut self, said: Said) {
        let seq = self.core.as_ref().map_or(0, EventCore::journal_seq);
        self.gate.push(seq, said);
    }

    pub(super) fn on_effect(&mut self, effect: Effect) {
        match effect {
            Effect::Journal(record) => {
                self.t.journal_records += 1;
                self.writer.records_since_snapshot += 1;
                self.gate.push(record.seq, Said::Record(record));
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
            Effect::Push(push) => self.say(Said::Push(push)),
            Effect::RequestPayment { payment, fan, .. } => {
                self.say(Said::Charge { payment, fan });
            }
            Effect::Refund { .. } => self.say(Said::Refund),
            Effect::ArmCheckout { hold, at } => self.arm_checkout(hold, at),
            // The simulated provider's silence is total: asking changes
            // nothing. A stale alarm of an ended checkout is harmless.
            Effect::QueryPayment { .. } | Effect::EndCheckout { .. } => {}
        }
    }

    /// A checkout session's alarm: internal to the node, not gated.
    pub(super) fn arm_checkout(&mut self, hold: HoldId, at: Millis) {
        let incarnation = self.incarnation;
        self.agenda.push(
            at.0.max(self.now),
            Ev::CheckoutAlarm {
                hold: hold.0,
                incarnation,
            },
        );
    }

    pub(super) fn on_record(&mut self, record: &JournalRecord) {
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

    pub(super) fn on_admitted(&mut self, slot: u32, at: Millis) {
        self.t.admitted += 1;
        let f = &mut self.fans[slot as usize];
        f.phase = Phase::Admitted;
        if f.joined_ms != NOT_YET {
            let waited = at.0.saturating_sub(u64::from(f.joined_ms));
            self.waits_ms.push(ms32(waited));
        }
        let bot = f.flags & BOT != 0;
        match self.model.show_up_after_ms(&mut self.rng, bot) {
            Some(after) => self.agenda.push(self.now + after, Ev::ShowUp(slot)),
            None => self.t.no_shows += 1,
        }
    }

    pub(super) fn on_push(&mut self, push: Push) {
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
            // Scenarios model the draw in the simulator's lobby, not with
            // the core's pre-queue: no event they run draws.
            Push::Drawn { .. } => {}
            // The simulator models proof of work as a cost per account
            // (`[defences]`), not with the core's stamp rule.
            Push::Stamp { .. } => {}
        }
    }

    /// Sold out or closed: the core sent every waiting fan away, and what
    /// fans planned to do next (retry, reload, give up waiting) is moot.
    /// Only the provider's answers (refunds), the store and the node's
    /// crashes still matter; arrivals still come, and are told at the edge.
    pub(super) fn send_waiting_away(&mut self) {
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
        // Those waiting for the general sale are told at once too.
        for slot in std::mem::take(&mut self.defences.general_lobby) {
            let f = &mut self.fans[slot as usize];
            if f.phase == Phase::Lobby {
                f.phase = Phase::Gone;
                self.t.turned_away_sold_out += 1;
            }
        }
    }

    pub(super) fn purchased(
        &mut self,
        slot: u32,
        order: OrderId,
        seats: &[onsale_schema::SeatIdx],
    ) {
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
        } else {
            let arrived = u64::from(self.arrived_ms[f.rank as usize]);
            let joined = u64::from(f.joined_ms);
            let [total, to_join, from_join] = &mut self.genuine_waits_ms;
            total.push(ms32(self.now.saturating_sub(arrived)));
            to_join.push(ms32(joined.saturating_sub(arrived)));
            from_join.push(ms32(self.now.saturating_sub(joined)));
            self.t.genuine.tickets += seats.len() as u64;
        }
        self.purchases.push(Purchase {
            rank: f.rank,
            position: f.position,
            arrived_ms: u64::from(self.arrived_ms[f.rank as usize]),
            at_ms: self.now,
            tickets: seats.len() as u8,
            bot,
        });
    }

    /// A fan's hold ended without a sale (expired, declined, voided).
    pub(super) fn hold_ended(&mut self, slot: u32) {
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

    pub(super) fn provider(&mut self, payment: PaymentId, fan: FanId) {
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
}
