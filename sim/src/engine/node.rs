//! The operator and the node: opening the sale, crashes, restores from the
//! stored snapshot and journal, refresh storms.

use super::{DISCONNECTED, Ev, Phase, Reload, Said, Sim};
use onsale_actors::EventCore;
use onsale_schema::message::SaleCommand;
use onsale_schema::snapshot::EventSnapshot;
use onsale_schema::snapshot::{CheckoutRecord, JournalRecord};
use onsale_schema::{Millis, PaymentId};
use std::sync::Arc;

impl Sim<'_> {
    pub(super) fn sale_open(&mut self) {
        if self.core.is_none() {
            return self.defer(Ev::SaleOpen);
        }
        let now = Millis(self.now);
        let _ = self.core_mut().sale_command(SaleCommand::Open, now);
        self.opened_at = Some(self.now);
        self.settle();
        let mut lobby = std::mem::take(&mut self.lobby);
        self.rng.shuffle(&mut lobby);
        self.drawn(lobby.len());
        for slot in lobby {
            self.try_join(slot);
        }
    }

    /// The presale ends: the fans without a code who waited for it join,
    /// in a random order with the draw, else in their arrival order.
    pub(super) fn general_sale(&mut self) {
        let mut lobby = std::mem::take(&mut self.defences.general_lobby);
        if self.defences.draw() {
            self.defences.draw_rng.shuffle(&mut lobby);
            self.drawn(lobby.len());
        }
        for slot in lobby {
            if self.fans[slot as usize].phase == Phase::Lobby {
                self.try_join(slot);
            }
        }
    }

    fn drawn(&mut self, places: usize) {
        if places == 0 {
            return;
        }
        let d = &mut self.defences.counts.draw;
        d.openings_drawn += 1;
        d.places_drawn += places as u64;
    }

    pub(super) fn crash(&mut self, i: u16) {
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
        self.drop_unsaid();
    }

    /// The crash loses the commit in flight and every record after it;
    /// nothing waiting for them was said. Calls whose answers are lost are
    /// made again once the node is back; lost charges are asked again.
    fn drop_unsaid(&mut self) {
        self.writer.committing = false;
        self.writer.taken_seq = self.gate.durable_seq();
        self.writer.records_since_snapshot = self.store.journal.len() as u64;
        for said in self.gate.clear() {
            match said {
                Said::Record(record) => {
                    self.t.records_lost_in_crashes += 1;
                    self.lost_records.push(record);
                }
                Said::Answer(answer) => self.answer_lost(&answer),
                Said::Charge { payment, fan } => self.lost_charges.push((payment, fan)),
                Said::Snapshot { .. } | Said::Push(_) | Said::Refund => {}
            }
        }
    }

    /// Another node adopts the event: snapshot + journal, as stored.
    pub(super) fn restart(&mut self) {
        match self.restore() {
            Ok(core) => self.core = Some(core),
            Err(e) => return self.fail(e),
        }
        self.t.restores += 1;
        // A new owner's gateways start with an empty cache.
        self.edge.full = false;
        // A charge whose payment is durable but was never sent: the new
        // owner asks the provider, as the event actor does after a restore.
        let paying: Vec<PaymentId> = self
            .core_mut()
            .checkouts()
            .into_iter()
            .filter_map(|(_, c)| match c.state {
                CheckoutRecord::Paying { payment, .. } => Some(payment),
                _ => None,
            })
            .collect();
        for (payment, fan) in std::mem::take(&mut self.lost_charges) {
            if paying.contains(&payment) {
                self.provider(payment, fan);
            }
        }
        let now = Millis(self.now);
        self.core_mut().handle_timeout(now);
        // The new incarnation's checkout sessions, armed from the core.
        for (hold, at) in self.core_mut().checkout_alarms() {
            self.arm_checkout(hold, at);
        }
        self.settle();
    }

    /// Decode the stored snapshot, restore it, replay the stored journal
    /// and then `extra`.
    fn rebuild(&self, extra: &[JournalRecord]) -> Result<EventCore, String> {
        let snapshot = EventSnapshot::decode(&self.store.snapshot)
            .map_err(|e| format!("stored snapshot does not decode: {e}"))?;
        let mut core = EventCore::restore(Arc::clone(&self.venue), &snapshot, self.store.ceiling)
            .map_err(|e| format!("stored snapshot does not restore: {e}"))?;
        for record in self.store.journal.iter().chain(extra) {
            core.replay(record)
                .map_err(|e| format!("stored journal does not replay: {e}"))?;
        }
        Ok(core)
    }

    /// The durable state, checked: replaying the records the crash lost on
    /// top of it gives back exactly the state before the crash.
    pub(super) fn restore(&mut self) -> Result<EventCore, String> {
        let core = self.rebuild(&[])?;
        let lost = std::mem::take(&mut self.lost_records);
        let Some(mut expected) = self.before_crash.take() else {
            return Err("restart without a crash".into());
        };
        let mut after = if lost.is_empty() {
            core.snapshot()
        } else {
            self.rebuild(&lost)?.snapshot()
        };
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

    pub(super) fn storm(&mut self, i: u16) {
        let storm = &self.sc.storms[usize::from(i)];
        let waiting: Vec<u32> = self.ledger.waiting_fans().collect();
        for slot in waiting {
            if let Some(after) = self.model.storm_reload_after_ms(&mut self.rng, storm) {
                self.agenda
                    .push(self.now + after, Ev::Reload(slot, Reload::Storm));
            }
        }
    }
}
