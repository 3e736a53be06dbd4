//! The production store: FoundationDB (cargo feature `fdb`).
//!
//! **Running it.** The FoundationDB client needs its network thread:
//! create stores and call them inside [`with_network`], once per process
//! (FoundationDB cannot restart its network). Linking needs `libfdb_c`
//! (the FoundationDB client package); building needs `libclang`.
//!
//! **Blocking.** [`Store`] is synchronous; each method blocks the calling
//! thread on the async client with [`futures::executor::block_on`] until
//! its transaction commits (the FoundationDB network thread does the I/O).
//! Call it from a blocking context (e.g. `tokio::task::spawn_blocking`),
//! never from inside an async executor's worker.
//!
//! **Transactions.** Every method is one `Database::run` transaction,
//! retried by the client on conflicts and transient errors, bounded by
//! [`TRANSACTION_TIMEOUT_MS`] and [`TRANSACTION_RETRY_LIMIT`] (then
//! [`StoreError::Unavailable`]). The closures are idempotent and touch no
//! state outside the transaction: a retry after "maybe committed" finds
//! its own write and does the same thing again (re-appending stored
//! records is a no-op; a snapshot at the stored seq is ignored). Fencing
//! is checked inside every write transaction by reading the event's lease
//! key, so a concurrent takeover conflicts with the write and one of the
//! two retries (and then sees the other's result). Business refusals
//! (`Fenced`, `Conflict`) abort the transaction: nothing is written.
//!
//! **Key layout** (tuple-encoded, under a root subspace, `("onsale",)` by
//! default):
//!
//! | key | value |
//! | --- | --- |
//! | `("node", node)` | `(addr, expires_ms)` |
//! | `("lease", event)` | `(node, epoch, expires_ms)` |
//! | `("snap_head", event)` | `(seq, chunk_count, byte_len)` |
//! | `("snap", event, seq, chunk_no)` | snapshot bytes, chunked |
//! | `("journal", event, seq, chunk_no)` | record bytes, chunked |
//! | `("counter", event)` | `ceiling` |
//! | `("spec", event, chunk_no)` | spec bytes, chunked |
//! | `("feed_retention",)` | `1` or `0` |
//! | `("feed_cursor", event)` | `(published, last_message, keep_from)` |
//!
//! **Integrity.** Every snapshot, journal record, spec and counter is
//! stored sealed in a [`super::frame`] (before chunking) and verified when
//! read, as in the embedded store. Values written before frames (no frame
//! magic) are read unverified: this backend has no migration pass. There
//! are no high-water marks here: FoundationDB replicates every commit, so
//! a lost disk does not roll an event back.
//!
//! **Limits.** A value is at most 100 kB: every byte string is split into
//! [`CHUNK_BYTES`] chunks (an empty one is one empty chunk). A transaction
//! writes at most 10 MB: journal batches are bounded by
//! [`super::JOURNAL_APPEND_BYTES_MAX`], and a snapshot larger than
//! [`TRANSACTION_WRITE_BYTES`] is written in several transactions: its
//! chunks first, under its own seq where no reader looks, then the last
//! chunks together with the header that makes it visible. Until that last
//! transaction commits, readers see the previous snapshot whole, so the
//! snapshot still lands whole or not at all; chunks left by a writer that
//! was fenced or crashed half-way are deleted by the next snapshot. An
//! event spec must fit one transaction ([`TRANSACTION_WRITE_BYTES`]).

use std::borrow::Cow;
use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};

use foundationdb::api::{FdbApiBuilder, NetworkAutoStop};
use foundationdb::options::DatabaseOption;
use foundationdb::tuple::{PackError, Subspace, TupleUnpack, pack, unpack};
use foundationdb::{
    Database, FdbBindingError, FdbError, MaybeCommitted, RangeOption, RetryableTransaction,
    Transaction,
};
use futures::TryStreamExt;
use onsale_schema::{EventId, Millis};

use super::frame::{self, Sealed};
use super::{
    Acquisition, Damage, EventLease, FeedCursor, JournalBytes, NodeFlags, NodeId, NodeRecord,
    SpecBytes, Store, StoreError, StoredEvent, acquire_rule, check_batch, compact_bound,
};

/// A value read under (`event`, `seq`): its payload, verified if sealed.
fn unseal(kind: Sealed, event: EventId, seq: Option<u64>, stored: Vec<u8>) -> SpecBytes {
    if !frame::is_framed(&stored) {
        return Ok(stored); // written before frames
    }
    frame::open_owned(kind, event, seq.unwrap_or(0), stored)
        .map_err(|problem| Damage::found(event, kind, seq, problem))
}

/// A stored counter ceiling: sealed, or a bare tuple-packed `u64` written
/// before frames.
fn counter_value(event: EventId, value: &[u8]) -> Result<u64, FdbBindingError> {
    if !frame::is_framed(value) {
        return decode::<u64>(value);
    }
    frame::open_counter(event, value)
        .map_err(|problem| refuse(Damage::found(event, Sealed::Counter, None, problem).into()))
}

/// Largest chunk of a value: FoundationDB refuses values over 100,000
/// bytes.
pub const CHUNK_BYTES: usize = 90_000;

/// Bytes of snapshot chunks written per transaction: FoundationDB refuses
/// transactions over 10,000,000 bytes (keys, values and conflict ranges).
pub const TRANSACTION_WRITE_BYTES: usize = 6_000_000;

/// A transaction (all its retries) gives up after this long.
pub const TRANSACTION_TIMEOUT_MS: i32 = 10_000;

/// A transaction gives up after this many retries.
pub const TRANSACTION_RETRY_LIMIT: i32 = 100;

/// Snapshot chunks per transaction.
const CHUNKS_PER_TRANSACTION: usize = TRANSACTION_WRITE_BYTES / CHUNK_BYTES;

static NETWORK_STARTED: AtomicBool = AtomicBool::new(false);

/// Start the FoundationDB client network, run `f`, then stop the network.
///
/// Create and use every [`FdbStore`] inside `f`, and drop them before it
/// returns. Only one call per process may start the network (FoundationDB
/// cannot restart it); a second call returns `Unavailable` without running
/// `f`. Do not end the process from inside `f` (`std::process::exit`):
/// the network must be stopped before the process exits (a panic unwinds
/// through here and stops it; an abort needs nothing).
pub fn with_network<T>(f: impl FnOnce() -> T) -> Result<T, StoreError> {
    if NETWORK_STARTED.swap(true, Ordering::SeqCst) {
        return Err(StoreError::Unavailable(
            "the FoundationDB network was already started in this process".into(),
        ));
    }
    let network = boot_network()?;
    let out = f();
    drop(network);
    Ok(out)
}

/// The one `unsafe` call of the workspace.
#[allow(unsafe_code)]
fn boot_network() -> Result<NetworkAutoStop, StoreError> {
    let builder = FdbApiBuilder::default().build().map_err(unavailable)?;
    // SAFETY: `boot` requires that the returned guard is dropped before
    // the process exits. Its only caller, `with_network`, holds it on its
    // own stack frame across `f` and drops it when `f` returns or unwinds;
    // the guard never escapes (it cannot be leaked or stored in a static).
    unsafe { builder.boot() }.map_err(unavailable)
}

/// A [`Store`] in a FoundationDB cluster. See the module docs.
pub struct FdbStore {
    db: Database,
    root: Subspace,
    /// For `Debug`: the cluster file and root given to `open`.
    name: String,
}

impl fmt::Debug for FdbStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FdbStore")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl FdbStore {
    /// Connect through `cluster_file` (FoundationDB's default file if
    /// `None`), keeping everything under the subspace `("onsale",)`. Call
    /// inside [`with_network`].
    pub fn open(cluster_file: Option<&str>) -> Result<FdbStore, StoreError> {
        FdbStore::open_under(cluster_file, "onsale")
    }

    /// As [`FdbStore::open`], under the subspace `(root,)`: separate roots
    /// are separate stores in one cluster (tests use a fresh root each).
    pub fn open_under(cluster_file: Option<&str>, root: &str) -> Result<FdbStore, StoreError> {
        let db = Database::new(cluster_file).map_err(unavailable)?;
        db.set_option(DatabaseOption::TransactionTimeout(TRANSACTION_TIMEOUT_MS))
            .map_err(unavailable)?;
        db.set_option(DatabaseOption::TransactionRetryLimit(
            TRANSACTION_RETRY_LIMIT,
        ))
        .map_err(unavailable)?;
        Ok(FdbStore {
            db,
            root: Subspace::all().subspace(&(root,)),
            name: format!(
                "{}/{root}",
                cluster_file.unwrap_or("(default cluster file)")
            ),
        })
    }

    /// Delete everything under this store's root. For tests.
    pub fn clear_all(&self) -> Result<(), StoreError> {
        let root = &self.root;
        self.run(|trx, _| async move {
            trx.clear_subspace_range(root);
            Ok(())
        })
    }

    /// One transaction, retried by the client; blocks until it commits.
    fn run<T, F, Fut>(&self, closure: F) -> Result<T, StoreError>
    where
        F: Fn(RetryableTransaction, MaybeCommitted) -> Fut,
        Fut: Future<Output = Result<T, FdbBindingError>>,
    {
        futures::executor::block_on(self.db.run(closure)).map_err(binding_error)
    }

    fn keys(&self, event: EventId) -> EventKeys {
        EventKeys::new(&self.root, event)
    }
}

/// The keys of one event.
struct EventKeys {
    event: EventId,
    lease: Vec<u8>,
    snap_head: Vec<u8>,
    /// `("snap", event)`: chunks of every stored or staged snapshot.
    snaps: Subspace,
    /// `("journal", event)`.
    journal: Subspace,
    counter: Vec<u8>,
    feed_cursor: Vec<u8>,
    feed_retention: Vec<u8>,
}

impl EventKeys {
    fn new(root: &Subspace, event: EventId) -> EventKeys {
        EventKeys {
            feed_cursor: root.pack(&("feed_cursor", event.0)),
            feed_retention: root.pack(&("feed_retention",)),
            event,
            lease: root.pack(&("lease", event.0)),
            snap_head: root.pack(&("snap_head", event.0)),
            snaps: root.subspace(&("snap", event.0)),
            journal: root.subspace(&("journal", event.0)),
            counter: root.pack(&("counter", event.0)),
        }
    }

    fn snap(&self, seq: u64) -> Subspace {
        self.snaps.subspace(&seq)
    }

    fn record(&self, seq: u64) -> Subspace {
        self.journal.subspace(&seq)
    }
}

/// The stored snapshot header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct SnapHead {
    seq: u64,
    chunks: u64,
    len: u64,
}

// ----- errors -----

fn unavailable(e: FdbError) -> StoreError {
    StoreError::Unavailable(format!("FoundationDB error {}: {e}", e.code()))
}

/// Abort the transaction with a business outcome (nothing is written).
fn refuse(e: StoreError) -> FdbBindingError {
    FdbBindingError::new_custom_error(Box::new(e))
}

fn corrupt(what: impl fmt::Display) -> FdbBindingError {
    refuse(StoreError::Corrupt(what.to_string()))
}

fn bad_tuple(key: &[u8], e: PackError) -> FdbBindingError {
    corrupt(format!("undecodable key or value {key:?}: {e}"))
}

fn binding_error(e: FdbBindingError) -> StoreError {
    match e {
        FdbBindingError::CustomError(inner) => match inner.downcast::<StoreError>() {
            Ok(store_error) => *store_error,
            Err(other) => StoreError::Unavailable(other.to_string()),
        },
        FdbBindingError::PackError(e) => StoreError::Corrupt(e.to_string()),
        other => match other.get_fdb_error() {
            Some(e) => unavailable(e),
            None => StoreError::Unavailable(other.to_string()),
        },
    }
}

// ----- reads and writes inside a transaction -----

fn decode<'de, T: TupleUnpack<'de>>(bytes: &'de [u8]) -> Result<T, FdbBindingError> {
    unpack(bytes).map_err(|e| bad_tuple(bytes, e))
}

/// Every key-value pair in `[begin, end)`, ascending.
async fn read_range(
    trx: &Transaction,
    (begin, end): (Vec<u8>, Vec<u8>),
) -> Result<Vec<(Vec<u8>, Vec<u8>)>, FdbBindingError> {
    let kvs: Vec<_> = trx
        .get_ranges_keyvalues(RangeOption::from((begin, end)), false)
        .try_collect()
        .await?;
    Ok(kvs
        .iter()
        .map(|kv| (kv.key().to_vec(), kv.value().to_vec()))
        .collect())
}

/// The chunks of one value: at least one, so that an empty value exists.
fn chunks_of(bytes: &[u8]) -> Vec<&[u8]> {
    if bytes.is_empty() {
        vec![bytes]
    } else {
        bytes.chunks(CHUNK_BYTES).collect()
    }
}

fn write_chunks(trx: &Transaction, under: &Subspace, bytes: &[u8]) {
    for (chunk_no, chunk) in chunks_of(bytes).into_iter().enumerate() {
        trx.set(&under.pack(&(chunk_no as u64)), chunk);
    }
}

/// Join chunks `0, 1, 2, ...` read from `under`.
async fn read_chunks(trx: &Transaction, under: &Subspace) -> Result<Vec<u8>, FdbBindingError> {
    let mut bytes = Vec::new();
    for (expected, (key, value)) in (0_u64..).zip(read_range(trx, under.range()).await?) {
        let chunk_no: u64 = under.unpack(&key).map_err(|e| bad_tuple(&key, e))?;
        if chunk_no != expected {
            return Err(corrupt(format!(
                "chunk {expected} missing under {:?}",
                under.bytes()
            )));
        }
        bytes.extend_from_slice(&value);
    }
    Ok(bytes)
}

async fn lease_of(
    trx: &Transaction,
    keys: &EventKeys,
) -> Result<Option<EventLease>, FdbBindingError> {
    let Some(value) = trx.get(&keys.lease, false).await? else {
        return Ok(None);
    };
    let (node, epoch, expires): (Cow<'_, str>, u64, u64) = decode(&value)?;
    Ok(Some(EventLease {
        event: keys.event,
        node: NodeId(node.into_owned()),
        epoch,
        expires: Millis(expires),
    }))
}

fn set_lease(trx: &Transaction, keys: &EventKeys, lease: &EventLease) {
    trx.set(
        &keys.lease,
        &pack(&(lease.node.0.as_str(), lease.epoch, lease.expires.0)),
    );
}

/// `Fenced` unless `lease` is the event's current lease. The lease key is
/// read without `snapshot`, so a concurrent takeover conflicts with this
/// transaction.
async fn check_fence(
    trx: &Transaction,
    keys: &EventKeys,
    lease: &EventLease,
) -> Result<(), FdbBindingError> {
    match lease_of(trx, keys).await? {
        Some(current) if current.epoch == lease.epoch && current.node == lease.node => Ok(()),
        _ => Err(refuse(StoreError::Fenced {
            event: lease.event,
            epoch: lease.epoch,
        })),
    }
}

async fn snap_head(
    trx: &Transaction,
    keys: &EventKeys,
) -> Result<Option<SnapHead>, FdbBindingError> {
    let Some(value) = trx.get(&keys.snap_head, false).await? else {
        return Ok(None);
    };
    let (seq, chunks, len): (u64, u64, u64) = decode(&value)?;
    Ok(Some(SnapHead { seq, chunks, len }))
}

/// The seq of the last journal record, if any.
async fn last_journal_seq(
    trx: &Transaction,
    keys: &EventKeys,
) -> Result<Option<u64>, FdbBindingError> {
    let opt = RangeOption {
        limit: Some(1),
        reverse: true,
        ..RangeOption::from(keys.journal.range())
    };
    let last = trx.get_range(&opt, 1, false).await?;
    let Some(kv) = last.first() else {
        return Ok(None);
    };
    let (seq, _chunk_no): (u64, u64) = keys
        .journal
        .unpack(kv.key())
        .map_err(|e| bad_tuple(kv.key(), e))?;
    Ok(Some(seq))
}

/// Journal records with keys in `range` (within `("journal", event)`),
/// ascending, chunks joined.
async fn read_journal(
    trx: &Transaction,
    keys: &EventKeys,
    range: (Vec<u8>, Vec<u8>),
) -> Result<Vec<JournalBytes>, FdbBindingError> {
    let mut records: Vec<JournalBytes> = Vec::new();
    let mut next_chunk = 0;
    for (key, value) in read_range(trx, range).await? {
        let (seq, chunk_no): (u64, u64) =
            keys.journal.unpack(&key).map_err(|e| bad_tuple(&key, e))?;
        match records.last_mut() {
            Some(last) if last.seq == seq && chunk_no == next_chunk => {
                last.bytes.extend_from_slice(&value);
            }
            _ if chunk_no == 0 => records.push(JournalBytes { seq, bytes: value }),
            _ => {
                return Err(corrupt(format!(
                    "{}: journal seq {seq} misses chunks",
                    keys.event
                )));
            }
        }
        next_chunk = chunk_no + 1;
    }
    Ok(records)
}

/// `snapshot`: read without a conflict range (the owner's snapshot write
/// reads the feed's keys so; a relay's cursor write must not make it
/// retry, and a stale cursor only keeps more records).
async fn feed_retention(
    trx: &Transaction,
    keys: &EventKeys,
    snapshot: bool,
) -> Result<bool, FdbBindingError> {
    match trx.get(&keys.feed_retention, snapshot).await? {
        Some(value) => Ok(decode::<u64>(&value)? != 0),
        None => Ok(false),
    }
}

async fn feed_cursor(
    trx: &Transaction,
    keys: &EventKeys,
    snapshot: bool,
) -> Result<Option<FeedCursor>, FdbBindingError> {
    let Some(value) = trx.get(&keys.feed_cursor, snapshot).await? else {
        return Ok(None);
    };
    let (published, last_message, keep_from): (u64, u64, u64) = decode(&value)?;
    Ok(Some(FeedCursor {
        published,
        last_message,
        keep_from,
    }))
}

/// Snapshot chunks `first..` of `bytes` for `seq`, as written by one
/// staging transaction.
fn write_snapshot_chunks(
    trx: &Transaction,
    keys: &EventKeys,
    seq: u64,
    chunks: &[&[u8]],
    first: usize,
) {
    let under = keys.snap(seq);
    for (chunk_no, chunk) in (first..).zip(chunks) {
        trx.set(&under.pack(&(chunk_no as u64)), chunk);
    }
}

impl Store for FdbStore {
    fn backend(&self) -> &'static str {
        "foundationdb"
    }

    fn heartbeat_node(
        &self,
        node: &NodeId,
        addr: &str,
        ttl_ms: u64,
        now: Millis,
    ) -> Result<(), StoreError> {
        let key = self.root.pack(&("node", node.0.as_str()));
        let value = pack(&(addr, now.saturating_add_ms(ttl_ms).0));
        self.run(|trx, _| {
            let (key, value) = (&key, &value);
            async move {
                trx.set(key, value);
                Ok(())
            }
        })
    }

    fn nodes(&self) -> Result<Vec<NodeRecord>, StoreError> {
        let nodes = self.root.subspace(&("node",));
        let mut all = self.run(|trx, _| {
            let nodes = &nodes;
            async move {
                let mut all = Vec::new();
                for (key, value) in read_range(&trx, nodes.range()).await? {
                    let name: Cow<'_, str> = nodes.unpack(&key).map_err(|e| bad_tuple(&key, e))?;
                    let (addr, expires): (Cow<'_, str>, u64) = decode(&value)?;
                    all.push(NodeRecord {
                        node: NodeId(name.into_owned()),
                        addr: addr.into_owned(),
                        expires: Millis(expires),
                    });
                }
                Ok(all)
            }
        })?;
        all.sort_by(|a, b| a.node.cmp(&b.node));
        Ok(all)
    }

    fn forget_node(&self, node: &NodeId) -> Result<(), StoreError> {
        let keys = [
            self.root.pack(&("node", node.0.as_str())),
            self.root.pack(&("node_flags", node.0.as_str())),
        ];
        self.run(|trx, _| {
            let keys = &keys;
            async move {
                for key in keys {
                    trx.clear(key);
                }
                Ok(())
            }
        })
    }

    fn set_node_flags(&self, node: &NodeId, flags: NodeFlags) -> Result<(), StoreError> {
        let key = self.root.pack(&("node_flags", node.0.as_str()));
        let value = pack(&(u64::from(flags.cordoned), u64::from(flags.draining)));
        self.run(|trx, _| {
            let (key, value) = (&key, &value);
            async move {
                if flags.is_clear() {
                    trx.clear(key);
                } else {
                    trx.set(key, value);
                }
                Ok(())
            }
        })
    }

    fn node_flags(&self) -> Result<Vec<(NodeId, NodeFlags)>, StoreError> {
        let under = self.root.subspace(&("node_flags",));
        self.run(|trx, _| {
            let under = &under;
            async move {
                let mut flagged = Vec::new();
                for (key, value) in read_range(&trx, under.range()).await? {
                    let name: Cow<'_, str> = under.unpack(&key).map_err(|e| bad_tuple(&key, e))?;
                    let (cordoned, draining): (u64, u64) = decode(&value)?;
                    flagged.push((
                        NodeId(name.into_owned()),
                        NodeFlags {
                            cordoned: cordoned != 0,
                            draining: draining != 0,
                        },
                    ));
                }
                Ok(flagged)
            }
        })
    }

    fn acquire_event_over(
        &self,
        event: EventId,
        node: &NodeId,
        ttl_ms: u64,
        now: Millis,
        over: Option<&EventLease>,
    ) -> Result<Acquisition, StoreError> {
        let keys = self.keys(event);
        self.run(|trx, _| {
            let keys = &keys;
            async move {
                let current = lease_of(&trx, keys).await?;
                let acquisition =
                    acquire_rule(current, event, node, ttl_ms, now, over).map_err(refuse)?;
                if let Acquisition::Acquired(lease) = &acquisition {
                    set_lease(&trx, keys, lease);
                }
                Ok(acquisition)
            }
        })
    }

    fn renew_event(
        &self,
        lease: &EventLease,
        ttl_ms: u64,
        now: Millis,
    ) -> Result<EventLease, StoreError> {
        let keys = self.keys(lease.event);
        let renewed = EventLease {
            expires: now.saturating_add_ms(ttl_ms),
            ..lease.clone()
        };
        self.run(|trx, _| {
            let (keys, renewed) = (&keys, &renewed);
            async move {
                check_fence(&trx, keys, lease).await?;
                set_lease(&trx, keys, renewed);
                Ok(())
            }
        })?;
        Ok(renewed)
    }

    fn renew_events(
        &self,
        leases: &[EventLease],
        ttl_ms: u64,
        now: Millis,
    ) -> Result<Vec<Result<EventLease, StoreError>>, StoreError> {
        let keys: Vec<EventKeys> = leases.iter().map(|l| self.keys(l.event)).collect();
        let expires = now.saturating_add_ms(ttl_ms);
        self.run(|trx, _| {
            let keys = &keys;
            async move {
                // Every lease read at once (one round trip, not one each).
                let current =
                    futures::future::try_join_all(keys.iter().map(|k| lease_of(&trx, k))).await?;
                let mut renewed = Vec::with_capacity(leases.len());
                for ((lease, keys), current) in leases.iter().zip(keys).zip(current) {
                    match current {
                        Some(c) if c.epoch == lease.epoch && c.node == lease.node => {
                            let lease = EventLease {
                                expires,
                                ..lease.clone()
                            };
                            set_lease(&trx, keys, &lease);
                            renewed.push(Ok(lease));
                        }
                        _ => renewed.push(Err(StoreError::Fenced {
                            event: lease.event,
                            epoch: lease.epoch,
                        })),
                    }
                }
                Ok(renewed)
            }
        })
    }

    fn release_event(&self, lease: &EventLease) -> Result<(), StoreError> {
        let keys = self.keys(lease.event);
        let released = EventLease {
            expires: Millis(0),
            ..lease.clone()
        };
        self.run(|trx, _| {
            let (keys, released) = (&keys, &released);
            async move {
                check_fence(&trx, keys, lease).await?;
                set_lease(&trx, keys, released);
                Ok(())
            }
        })
    }

    fn event_lease(&self, event: EventId) -> Result<Option<EventLease>, StoreError> {
        let keys = self.keys(event);
        self.run(|trx, _| {
            let keys = &keys;
            async move { lease_of(&trx, keys).await }
        })
    }

    fn event_leases(&self) -> Result<Vec<EventLease>, StoreError> {
        let under = self.root.subspace(&("lease",));
        self.run(|trx, _| {
            let under = &under;
            async move {
                let mut leases = Vec::new();
                for (key, value) in read_range(&trx, under.range()).await? {
                    let event: u64 = under.unpack(&key).map_err(|e| bad_tuple(&key, e))?;
                    let (node, epoch, expires): (Cow<'_, str>, u64, u64) = decode(&value)?;
                    leases.push(EventLease {
                        event: EventId(event),
                        node: NodeId(node.into_owned()),
                        epoch,
                        expires: Millis(expires),
                    });
                }
                Ok(leases)
            }
        })
    }

    fn append_journal(
        &self,
        lease: &EventLease,
        records: &[JournalBytes],
    ) -> Result<(), StoreError> {
        check_batch(records)?;
        let sealed: Vec<JournalBytes> = records
            .iter()
            .map(|r| JournalBytes {
                seq: r.seq,
                bytes: frame::seal(Sealed::JournalRecord, lease.event, r.seq, &r.bytes),
            })
            .collect();
        let records = &sealed[..];
        let keys = self.keys(lease.event);
        self.run(|trx, _| {
            let keys = &keys;
            async move {
                check_fence(&trx, keys, lease).await?;
                let (Some(first), Some(last_new)) = (records.first(), records.last()) else {
                    return Ok(());
                };
                let snapshot = snap_head(&trx, keys).await?.map_or(0, |head| head.seq);
                let last = last_journal_seq(&trx, keys)
                    .await?
                    .unwrap_or(0)
                    .max(snapshot);
                if first.seq > last.saturating_add(1) {
                    return Err(refuse(StoreError::Conflict(format!(
                        "{}: journal gap: next seq is {}, got {}",
                        lease.event,
                        last.saturating_add(1),
                        first.seq
                    ))));
                }
                // Records already stored (a retry): same bytes or a conflict.
                let overlap_from = first.seq.max(snapshot.saturating_add(1));
                let overlap_to = last_new.seq.min(last);
                if overlap_from <= overlap_to {
                    let range = (
                        keys.record(overlap_from).range().0,
                        keys.record(overlap_to).range().1,
                    );
                    let stored = read_journal(&trx, keys, range).await?;
                    let offered = records
                        .iter()
                        .filter(|r| (overlap_from..=overlap_to).contains(&r.seq));
                    if stored.len() as u64 != overlap_to - overlap_from + 1 {
                        return Err(corrupt(format!(
                            "{}: journal has holes below {last}",
                            lease.event
                        )));
                    }
                    for (stored, offered) in stored.iter().zip(offered) {
                        if stored != offered {
                            return Err(refuse(StoreError::Conflict(format!(
                                "{}: journal seq {} already holds different bytes",
                                lease.event, offered.seq
                            ))));
                        }
                    }
                }
                for record in records.iter().filter(|r| r.seq > last) {
                    write_chunks(&trx, &keys.record(record.seq), &record.bytes);
                }
                Ok(())
            }
        })
    }

    fn put_snapshot(&self, lease: &EventLease, seq: u64, bytes: &[u8]) -> Result<(), StoreError> {
        let sealed = frame::seal(Sealed::Snapshot, lease.event, seq, bytes);
        let bytes = &sealed[..];
        let keys = self.keys(lease.event);
        let chunks = chunks_of(bytes);
        let head = SnapHead {
            seq,
            chunks: chunks.len() as u64,
            len: bytes.len() as u64,
        };
        let groups: Vec<&[&[u8]]> = chunks.chunks(CHUNKS_PER_TRANSACTION).collect();
        let (last_group, staged) = groups
            .split_last()
            .expect("chunks_of gives at least one chunk");

        // Stage all but the last group of chunks, each in its own fenced
        // transaction, under this seq where no reader looks yet.
        let mut first = 0;
        for group in staged {
            let ignored = self.run(|trx, _| {
                let keys = &keys;
                async move {
                    check_fence(&trx, keys, lease).await?;
                    if snap_head(&trx, keys)
                        .await?
                        .is_some_and(|stored| seq <= stored.seq)
                    {
                        return Ok(true);
                    }
                    if first == 0 {
                        // Chunks of an earlier attempt that never finished.
                        trx.clear_subspace_range(&keys.snap(seq));
                    }
                    write_snapshot_chunks(&trx, keys, seq, group, first);
                    Ok(false)
                }
            })?;
            if ignored {
                return Ok(());
            }
            first += group.len();
        }

        // The last group, the header, and compaction: the snapshot appears
        // whole, the previous one and the journal up to `seq` disappear.
        self.run(|trx, _| {
            let keys = &keys;
            async move {
                check_fence(&trx, keys, lease).await?;
                if snap_head(&trx, keys)
                    .await?
                    .is_some_and(|stored| seq <= stored.seq)
                {
                    return Ok(());
                }
                let this = keys.snap(seq).range();
                let all = keys.snaps.range();
                trx.clear_range(&all.0, &this.0);
                trx.clear_range(&this.1, &all.1);
                if first == 0 {
                    trx.clear_range(&this.0, &this.1);
                }
                write_snapshot_chunks(&trx, keys, seq, last_group, first);
                let retention = feed_retention(&trx, keys, true).await?;
                let through = compact_bound(seq, retention, feed_cursor(&trx, keys, true).await?);
                if through > 0 {
                    trx.clear_range(&keys.journal.range().0, &keys.record(through).range().1);
                }
                trx.set(&keys.snap_head, &pack(&(head.seq, head.chunks, head.len)));
                Ok(())
            }
        })
    }

    fn reserve_counter(&self, lease: &EventLease, ceiling: u64) -> Result<u64, StoreError> {
        let keys = self.keys(lease.event);
        self.run(|trx, _| {
            let keys = &keys;
            async move {
                check_fence(&trx, keys, lease).await?;
                let stored = match trx.get(&keys.counter, false).await? {
                    Some(value) => counter_value(keys.event, &value)?,
                    None => 0,
                };
                if ceiling <= stored {
                    return Ok(stored);
                }
                trx.set(&keys.counter, &frame::seal_counter(keys.event, ceiling));
                Ok(ceiling)
            }
        })
    }

    fn load_event(&self, event: EventId) -> Result<StoredEvent, StoreError> {
        let keys = self.keys(event);
        let stored = self.run(|trx, _| {
            let keys = &keys;
            async move {
                let snapshot = match snap_head(&trx, keys).await? {
                    None => None,
                    Some(head) => {
                        let bytes = read_chunks(&trx, &keys.snap(head.seq)).await?;
                        let chunks = bytes.len().div_ceil(CHUNK_BYTES).max(1) as u64;
                        if bytes.len() as u64 != head.len || chunks != head.chunks {
                            return Err(corrupt(format!(
                                "{event}: snapshot at seq {} has {} bytes, header says {head:?}",
                                head.seq,
                                bytes.len()
                            )));
                        }
                        Some((head.seq, bytes))
                    }
                };
                let after = match &snapshot {
                    // Everything after the snapshot's seq (all of `journal`
                    // sorts after `record(seq)`'s keys).
                    Some((seq, _)) => keys.record(*seq).range().1,
                    None => keys.journal.range().0,
                };
                let journal = read_journal(&trx, keys, (after, keys.journal.range().1)).await?;
                let counter_ceiling = match trx.get(&keys.counter, false).await? {
                    Some(value) => counter_value(event, &value)?,
                    None => 0,
                };
                Ok(StoredEvent {
                    snapshot,
                    journal,
                    counter_ceiling,
                })
            }
        })?;
        let snapshot = match stored.snapshot {
            Some((seq, bytes)) => Some((seq, unseal(Sealed::Snapshot, event, Some(seq), bytes)?)),
            None => None,
        };
        let journal = stored
            .journal
            .into_iter()
            .map(|r| {
                let bytes = unseal(Sealed::JournalRecord, event, Some(r.seq), r.bytes)?;
                Ok(JournalBytes { seq: r.seq, bytes })
            })
            .collect::<Result<_, StoreError>>()?;
        Ok(StoredEvent {
            snapshot,
            journal,
            counter_ceiling: stored.counter_ceiling,
        })
    }

    fn set_feed_retention(&self, on: bool) -> Result<(), StoreError> {
        let key = self.root.pack(&("feed_retention",));
        self.run(|trx, _| {
            let key = &key;
            async move {
                trx.set(key, &pack(&u64::from(on)));
                Ok(())
            }
        })
    }

    fn feed_retention(&self) -> Result<bool, StoreError> {
        let keys = self.keys(EventId(0));
        self.run(|trx, _| {
            let keys = &keys;
            async move { feed_retention(&trx, keys, false).await }
        })
    }

    fn feed_cursor(&self, event: EventId) -> Result<Option<FeedCursor>, StoreError> {
        let keys = self.keys(event);
        self.run(|trx, _| {
            let keys = &keys;
            async move { feed_cursor(&trx, keys, false).await }
        })
    }

    fn put_feed_cursor(&self, event: EventId, cursor: FeedCursor) -> Result<(), StoreError> {
        let keys = self.keys(event);
        self.run(|trx, _| {
            let keys = &keys;
            async move {
                if feed_cursor(&trx, keys, false)
                    .await?
                    .is_some_and(|stored| stored.published > cursor.published)
                {
                    return Ok(());
                }
                let value = (cursor.published, cursor.last_message, cursor.keep_from);
                trx.set(&keys.feed_cursor, &pack(&value));
                Ok(())
            }
        })
    }

    fn read_journal(
        &self,
        event: EventId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<JournalBytes>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let keys = self.keys(event);
        let records = self.run(|trx, _| {
            let keys = &keys;
            async move {
                // The oldest record kept above `after` (compaction may have
                // taken the ones just above it); seqs have no holes from
                // there on, so `limit` seqs are at most `limit` records.
                let opt = RangeOption {
                    limit: Some(1),
                    ..RangeOption::from((keys.record(after).range().1, keys.journal.range().1))
                };
                let first = trx.get_range(&opt, 1, false).await?;
                let Some(kv) = first.first() else {
                    return Ok(Vec::new());
                };
                let (from, _chunk_no): (u64, u64) = keys
                    .journal
                    .unpack(kv.key())
                    .map_err(|e| bad_tuple(kv.key(), e))?;
                let last = from.saturating_add(limit as u64 - 1);
                let range = (keys.record(from).range().0, keys.record(last).range().1);
                read_journal(&trx, keys, range).await
            }
        })?;
        records
            .into_iter()
            .map(|r| {
                let bytes = unseal(Sealed::JournalRecord, event, Some(r.seq), r.bytes)?;
                Ok(JournalBytes { seq: r.seq, bytes })
            })
            .collect()
    }

    fn put_event_spec(&self, event: EventId, spec: &[u8]) -> Result<(), StoreError> {
        if spec.len() > TRANSACTION_WRITE_BYTES {
            return Err(StoreError::Conflict(format!(
                "{event}: spec of {} bytes exceeds the FoundationDB store's {TRANSACTION_WRITE_BYTES}",
                spec.len()
            )));
        }
        let sealed = frame::seal(Sealed::Spec, event, 0, spec);
        let spec = &sealed[..];
        let under = self.root.subspace(&("spec", event.0));
        self.run(|trx, _| {
            let under = &under;
            async move {
                trx.clear_subspace_range(under);
                write_chunks(&trx, under, spec);
                Ok(())
            }
        })
    }

    fn event_specs(&self) -> Result<Vec<(EventId, SpecBytes)>, StoreError> {
        let specs = self.root.subspace(&("spec",));
        let stored = self.run(|trx, _| {
            let specs = &specs;
            async move {
                let mut out: Vec<(EventId, Vec<u8>)> = Vec::new();
                for (key, value) in read_range(&trx, specs.range()).await? {
                    let (event, chunk_no): (u64, u64) =
                        specs.unpack(&key).map_err(|e| bad_tuple(&key, e))?;
                    match out.last_mut() {
                        Some((last, bytes)) if last.0 == event => bytes.extend_from_slice(&value),
                        _ if chunk_no == 0 => out.push((EventId(event), value)),
                        _ => return Err(corrupt(format!("spec of event-{event} lacks chunk 0"))),
                    }
                }
                Ok(out)
            }
        })?;
        Ok(stored
            .into_iter()
            .map(|(event, bytes)| (event, unseal(Sealed::Spec, event, None, bytes)))
            .collect())
    }
}
