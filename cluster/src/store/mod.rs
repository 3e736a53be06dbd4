//! The store: everything the cluster keeps durably, behind one narrow trait.
//!
//! - node leases (which nodes are alive),
//! - event leases with fencing epochs (which node owns which event),
//! - per event: one snapshot, an append-only journal after it, and the
//!   position counter's ceiling,
//! - the operators' desired state (event specs).
//!
//! **Fencing.** Every write on behalf of an event owner names its
//! [`EventLease`] and is applied only if, inside the same transaction, the
//! store's current epoch for that event is the lease's epoch. Acquiring an
//! event always bumps the epoch, so a stale owner (paused, partitioned, or
//! an earlier incarnation of a restarted process) can never write again.
//! Expiry times only decide *when* another node may take over (liveness);
//! epochs alone decide *whether* a write lands (safety), so clock skew can
//! delay a failover but never corrupt an event.
//!
//! **Time.** Callers pass `now` (wall-clock ms); the store keeps no clock.
//!
//! Backends: [`sqlite::SqliteStore`] (the embedded default; several
//! processes on one host may share one file) and, behind the `fdb` cargo
//! feature, `fdb::FdbStore` (FoundationDB). Both pass [`conformance`].

use std::fmt;

use onsale_schema::{EventId, Millis};

pub mod conformance;
pub mod faulty;
#[cfg(feature = "fdb")]
pub mod fdb;
pub mod frame;
pub mod marks;
pub mod open;
pub mod sqlite;

pub use frame::{FrameError, Sealed};

/// Largest total of record bytes in one [`Store::append_journal`] call.
/// FoundationDB refuses transactions over 10 MB; every backend refuses
/// larger batches alike (`Conflict`), so that code tested on one runs on
/// the other. A batch of 1,000 records is far below it.
pub const JOURNAL_APPEND_BYTES_MAX: usize = 8 * 1024 * 1024;

/// A node's name in the cluster (unique per process incarnation is not
/// required: epochs fence earlier incarnations).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId(pub String);

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A live node, as registered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeRecord {
    pub node: NodeId,
    /// Where the node's router listens (host:port).
    pub addr: String,
    pub expires: Millis,
}

/// What operators asked of a node, kept in the store: it outlives the
/// node's process, and every node reads it when it places events.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NodeFlags {
    /// Placement passes the node over: no event is placed on it.
    pub cordoned: bool,
    /// The node moves each event it serves to the event's desired owner.
    pub draining: bool,
}

impl NodeFlags {
    /// Neither flag set (the store keeps no entry for such a node).
    #[must_use]
    pub fn is_clear(self) -> bool {
        !self.cordoned && !self.draining
    }
}

/// The right to own `event` until `expires`, at fencing `epoch`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventLease {
    pub event: EventId,
    pub node: NodeId,
    pub epoch: u64,
    pub expires: Millis,
}

/// What an attempt to take an event's lease found. Another node holding
/// the event is an expected outcome, so it is a value, and it names the
/// holder: a node that does not own an event can say who does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Acquisition {
    /// The caller owns the event now, at a new epoch.
    Acquired(EventLease),
    /// Another node holds this unexpired lease; nothing was changed.
    HeldBy(EventLease),
}

impl Acquisition {
    /// The caller's new lease, if it got one.
    #[must_use]
    pub fn acquired(self) -> Option<EventLease> {
        match self {
            Acquisition::Acquired(lease) => Some(lease),
            Acquisition::HeldBy(_) => None,
        }
    }
}

/// The lease-acquire rule, in one place for every backend: `node` takes
/// `event` if nobody holds it, its lease has expired at `now`, `node`
/// itself holds it (a restarted node takes its events back at once), or
/// the current lease is exactly `over` (a takeover: the caller proved that
/// lease's holder dead, or the holder handed the event over); taking
/// always bumps the epoch, which fences the previous holder. The backend
/// reads `current` and, on `Acquired`, writes the new lease, in one
/// transaction.
pub(crate) fn acquire_rule(
    current: Option<EventLease>,
    event: EventId,
    node: &NodeId,
    ttl_ms: u64,
    now: Millis,
    over: Option<&EventLease>,
) -> Result<Acquisition, StoreError> {
    let epoch = match current {
        None => 1,
        Some(current)
            if current.node == *node
                || current.expires <= now
                || over.is_some_and(|over| {
                    over.node == current.node && over.epoch == current.epoch
                }) =>
        {
            current
                .epoch
                .checked_add(1)
                .ok_or_else(|| StoreError::Corrupt(format!("{event}: lease epoch exhausted")))?
        }
        Some(held) => return Ok(Acquisition::HeldBy(held)),
    };
    Ok(Acquisition::Acquired(EventLease {
        event,
        node: node.clone(),
        epoch,
        expires: now.saturating_add_ms(ttl_ms),
    }))
}

/// One encoded journal record and its sequence number.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JournalBytes {
    pub seq: u64,
    pub bytes: Vec<u8>,
}

/// Where the change feed stands in one event's journal (see the
/// `onsale-feed` crate). Kept in the store beside the event, written by
/// the relay, never by the event's owner: it is not fenced, and a write
/// that would move `published` backwards is ignored.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FeedCursor {
    /// Every record at or below this seq was published (or makes no
    /// message).
    pub published: u64,
    /// The seq of the last record that made a message (0: none yet): the
    /// next message names it, so a consumer sees any gap.
    pub last_message: u64,
    /// The oldest record the relay must read again to know, at
    /// `published`, what it knew (the holds still open): compaction keeps
    /// this record and every later one.
    pub keep_from: u64,
}

/// Most journal records an event keeps at or below its snapshot for a
/// change feed that has not read them (a relay stopped for long): past
/// this the oldest go, and the relay reports the gap. 2,000,000 records
/// is a few hundred MB at most, several times a 60,000-seat sale's whole
/// journal.
pub const FEED_RETAIN_RECORDS: u64 = 2_000_000;

/// The highest seq compaction may delete for an event whose snapshot is at
/// `snapshot`: with feed retention on, the records the feed has not read
/// (from `keep_from`, or all of them if it never wrote a cursor) stay, up
/// to [`FEED_RETAIN_RECORDS`] below the snapshot.
pub(crate) fn compact_bound(snapshot: u64, retention: bool, cursor: Option<FeedCursor>) -> u64 {
    if !retention {
        return snapshot;
    }
    let keep_from = cursor.map_or(1, |c| c.keep_from.max(1));
    snapshot
        .min(keep_from - 1)
        .max(snapshot.saturating_sub(FEED_RETAIN_RECORDS))
}

/// An event's durable state as stored.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StoredEvent {
    /// The latest snapshot and the journal sequence it includes.
    pub snapshot: Option<(u64, Vec<u8>)>,
    /// Journal records after the snapshot, ascending by `seq`.
    pub journal: Vec<JournalBytes>,
    /// No position at or above this was ever handed out (0: none reserved).
    pub counter_ceiling: u64,
}

/// Why a store call failed. `Fenced`, `Conflict`, `Damaged` and `Lost`
/// are final for the caller; `Unavailable` may be retried (the write did
/// not land, or landed whole: every call is one transaction).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("{event} is owned at a newer epoch than {epoch}: this owner is fenced")]
    Fenced { event: EventId, epoch: u64 },
    #[error("conflicting write: {0}")]
    Conflict(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// A stored value failed its checksum: nothing of it was decoded.
    #[error(transparent)]
    Damaged(#[from] Damage),
    /// The store holds less of an event than it once acknowledged.
    #[error(transparent)]
    Lost(#[from] Lost),
}

/// A stored value that is not what was written (see [`frame`]). Made only
/// through [`Damage::found`], which logs it at ERROR and counts it in
/// `onsale_store_corrupt_total{kind}`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{event} cannot be restored: {problem} in {kind}{at}", at = SeqSuffix(*.seq))]
pub struct Damage {
    pub event: EventId,
    pub kind: Sealed,
    /// The snapshot's or journal record's seq.
    pub seq: Option<u64>,
    pub problem: FrameError,
}

struct SeqSuffix(Option<u64>);

impl fmt::Display for SeqSuffix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(seq) => write!(f, " {seq}"),
            None => Ok(()),
        }
    }
}

impl Damage {
    /// Record a damaged value found under (`event`, `seq`).
    #[must_use]
    pub fn found(event: EventId, kind: Sealed, seq: Option<u64>, problem: FrameError) -> Damage {
        let damage = Damage {
            event,
            kind,
            seq,
            problem,
        };
        tracing::error!(%event, kind = kind.label(), ?seq, error = %damage, "stored data is damaged");
        metrics::counter!("onsale_store_corrupt_total", "kind" => kind.label()).increment(1);
        damage
    }
}

/// An event restored shorter than acknowledged: committed records or
/// counter reservations vanished (see [`marks`]).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "{event} cannot be restored: the store lost committed data: it acknowledged journal seq \
     {marked_seq} and counter ceiling {marked_ceiling} (high-water mark in {mark}) but holds \
     seq {found_seq} and ceiling {found_ceiling}; refusing to serve rather than resell"
)]
pub struct Lost {
    pub event: EventId,
    pub marked_seq: u64,
    pub marked_ceiling: u64,
    pub found_seq: u64,
    pub found_ceiling: u64,
    /// Where the mark is kept.
    pub mark: String,
}

impl Lost {
    /// Record a loss (logged at ERROR, counted as kind `lost`).
    #[must_use]
    pub fn found(lost: Lost) -> Lost {
        tracing::error!(event = %lost.event, error = %lost, "the store lost committed data");
        metrics::counter!("onsale_store_corrupt_total", "kind" => "lost").increment(1);
        lost
    }
}

/// One event's stored spec: its bytes, or why they cannot be trusted.
pub type SpecBytes = Result<Vec<u8>, Damage>;

/// The narrow interface the cluster needs from a store. Every method is one
/// transaction: it lands whole or not at all, and may be retried after
/// `Unavailable` with the same arguments (each is idempotent).
pub trait Store: Send + Sync + 'static {
    /// A short name for logs ("sqlite", "foundationdb").
    fn backend(&self) -> &'static str;

    // ----- nodes -----

    /// Register or refresh a node's lease until `now + ttl_ms`.
    fn heartbeat_node(
        &self,
        node: &NodeId,
        addr: &str,
        ttl_ms: u64,
        now: Millis,
    ) -> Result<(), StoreError>;

    /// Nodes whose lease has not expired at `now`, sorted by node.
    fn live_nodes(&self, now: Millis) -> Result<Vec<NodeRecord>, StoreError> {
        let mut nodes = self.nodes()?;
        nodes.retain(|record| record.expires > now);
        Ok(nodes)
    }

    /// Every node that ever registered and was not forgotten, its lease
    /// expired or not, sorted by node (operators list the dead as gone).
    fn nodes(&self) -> Result<Vec<NodeRecord>, StoreError>;

    /// Forget a node's registration and flags (a decommissioned node).
    /// Its events' leases are untouched: they expire or are taken over.
    fn forget_node(&self, node: &NodeId) -> Result<(), StoreError>;

    /// Set a node's flags (clear flags remove its entry). The node need
    /// not be live: an operator may cordon a node before it starts.
    fn set_node_flags(&self, node: &NodeId, flags: NodeFlags) -> Result<(), StoreError>;

    /// Every node with a flag set, sorted by node.
    fn node_flags(&self) -> Result<Vec<(NodeId, NodeFlags)>, StoreError>;

    // ----- event leases -----

    /// Take ownership of `event` for `node` by the rule of
    /// `acquire_rule`: if nobody holds an unexpired lease, `node` itself
    /// holds it, or the current lease is exactly `over` (a takeover, unexpired
    /// or not). Always bumps the epoch. A refusal names the lease another
    /// node holds, from the one transaction that tried: a node that does
    /// not own an event can say who does.
    fn acquire_event_over(
        &self,
        event: EventId,
        node: &NodeId,
        ttl_ms: u64,
        now: Millis,
        over: Option<&EventLease>,
    ) -> Result<Acquisition, StoreError>;

    /// [`Store::acquire_event_over`] without a takeover.
    fn acquire_event_or_holder(
        &self,
        event: EventId,
        node: &NodeId,
        ttl_ms: u64,
        now: Millis,
    ) -> Result<Acquisition, StoreError> {
        self.acquire_event_over(event, node, ttl_ms, now, None)
    }

    /// [`Store::acquire_event_or_holder`], `None` where another node holds
    /// an unexpired lease.
    fn acquire_event(
        &self,
        event: EventId,
        node: &NodeId,
        ttl_ms: u64,
        now: Millis,
    ) -> Result<Option<EventLease>, StoreError> {
        self.acquire_event_or_holder(event, node, ttl_ms, now)
            .map(Acquisition::acquired)
    }

    /// Extend a lease still current at its epoch. `Fenced` if the epoch
    /// moved on (even if this node took the event again since).
    fn renew_event(
        &self,
        lease: &EventLease,
        ttl_ms: u64,
        now: Millis,
    ) -> Result<EventLease, StoreError>;

    /// Renew many leases at once (a node renews all of its events in one
    /// transaction per tick, not one each): each as [`Store::renew_event`]
    /// would, its own `Fenced` answer beside the others. An error of the
    /// store itself fails the whole batch (nothing renewed).
    fn renew_events(
        &self,
        leases: &[EventLease],
        ttl_ms: u64,
        now: Millis,
    ) -> Result<Vec<Result<EventLease, StoreError>>, StoreError> {
        let mut renewed = Vec::with_capacity(leases.len());
        for lease in leases {
            match self.renew_event(lease, ttl_ms, now) {
                Err(e @ StoreError::Fenced { .. }) => renewed.push(Err(e)),
                Err(e) => return Err(e),
                Ok(lease) => renewed.push(Ok(lease)),
            }
        }
        Ok(renewed)
    }

    /// Give an event up (expire the lease now, keep the epoch).
    fn release_event(&self, lease: &EventLease) -> Result<(), StoreError>;

    /// The current lease of `event`, expired or not.
    fn event_lease(&self, event: EventId) -> Result<Option<EventLease>, StoreError>;

    /// Every event's current lease, expired or not, sorted by event (for
    /// operators' listings: one read, not one per event).
    fn event_leases(&self) -> Result<Vec<EventLease>, StoreError>;

    // ----- an event's durable state (every write fenced) -----

    /// Append journal records (consecutive, ascending). Re-appending a
    /// record with the same seq and bytes is a no-op; different bytes at an
    /// existing seq is a `Conflict`.
    ///
    /// The journal never has holes: seqs start at 1 and the batch must
    /// start at or before the seq after the last stored record (or after
    /// the snapshot's seq), else `Conflict`. Records at or below the
    /// snapshot's seq are already in it and are skipped. A batch over
    /// [`JOURNAL_APPEND_BYTES_MAX`] is a `Conflict`.
    fn append_journal(
        &self,
        lease: &EventLease,
        records: &[JournalBytes],
    ) -> Result<(), StoreError>;

    /// Replace the snapshot with one including journal records up to
    /// `seq`, and delete those records (compaction). A snapshot not newer
    /// than the stored one (`seq` at or below the stored seq) is ignored,
    /// so a retry is a no-op.
    fn put_snapshot(&self, lease: &EventLease, seq: u64, bytes: &[u8]) -> Result<(), StoreError>;

    /// Raise the counter ceiling to at least `ceiling`; returns the stored
    /// ceiling (never lowered).
    fn reserve_counter(&self, lease: &EventLease, ceiling: u64) -> Result<u64, StoreError>;

    /// Everything stored for `event` (empty if nothing), every value
    /// verified against its checksum ([`StoreError::Damaged`] if one
    /// fails) and, where the backend keeps one, against the event's
    /// high-water mark ([`StoreError::Lost`]).
    fn load_event(&self, event: EventId) -> Result<StoredEvent, StoreError>;

    // ----- the change feed (not fenced: the relay is no event's owner) -----

    /// Keep journal records the change feed has not read yet (on), or
    /// compact as if there were no feed (off). Off by default; a relay
    /// turns it on before it reads anything, so that no record written
    /// meanwhile is compacted away unread.
    fn set_feed_retention(&self, on: bool) -> Result<(), StoreError>;

    /// Whether journal records are kept for the change feed.
    fn feed_retention(&self) -> Result<bool, StoreError>;

    /// The feed's cursor in `event`'s journal (`None`: never written).
    fn feed_cursor(&self, event: EventId) -> Result<Option<FeedCursor>, StoreError>;

    /// Store the feed's cursor for `event`, unless the stored one has
    /// published further (two relays, or a late retry, never move it back).
    fn put_feed_cursor(&self, event: EventId, cursor: FeedCursor) -> Result<(), StoreError>;

    /// At most `limit` journal records of `event` with seq above `after`,
    /// ascending: those after the snapshot and, with feed retention on,
    /// those kept below it. Each is verified against its checksum. A first
    /// record above `after + 1` means the ones between were compacted.
    fn read_journal(
        &self,
        event: EventId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<JournalBytes>, StoreError>;

    // ----- operators' desired state -----

    /// Create or replace an event's spec (opaque bytes; see `schema`).
    fn put_event_spec(&self, event: EventId, spec: &[u8]) -> Result<(), StoreError>;

    /// Every event spec, sorted by event. A damaged spec is listed with
    /// its [`Damage`], so that one bad spec does not hide the others.
    fn event_specs(&self) -> Result<Vec<(EventId, SpecBytes)>, StoreError>;
}

/// Refuse a journal batch that is not consecutive and ascending from seq
/// 1 on, or too large. Every backend checks batches with this.
pub(crate) fn check_batch(records: &[JournalBytes]) -> Result<(), StoreError> {
    if records.iter().any(|r| r.seq == 0) {
        return Err(StoreError::Conflict(
            "journal seq 0 is invalid: seqs start at 1".into(),
        ));
    }
    if let Some(pair) = records
        .windows(2)
        .find(|pair| pair[1].seq != pair[0].seq.wrapping_add(1))
    {
        return Err(StoreError::Conflict(format!(
            "journal records not consecutive: seq {} followed by {}",
            pair[0].seq, pair[1].seq
        )));
    }
    let bytes: usize = records.iter().map(|r| r.bytes.len()).sum();
    if bytes > JOURNAL_APPEND_BYTES_MAX {
        return Err(StoreError::Conflict(format!(
            "journal append of {bytes} bytes exceeds {JOURNAL_APPEND_BYTES_MAX}"
        )));
    }
    Ok(())
}
