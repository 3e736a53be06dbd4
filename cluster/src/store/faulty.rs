//! Fault injection for tests and drills: a store wrapper that makes every
//! fenced write slow and makes some of them fail, as a real store does
//! under load, during a failover, or when a disk stalls.
//!
//! Failing writes fail *before* reaching the inner store (nothing lands),
//! except every `land_then_fail`-th, which lands and then reports failure,
//! like a commit whose acknowledgement was lost: callers must retry
//! idempotently and never acknowledge either kind as stored.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use onsale_schema::{EventId, Millis};

use super::{
    Acquisition, EventLease, JournalBytes, NodeId, NodeRecord, Store, StoreError, StoredEvent,
};

/// What to inject. Zero turns a fault off.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Faults {
    /// Every fenced write sleeps this long first.
    pub write_delay_ms: u64,
    /// Every n-th fenced write fails without landing.
    pub fail_every: u64,
    /// Every n-th fenced write lands, then reports failure.
    pub land_then_fail_every: u64,
}

/// A store with faults.
pub struct FaultyStore<S> {
    inner: S,
    faults: Faults,
    writes: AtomicU64,
}

impl<S> std::fmt::Debug for FaultyStore<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultyStore")
            .field("faults", &self.faults)
            .finish_non_exhaustive()
    }
}

impl<S: Store> FaultyStore<S> {
    pub fn new(inner: S, faults: Faults) -> FaultyStore<S> {
        FaultyStore {
            inner,
            faults,
            writes: AtomicU64::new(0),
        }
    }

    fn write<T>(&self, op: impl FnOnce(&S) -> Result<T, StoreError>) -> Result<T, StoreError> {
        if self.faults.write_delay_ms > 0 {
            std::thread::sleep(Duration::from_millis(self.faults.write_delay_ms));
        }
        let n = self.writes.fetch_add(1, Ordering::Relaxed) + 1;
        let hits = |every: u64| every > 0 && n.is_multiple_of(every);
        if hits(self.faults.fail_every) {
            return Err(StoreError::Unavailable(
                "injected fault: write refused".into(),
            ));
        }
        let result = op(&self.inner);
        if result.is_ok() && hits(self.faults.land_then_fail_every) {
            return Err(StoreError::Unavailable(
                "injected fault: write landed, acknowledgement lost".into(),
            ));
        }
        result
    }
}

impl<S: Store> Store for FaultyStore<S> {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }

    fn heartbeat_node(
        &self,
        node: &NodeId,
        addr: &str,
        ttl_ms: u64,
        now: Millis,
    ) -> Result<(), StoreError> {
        self.inner.heartbeat_node(node, addr, ttl_ms, now)
    }

    fn live_nodes(&self, now: Millis) -> Result<Vec<NodeRecord>, StoreError> {
        self.inner.live_nodes(now)
    }

    fn nodes(&self) -> Result<Vec<NodeRecord>, StoreError> {
        self.inner.nodes()
    }

    fn forget_node(&self, node: &NodeId) -> Result<(), StoreError> {
        self.write(|s| s.forget_node(node))
    }

    fn set_node_flags(&self, node: &NodeId, flags: super::NodeFlags) -> Result<(), StoreError> {
        self.write(|s| s.set_node_flags(node, flags))
    }

    fn node_flags(&self) -> Result<Vec<(NodeId, super::NodeFlags)>, StoreError> {
        self.inner.node_flags()
    }

    fn acquire_event_over(
        &self,
        event: EventId,
        node: &NodeId,
        ttl_ms: u64,
        now: Millis,
        over: Option<&EventLease>,
    ) -> Result<Acquisition, StoreError> {
        self.inner
            .acquire_event_over(event, node, ttl_ms, now, over)
    }

    fn renew_event(
        &self,
        lease: &EventLease,
        ttl_ms: u64,
        now: Millis,
    ) -> Result<EventLease, StoreError> {
        self.inner.renew_event(lease, ttl_ms, now)
    }

    fn renew_events(
        &self,
        leases: &[EventLease],
        ttl_ms: u64,
        now: Millis,
    ) -> Result<Vec<Result<EventLease, StoreError>>, StoreError> {
        self.write(|s| s.renew_events(leases, ttl_ms, now))
    }

    fn release_event(&self, lease: &EventLease) -> Result<(), StoreError> {
        self.inner.release_event(lease)
    }

    fn event_leases(&self) -> Result<Vec<EventLease>, StoreError> {
        self.inner.event_leases()
    }

    fn event_lease(&self, event: EventId) -> Result<Option<EventLease>, StoreError> {
        self.inner.event_lease(event)
    }

    fn append_journal(
        &self,
        lease: &EventLease,
        records: &[JournalBytes],
    ) -> Result<(), StoreError> {
        self.write(|s| s.append_journal(lease, records))
    }

    fn put_snapshot(&self, lease: &EventLease, seq: u64, bytes: &[u8]) -> Result<(), StoreError> {
        self.write(|s| s.put_snapshot(lease, seq, bytes))
    }

    fn reserve_counter(&self, lease: &EventLease, ceiling: u64) -> Result<u64, StoreError> {
        self.write(|s| s.reserve_counter(lease, ceiling))
    }

    fn load_event(&self, event: EventId) -> Result<StoredEvent, StoreError> {
        self.inner.load_event(event)
    }

    fn put_event_spec(&self, event: EventId, spec: &[u8]) -> Result<(), StoreError> {
        self.inner.put_event_spec(event, spec)
    }

    fn event_specs(&self) -> Result<Vec<(EventId, super::SpecBytes)>, StoreError> {
        self.inner.event_specs()
    }

    fn set_feed_retention(&self, on: bool) -> Result<(), StoreError> {
        self.write(|s| s.set_feed_retention(on))
    }

    fn feed_retention(&self) -> Result<bool, StoreError> {
        self.inner.feed_retention()
    }

    fn feed_cursor(&self, event: EventId) -> Result<Option<super::FeedCursor>, StoreError> {
        self.inner.feed_cursor(event)
    }

    fn put_feed_cursor(&self, event: EventId, cursor: super::FeedCursor) -> Result<(), StoreError> {
        self.write(|s| s.put_feed_cursor(event, cursor))
    }

    fn read_journal(
        &self,
        event: EventId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<JournalBytes>, StoreError> {
        self.inner.read_journal(event, after, limit)
    }
}
