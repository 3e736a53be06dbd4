//! The operator and the node: opening the sale, crashes, restores from the
//! stored snapshot and journal, refresh storms.

use super::{DISCONNECTED, Ev, Reload, Sim};
use onsale_actors::EventCore;
use onsale_schema::Millis;
use onsale_schema::message::SaleCommand;
use onsale_schema::snapshot::EventSnapshot;
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
        for slot in lobby {
            self.try_join(slot);
        }
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
        let now = Millis(self.now);
        self.core_mut().handle_timeout(now);
        self.settle();
    }

    pub(super) fn restore(&mut self) -> Result<EventCore, String> {
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
