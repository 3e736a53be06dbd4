//! An event sold in a real store, for the export's tests and bench: an
//! [`EventCore`] driven as a shell drives it, its journal, counter blocks
//! and snapshots written through a real lease with the event actor's own
//! log ([`StoreLog`]), so the store holds what a node would leave.
//!
//! Every call panics if the core or the store refuses what a shell would
//! expect to succeed: this is test scaffolding, not a shell.

use std::collections::{BTreeMap, VecDeque};
use std::path::Path;
use std::sync::Arc;

use onsale_actors::journal::EventLog;
use onsale_actors::{Effect, EventCore};
use onsale_cluster::event_log::StoreLog;
use onsale_cluster::store::sqlite::SqliteStore;
use onsale_cluster::store::{NodeId, Store};
use onsale_schema::message::{
    Area, HoldPlaced, HoldRejected, HoldRequest, PaymentSettled, ProviderAnswer, SaleCommand,
};
use onsale_schema::snapshot::{JournalEntry, JournalRecord};
use onsale_schema::spec::EventSpec;
use onsale_schema::{EventConfig, EventId, FanId, HoldId, Millis, OrderId, SaleState};

/// Journal records buffered before one append (the event actor commits a
/// batch per input; one per 1,024 records keeps a stadium's sale to a few
/// hundred transactions).
const FLUSH_RECORDS: usize = 1_024;
/// ... or as soon as they admit this many fans (an append of 8 MB is
/// refused; an admission is at most ~20 bytes).
const FLUSH_ADMISSIONS: usize = 100_000;

/// The node name the fixture's lease is taken for.
pub const NODE: &str = "export-fixture";

/// 2026-01-01T00:00:00Z: where fixtures start their clock by default.
pub const START: Millis = Millis(1_767_225_600_000);

/// An event's spec for `venue_json`, with a config where the room holds
/// 1,000 waiting fans per ticket left and counter blocks are rare.
#[must_use]
pub fn spec(event: EventId, venue_json: &str) -> EventSpec {
    EventSpec {
        event,
        name: "Export fixture".into(),
        city: "Bristol".into(),
        starts_at: Millis(START.0 + 30 * 24 * 3_600_000),
        venue_json: venue_json.into(),
        config: EventConfig {
            full_factor: 1_000,
            shoppers_max: 2_000,
            counter_block: 1_000_000,
            ..EventConfig::default()
        },
    }
}

/// The best `count` adjacent seats anywhere.
fn best(count: u8) -> HoldRequest {
    HoldRequest::Best {
        count,
        area: Area::Anywhere,
    }
}

/// A well-mixed fan id for the `i`-th fan (SplitMix64's finaliser), so
/// that ids use all 64 bits as real identity providers' do.
#[must_use]
pub fn fan(i: u64) -> FanId {
    let mut z = i.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    FanId(z ^ (z >> 31))
}

/// What became of a hold the fixture placed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ending {
    /// Paid and confirmed.
    Sold,
    /// The fan let the seats go.
    Released,
    /// Paid, and the provider declined (the hold stays until its
    /// deadline).
    Declined,
    /// Left open (it expires when time passes its deadline).
    Open,
}

/// One event, its core and its lease in a store. See the module docs.
pub struct Seller {
    store: Arc<SqliteStore>,
    log: StoreLog,
    core: EventCore,
    now: Millis,
    pending: Vec<JournalRecord>,
    pending_admissions: usize,
    /// Admitted fans not yet served, in admission order.
    admitted: VecDeque<FanId>,
    joined: u64,
    /// The checkout sessions' alarms, as the core armed them.
    alarms: BTreeMap<HoldId, Millis>,
    /// Journal records between snapshots (0: only when asked).
    snapshot_every: u64,
    snapshot_seq: u64,
}

impl std::fmt::Debug for Seller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Seller")
            .field("event", &self.core.event())
            .field("now", &self.now)
            .field("journal_seq", &self.core.journal_seq())
            .finish_non_exhaustive()
    }
}

impl Seller {
    /// Create the event of `spec` in the store at `path` (made if missing),
    /// take its lease and start its core at `now`.
    ///
    /// # Panics
    ///
    /// If the store cannot be opened or written, or `spec` is invalid.
    #[must_use]
    pub fn create(path: &Path, spec: &EventSpec, now: Millis) -> Seller {
        let store = Arc::new(SqliteStore::open(path).expect("the fixture's store opens"));
        let bytes = spec.encode().expect("the spec encodes");
        store
            .put_event_spec(spec.event, &bytes)
            .expect("spec stored");
        let node = NodeId(NODE.into());
        let lease = store
            .acquire_event(spec.event, &node, 3_600_000, now)
            .expect("lease taken")
            .expect("no other node holds the fixture's event");
        let venue = Arc::new(spec.venue().expect("the spec's venue is valid"));
        let core = EventCore::new(spec.event, venue, spec.config.clone(), now)
            .expect("the spec's config is valid");
        let log = StoreLog::new(Arc::clone(&store) as Arc<dyn Store>, lease);
        let mut seller = Seller {
            store,
            log,
            core,
            now,
            pending: Vec::new(),
            pending_admissions: 0,
            admitted: VecDeque::new(),
            joined: 0,
            alarms: BTreeMap::new(),
            snapshot_every: 0,
            snapshot_seq: 0,
        };
        seller.settle();
        seller
    }

    /// The store (shared: the fixture keeps writing to it).
    #[must_use]
    pub fn store(&self) -> &Arc<SqliteStore> {
        &self.store
    }

    /// The event's core as it is now (some of its journal may not be in
    /// the store yet: see [`Seller::flush`]).
    #[must_use]
    pub fn core(&self) -> &EventCore {
        &self.core
    }

    #[must_use]
    pub fn now(&self) -> Millis {
        self.now
    }

    /// Open the sale.
    ///
    /// # Panics
    ///
    /// If the sale cannot open.
    pub fn open(&mut self) {
        self.core
            .sale_command(SaleCommand::Open, self.now)
            .expect("the sale opens");
        self.settle();
    }

    /// Up to `count` new fans join, until the event turns one away (full
    /// or sold out). Returns how many joined.
    pub fn join(&mut self, count: u64) -> u64 {
        for joined in 0..count {
            let fan = fan(self.joined);
            let refused = self.core.join(fan, self.now).is_err();
            self.settle();
            if refused {
                return joined;
            }
            self.joined += 1;
        }
        count
    }

    /// Let `ms` pass (timers ring: turns lapse, checkout sessions' alarms
    /// ring, earliest first, so unpaid holds expire).
    pub fn advance(&mut self, ms: u64) {
        self.now = self.now.saturating_add_ms(ms);
        self.core.handle_timeout(self.now);
        self.settle();
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

    /// The next admitted fan shows up, holds up to `party` adjacent seats
    /// (fewer if the rules or the seats left allow no more) and ends as
    /// `ending`. `None` once no admitted fan can hold anything.
    ///
    /// # Panics
    ///
    /// If the core refuses a payment the fixture expects it to take.
    pub fn buy(&mut self, party: u8, ending: Ending) -> Option<(FanId, HoldPlaced)> {
        let (fan, placed) = self.hold(party)?;
        match ending {
            Ending::Open => {}
            Ending::Released => {
                self.core
                    .release(fan, placed.hold, self.now)
                    .expect("an unpaid hold is released");
                self.settle();
            }
            Ending::Sold | Ending::Declined => {
                let started = self
                    .core
                    .submit_payment(fan, placed.hold, self.now)
                    .expect("payment starts");
                self.settle();
                let answer = if ending == Ending::Sold {
                    ProviderAnswer::Confirmed
                } else {
                    ProviderAnswer::Declined
                };
                let settled = self.core.provider_answer(started.payment, answer, self.now);
                self.settle();
                if ending == Ending::Sold {
                    assert!(
                        matches!(settled, PaymentSettled::Sold { .. }),
                        "{settled:?}"
                    );
                }
            }
        }
        Some((fan, placed))
    }

    /// Sell in parties of up to `party`, `gap_ms` apart, with fans joining
    /// as needed, until the event is sold out. Returns the orders made.
    ///
    /// # Panics
    ///
    /// If no fan can buy for 10 rounds in a row.
    pub fn sell_out(&mut self, party: u8, gap_ms: u64) -> Vec<OrderId> {
        let before = self.core.orders().len();
        let mut idle = 0;
        while self.core.sale() != SaleState::SoldOut {
            if self.admitted.is_empty() {
                self.join(u64::from(self.core.config().shoppers_max));
            }
            match self.buy(party, Ending::Sold) {
                Some(_) => idle = 0,
                None => {
                    // Fans this fixture no longer serves (they let a hold
                    // go, or could not hold) keep their turns: let them
                    // lapse so that others are admitted.
                    idle += 1;
                    assert!(idle < 10, "no fan can buy the seats left");
                    self.advance(self.core.config().shopping_window_ms);
                }
            }
            self.advance(gap_ms);
        }
        self.core.orders()[before..]
            .iter()
            .map(|o| o.order)
            .collect()
    }

    /// The next admitted fan who can hold shows up and holds.
    fn hold(&mut self, party: u8) -> Option<(FanId, HoldPlaced)> {
        while let Some(fan) = self.admitted.pop_front() {
            self.core.enter(fan, self.now);
            self.settle();
            let mut count = party;
            while count > 0 {
                match self.core.hold(fan, &best(count), self.now) {
                    Ok(placed) => {
                        self.settle();
                        return Some((fan, placed));
                    }
                    Err(
                        HoldRejected::FairShare { .. }
                        | HoldRejected::TicketLimit { .. }
                        | HoldRejected::NotEnoughSeats,
                    ) => count -= 1,
                    // Its turn lapsed, or the sale is over: the next fan.
                    Err(_) => break,
                }
            }
            self.settle();
        }
        None
    }

    /// Store a snapshot every `records` journal records from now on, as
    /// the event actor does (`--snapshot-every`; 0: only when asked).
    pub fn snapshot_every(&mut self, records: u64) {
        self.snapshot_every = records;
    }

    /// Store a snapshot of the event now (compaction may then delete the
    /// journal it includes, unless the change feed keeps it).
    ///
    /// # Panics
    ///
    /// If the store refuses the write.
    pub fn snapshot(&mut self) {
        self.flush();
        let snapshot = self.core.snapshot();
        self.log.snapshot(&snapshot).expect("snapshot stored");
        self.snapshot_seq = snapshot.journal_seq;
    }

    /// Append every journal record not yet in the store.
    ///
    /// # Panics
    ///
    /// If the store refuses the write.
    pub fn flush(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        self.log.append(&self.pending).expect("journal appended");
        self.pending.clear();
        self.pending_admissions = 0;
    }

    /// Handle the core's effects as a shell would: journal records to the
    /// store (batched), counter blocks reserved before they are used.
    fn settle(&mut self) {
        loop {
            let effects: Vec<Effect> = self.core.drain_effects().collect();
            if effects.is_empty() {
                break;
            }
            for effect in effects {
                match effect {
                    Effect::Journal(record) => self.journal(record),
                    Effect::ReserveCounter { ceiling } => {
                        let stored = self.log.reserve_counter(ceiling).expect("counter reserved");
                        self.core.counter_durable(stored);
                    }
                    Effect::ArmCheckout { hold, at } => {
                        self.alarms.insert(hold, at);
                    }
                    Effect::EndCheckout { hold } => {
                        self.alarms.remove(&hold);
                    }
                    _ => {}
                }
            }
        }
        if self.pending.len() >= FLUSH_RECORDS || self.pending_admissions >= FLUSH_ADMISSIONS {
            self.flush();
        }
        let since = self.core.journal_seq() - self.snapshot_seq;
        if self.snapshot_every > 0 && since >= self.snapshot_every {
            self.snapshot();
        }
    }

    fn journal(&mut self, record: JournalRecord) {
        for (fan, _, _) in record.entry.admissions() {
            self.admitted.push_back(fan);
            self.pending_admissions += 1;
        }
        if let JournalEntry::AdmissionLapsed { fan } = record.entry {
            self.admitted.retain(|f| *f != fan);
        }
        self.pending.push(record);
    }
}
