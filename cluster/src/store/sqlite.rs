//! The embedded store: one SQLite file (or memory), the default for a
//! single-machine run.
//!
//! Several processes on one host may open the same file: the database runs
//! in WAL mode (readers never block the writer), every write is one
//! `BEGIN IMMEDIATE` transaction (the write lock is taken before anything
//! is read, so a check-then-write cannot interleave with another
//! process's), and a busy timeout makes a process wait for another's write
//! instead of failing at once. `synchronous=FULL` makes every commit
//! durable before it returns; batching many journal records into one
//! [`Store::append_journal`] call is what makes that fast (group commit).
//!
//! **Compaction is amortised.** A snapshot does not delete the journal
//! records it includes at once: deleting a snapshot interval's worth
//! (50,000 records by default) took ~15 ms in one transaction, stalling
//! every journal commit queued behind it. Instead each later append deletes
//! up to `COMPACT_ROWS_PER_RECORD` × its records (at least
//! `COMPACT_ROWS_MIN`), oldest first, so the backlog shrinks faster than
//! the journal grows. Records at or below the snapshot are never read or
//! compared again, so this is invisible through [`Store`]; an event that
//! falls idle right after a snapshot keeps them on disk until it writes.
//!
//! **Integrity.** Every snapshot, journal record, spec and counter ceiling
//! is stored sealed in a [`frame`] (checksum over the bytes and the key)
//! and verified on every read before anything is decoded; a mismatch is
//! [`StoreError::Damaged`]. Each file store keeps per-event high-water
//! marks beside it ([`marks`]); an event loaded shorter than its mark is
//! [`StoreError::Lost`]. Each store has an identity, made when the file is
//! first initialised (see [`super::open`]).
//!
//! **Schema versions.** 1: values stored bare. 2: values sealed, counters
//! sealed in a `sealed` column, an identity in `meta`. Opening a version 1
//! file seals every stored value once, in the opening transaction.
//!
//! **Integers.** SQLite stores signed 64-bit integers. Event ids, epochs,
//! expiry times and counter ceilings are stored bit-cast (`u64 as i64`,
//! exact both ways) and compared in Rust, never in SQL. Journal and
//! snapshot sequence numbers are compared in SQL, so they must be at most
//! `i64::MAX`; a larger one is refused with [`StoreError::Conflict`].

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use onsale_schema::{EventId, Millis};
use rusqlite::{Connection, ErrorCode, OptionalExtension, Transaction, TransactionBehavior};

use super::frame::{self, FrameError, Sealed};
use super::marks::{Mark, Marks};
use super::{
    Acquisition, Damage, EventLease, FeedCursor, JournalBytes, Lost, NodeFlags, NodeId, NodeRecord,
    SpecBytes, Store, StoreError, StoredEvent, acquire_rule, check_batch, compact_bound,
};

/// The schema this build writes. Bump it with a migration in
/// [`SqliteStore::init_schema`]; a file with a newer version is refused.
///
/// - 2: every value sealed in a frame.
/// - 3: the change feed's cursors (`feed_cursors`) and retention flag: a
///   build before it would compact away records the feed has not read,
///   so it must not open such a store.
pub const SCHEMA_VERSION: i64 = 3;

/// How long a write waits for another process's write before giving up
/// with [`StoreError::Unavailable`].
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Prepared statements kept per connection (more than this module uses).
const STATEMENT_CACHE_CAPACITY: usize = 64;

/// Journal records folded into a snapshot that one append deletes, per
/// record it appends (see the module docs). Deleting costs ~0.3 µs a row.
const COMPACT_ROWS_PER_RECORD: u64 = 2;
/// ... and at least this many, so that small appends still make progress.
const COMPACT_ROWS_MIN: u64 = 64;

/// Why a store file could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error(
        "{path}: store schema version {found} is newer than this build supports ({supported}); \
         run a newer onsale or use another file"
    )]
    NewerSchema {
        path: String,
        found: i64,
        supported: i64,
    },
    #[error("{path}: {source}")]
    Store {
        path: String,
        #[source]
        source: StoreError,
    },
    #[error("{path}: {why}; to create a new store there, start with --init")]
    NotAStore { path: String, why: String },
    #[error("{path}: {why}; the store file is damaged or truncated, restore it from a backup")]
    Damaged { path: String, why: String },
    #[error(
        "{path}: this store's identity is {found:016x}, but the store that was here \
         ({marks}) had {expected:016x}: another store was put in its place"
    )]
    Foreign {
        path: String,
        found: u64,
        expected: u64,
        marks: String,
    },
    #[error("{path}: high-water marks: {source}")]
    Marks {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// A [`Store`] in one SQLite database. See the module docs.
pub struct SqliteStore {
    /// One connection per store: a process has one writer anyway, and
    /// SQLite serialises writers across processes.
    conn: Mutex<Connection>,
    /// For `Debug` and error messages: the file, or `:memory:`.
    path: String,
    /// Made once, when the file was first initialised.
    identity: u64,
    /// High-water marks beside a file store (none in memory).
    marks: Option<Marks>,
}

impl fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Open (creating if missing) the store in the file at `path`. Other
    /// processes may open the same file at the same time.
    ///
    /// This creates a store wherever there is none, even in an empty file
    /// where one was expected: a node starting on its store should use
    /// [`super::open::open_store`], which refuses that unless told to init.
    pub fn open(path: impl AsRef<Path>) -> Result<SqliteStore, OpenError> {
        SqliteStore::open_file(path.as_ref(), true)
    }

    /// Open the store at `path`; if `create`, make one where there is none,
    /// else refuse with [`OpenError::NotAStore`].
    pub(crate) fn open_file(path: &Path, create: bool) -> Result<SqliteStore, OpenError> {
        let path: PathBuf = path.to_path_buf();
        let name = path.display().to_string();
        let conn = Connection::open(&path).map_err(|e| open_error(&name, e))?;
        let mut store = SqliteStore::init(conn, name.clone(), create)?;
        let marks = Marks::open(&path, store.identity)
            .map_err(|source| OpenError::Marks { path: name, source })?;
        store.marks = Some(marks);
        Ok(store)
    }

    /// A second connection to an existing store for the change feed's
    /// relay, beside a node in the same process: its reads never wait for
    /// the node's connection, and its commits (cursors only) are not
    /// fsynced (`synchronous=NORMAL`: they survive the process being
    /// killed; a power loss may lose the latest, and the messages after an
    /// older cursor are published again, for the broker to drop).
    pub fn open_for_feed(path: impl AsRef<Path>) -> Result<SqliteStore, OpenError> {
        let store = SqliteStore::open_file(path.as_ref(), false)?;
        store
            .conn
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pragma_update(None, "synchronous", "NORMAL")
            .map_err(|e| open_error(&store.path, e))?;
        Ok(store)
    }

    /// A private store in memory, gone when dropped. Cannot be shared with
    /// another process (or another `SqliteStore`): for quick tests only.
    pub fn open_in_memory() -> Result<SqliteStore, OpenError> {
        let name = ":memory:".to_owned();
        let conn = Connection::open_in_memory().map_err(|e| open_error(&name, e))?;
        SqliteStore::init(conn, name, true)
    }

    /// This store's identity (made once, when it was initialised).
    #[must_use]
    pub fn identity(&self) -> u64 {
        self.identity
    }

    /// The file (or `:memory:`).
    #[must_use]
    pub fn path(&self) -> &str {
        &self.path
    }

    fn init(mut conn: Connection, path: String, create: bool) -> Result<SqliteStore, OpenError> {
        let configure = |conn: &Connection| -> rusqlite::Result<()> {
            // Before anything else, so that switching to WAL waits for a
            // process that is opening the same file.
            conn.busy_timeout(BUSY_TIMEOUT)?;
            // `journal_mode` answers with the mode in force: "wal" for a
            // file, "memory" for an in-memory database.
            let _mode: String =
                conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
            conn.pragma_update(None, "synchronous", "FULL")?;
            conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE_CAPACITY);
            Ok(())
        };
        configure(&conn).map_err(|e| open_error(&path, e))?;
        let identity = SqliteStore::init_schema(&mut conn, &path, create)?;
        Ok(SqliteStore {
            conn: Mutex::new(conn),
            path,
            identity,
            marks: None,
        })
    }

    /// Create the tables if missing (if `create`), migrate an older schema
    /// and check the version, in one transaction (two processes may open a
    /// new file at once). Returns the store's identity.
    fn init_schema(conn: &mut Connection, path: &str, create: bool) -> Result<u64, OpenError> {
        // A store already at this version opens without a write
        // transaction: a reader beside a busy node (`onsale export`) must
        // neither wait for the write lock nor take it.
        let current = conn
            .query_row(
                "SELECT (SELECT value FROM meta WHERE key = 'schema_version'),
                        (SELECT value FROM meta WHERE key = 'store_id')",
                [],
                |row| Ok((row.get::<_, Option<i64>>(0)?, row.get::<_, Option<i64>>(1)?)),
            )
            .ok();
        if let Some((Some(SCHEMA_VERSION), Some(identity))) = current {
            return Ok(from_sql(identity));
        }
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| open_error(path, e))?;
        if !create {
            let tables: i64 = tx
                .query_row("SELECT count(*) FROM sqlite_master", [], |row| row.get(0))
                .map_err(|e| open_error(path, e))?;
            if tables == 0 {
                return Err(OpenError::NotAStore {
                    path: path.to_owned(),
                    why: "the database is empty: no onsale store here".into(),
                });
            }
        }
        tx.execute_batch(
            "CREATE TABLE IF NOT EXISTS meta (
                 key TEXT PRIMARY KEY,
                 value INTEGER NOT NULL
             ) WITHOUT ROWID;",
        )
        .map_err(|e| open_error(path, e))?;
        let found: Option<i64> = tx
            .query_row(
                "SELECT value FROM meta WHERE key = 'schema_version'",
                [],
                |row| row.get(0),
            )
            .optional()
            .map_err(|e| open_error(path, e))?;
        if found.is_none() && !create {
            return Err(OpenError::NotAStore {
                path: path.to_owned(),
                why: "the database holds no onsale store (no schema version)".into(),
            });
        }
        if let Some(found) = found
            && found > SCHEMA_VERSION
        {
            return Err(OpenError::NewerSchema {
                path: path.to_owned(),
                found,
                supported: SCHEMA_VERSION,
            });
        }
        // Version 1 is the first: no migrations yet. Each table keyed as it
        // is read; `WITHOUT ROWID` keeps rows in key order.
        tx.execute_batch(
            "CREATE TABLE IF NOT EXISTS nodes (
                 node TEXT PRIMARY KEY,
                 addr TEXT NOT NULL,
                 expires_ms INTEGER NOT NULL
             ) WITHOUT ROWID;
             CREATE TABLE IF NOT EXISTS event_leases (
                 event INTEGER PRIMARY KEY,
                 node TEXT NOT NULL,
                 epoch INTEGER NOT NULL,
                 expires_ms INTEGER NOT NULL
             );
             CREATE TABLE IF NOT EXISTS snapshots (
                 event INTEGER PRIMARY KEY,
                 seq INTEGER NOT NULL,
                 bytes BLOB NOT NULL
             );
             CREATE TABLE IF NOT EXISTS journal (
                 event INTEGER NOT NULL,
                 seq INTEGER NOT NULL,
                 bytes BLOB NOT NULL,
                 PRIMARY KEY (event, seq)
             ) WITHOUT ROWID;
             CREATE TABLE IF NOT EXISTS counters (
                 event INTEGER PRIMARY KEY,
                 ceiling INTEGER NOT NULL
             );
             CREATE TABLE IF NOT EXISTS event_specs (
                 event INTEGER PRIMARY KEY,
                 spec BLOB NOT NULL
             );
             CREATE TABLE IF NOT EXISTS node_flags (
                 node TEXT PRIMARY KEY,
                 cordoned INTEGER NOT NULL,
                 draining INTEGER NOT NULL
             ) WITHOUT ROWID;
             CREATE TABLE IF NOT EXISTS feed_cursors (
                 event INTEGER PRIMARY KEY,
                 published INTEGER NOT NULL,
                 last_message INTEGER NOT NULL,
                 keep_from INTEGER NOT NULL
             );",
        )
        .map_err(|e| open_error(path, e))?;
        if found.is_none_or(|v| v < 2) {
            migrate_to_sealed(&tx).map_err(|source| OpenError::Store {
                path: path.to_owned(),
                source,
            })?;
        }
        tx.execute(
            "INSERT INTO meta (key, value) VALUES ('schema_version', ?1)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            [SCHEMA_VERSION],
        )
        .map_err(|e| open_error(path, e))?;
        let identity: Option<i64> = tx
            .query_row("SELECT value FROM meta WHERE key = 'store_id'", [], |row| {
                row.get(0)
            })
            .optional()
            .map_err(|e| open_error(path, e))?;
        let identity = match identity {
            Some(identity) => from_sql(identity),
            None => {
                let identity = new_identity(path);
                tx.execute(
                    "INSERT INTO meta (key, value) VALUES ('store_id', ?1)",
                    [to_sql(identity)],
                )
                .map_err(|e| open_error(path, e))?;
                identity
            }
        };
        tx.commit().map_err(|e| open_error(path, e))?;
        Ok(identity)
    }

    /// Raise `event`'s high-water mark after a commit (see [`marks`]).
    fn raise_mark(
        &self,
        event: EventId,
        seq: u64,
        ceiling: u64,
        sync: bool,
    ) -> Result<(), StoreError> {
        let Some(marks) = &self.marks else {
            return Ok(());
        };
        marks.raise(event, seq, ceiling, sync).map_err(|e| {
            StoreError::Unavailable(format!(
                "{event}: high-water mark {}: {e}",
                marks.path(event).display()
            ))
        })
    }

    /// `event`'s high-water mark, read before the data it vouches for: a
    /// mark is raised only after its commit, so a mark read first is never
    /// ahead of a read transaction begun after it, even while the owner
    /// (in another process) commits.
    fn read_mark(&self, event: EventId) -> Result<Option<Mark>, StoreError> {
        let Some(marks) = &self.marks else {
            return Ok(None);
        };
        marks.read(event).map(Some).map_err(|e| {
            let path = marks.path(event);
            StoreError::Unavailable(format!("{event}: high-water mark {}: {e}", path.display()))
        })
    }

    /// `Lost` if `stored` is shorter than `mark`, read before it.
    fn check_mark(
        &self,
        event: EventId,
        mark: Option<Mark>,
        stored: &StoredEvent,
    ) -> Result<(), StoreError> {
        let (Some(marks), Some(mark)) = (&self.marks, mark) else {
            return Ok(());
        };
        let path = marks.path(event);
        let found = Mark {
            seq: stored
                .journal
                .last()
                .map(|r| r.seq)
                .or(stored.snapshot.as_ref().map(|(seq, _)| *seq))
                .unwrap_or(0),
            ceiling: stored.counter_ceiling,
        };
        if mark.seq <= found.seq && mark.ceiling <= found.ceiling {
            return Ok(());
        }
        Err(Lost::found(Lost {
            event,
            marked_seq: mark.seq,
            marked_ceiling: mark.ceiling,
            found_seq: found.seq,
            found_ceiling: found.ceiling,
            mark: path.display().to_string(),
        })
        .into())
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock rolled its transaction back when
        // the `Transaction` was dropped: the connection is fine to reuse.
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Run `f` in one `BEGIN IMMEDIATE` transaction: committed if `f`
    /// returns `Ok`, rolled back otherwise.
    fn write<T>(
        &self,
        f: impl FnOnce(&Transaction<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql)?;
        let out = f(&tx)?;
        tx.commit().map_err(sql)?;
        Ok(out)
    }

    /// Run `f` in one read transaction, so that its reads see one state.
    fn read<T>(
        &self,
        f: impl FnOnce(&Transaction<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Deferred)
            .map_err(sql)?;
        let out = f(&tx)?;
        // Nothing to keep: ending the read transaction either way is fine.
        tx.rollback().map_err(sql)?;
        Ok(out)
    }

    /// A fenced write: `f` runs only if `lease` is the event's current
    /// lease (same epoch, same node), inside the same transaction.
    fn fenced<T>(
        &self,
        lease: &EventLease,
        f: impl FnOnce(&Transaction<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.write(|tx| {
            check_fence(tx, lease)?;
            f(tx)
        })
    }
}

// ----- conversions and row access -----

/// Exact `u64` ↔ `i64` bit cast for values never compared in SQL.
fn to_sql(value: u64) -> i64 {
    value as i64
}

fn from_sql(value: i64) -> u64 {
    value as u64
}

fn event_key(event: EventId) -> i64 {
    to_sql(event.0)
}

/// A sequence number compared in SQL: must fit `i64` to keep its order.
fn seq_key(seq: u64) -> Result<i64, StoreError> {
    i64::try_from(seq).map_err(|_| {
        StoreError::Conflict(format!("seq {seq} is beyond the embedded store's range"))
    })
}

fn stored_seq(value: i64) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|_| StoreError::Corrupt(format!("negative seq {value} stored")))
}

fn sql(e: rusqlite::Error) -> StoreError {
    let code = match &e {
        rusqlite::Error::SqliteFailure(failure, _) => failure.code,
        rusqlite::Error::FromSqlConversionFailure(..)
        | rusqlite::Error::IntegralValueOutOfRange(..)
        | rusqlite::Error::InvalidColumnType(..)
        | rusqlite::Error::Utf8Error(..) => return StoreError::Corrupt(e.to_string()),
        _ => return StoreError::Unavailable(e.to_string()),
    };
    match code {
        ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase | ErrorCode::TypeMismatch => {
            StoreError::Corrupt(e.to_string())
        }
        // Busy, locked, I/O, disk full, out of memory, read-only, can't
        // open, ...: the transaction did not land, and a retry may succeed
        // once the cause is gone.
        _ => StoreError::Unavailable(e.to_string()),
    }
}

fn open_error(path: &str, e: rusqlite::Error) -> OpenError {
    let damaged = match &e {
        rusqlite::Error::SqliteFailure(failure, _) => {
            matches!(
                failure.code,
                ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase
            ) || failure.extended_code == rusqlite::ffi::SQLITE_IOERR_SHORT_READ
        }
        _ => false,
    };
    if damaged {
        return OpenError::Damaged {
            path: path.to_owned(),
            why: e.to_string(),
        };
    }
    OpenError::Store {
        path: path.to_owned(),
        source: sql(e),
    }
}

/// A new store identity: unique enough that two stores made anywhere never
/// share one (time, process, path and an address, hashed).
fn new_identity(path: &str) -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let mut hasher = blake3::Hasher::new();
    hasher.update(b"onsale store identity");
    hasher.update(&nanos.to_le_bytes());
    hasher.update(&std::process::id().to_le_bytes());
    hasher.update(path.as_bytes());
    hasher.update(&(&raw const nanos as usize).to_le_bytes());
    let mut out = [0; 8];
    out.copy_from_slice(&hasher.finalize().as_bytes()[..8]);
    u64::from_le_bytes(out)
}

/// Schema 1 → 2: seal every stored value (see the module docs).
fn migrate_to_sealed(tx: &Transaction<'_>) -> Result<(), StoreError> {
    let has_sealed: i64 = tx
        .query_row(
            "SELECT count(*) FROM pragma_table_info('counters') WHERE name = 'sealed'",
            [],
            |row| row.get(0),
        )
        .map_err(sql)?;
    if has_sealed == 0 {
        tx.execute_batch("ALTER TABLE counters ADD COLUMN sealed BLOB")
            .map_err(sql)?;
    }
    reseal(
        tx,
        "snapshots",
        Sealed::Snapshot,
        "event, seq, bytes",
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?;
    reseal(
        tx,
        "journal",
        Sealed::JournalRecord,
        "event, seq, bytes",
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?;
    reseal(tx, "event_specs", Sealed::Spec, "event, 0, spec", |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?))
    })?;
    let counters: Vec<(i64, i64)> = tx
        .prepare("SELECT event, ceiling FROM counters")
        .map_err(sql)?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .map_err(sql)?
        .collect::<Result<_, _>>()
        .map_err(sql)?;
    for (event, ceiling) in counters {
        let sealed = frame::seal_counter(EventId(from_sql(event)), from_sql(ceiling));
        tx.execute(
            "UPDATE counters SET sealed = ?2 WHERE event = ?1",
            (event, sealed),
        )
        .map_err(sql)?;
    }
    Ok(())
}

/// Seal every value of one table (rows of event, seq, bytes).
fn reseal(
    tx: &Transaction<'_>,
    table: &str,
    kind: Sealed,
    columns: &str,
    row: impl FnMut(&rusqlite::Row<'_>) -> rusqlite::Result<(i64, i64, Vec<u8>)>,
) -> Result<(), StoreError> {
    let rows: Vec<(i64, i64, Vec<u8>)> = tx
        .prepare(&format!("SELECT {columns} FROM {table}"))
        .map_err(sql)?
        .query_map([], row)
        .map_err(sql)?
        .collect::<Result<_, _>>()
        .map_err(sql)?;
    let (value, seq_column) = match kind {
        Sealed::Spec => ("spec", None),
        _ => ("bytes", Some("seq")),
    };
    let update = match seq_column {
        Some(seq) => format!("UPDATE {table} SET {value} = ?3 WHERE event = ?1 AND {seq} = ?2"),
        None => format!("UPDATE {table} SET {value} = ?3 WHERE event = ?1 AND ?2 = 0"),
    };
    for (event, seq, bytes) in rows {
        let sealed = frame::seal(kind, EventId(from_sql(event)), from_sql(seq), &bytes);
        tx.execute(&update, (event, seq, sealed)).map_err(sql)?;
    }
    Ok(())
}

/// The payload of a sealed value read under (`event`, `seq`), or its damage.
fn unseal(
    kind: Sealed,
    event: EventId,
    seq: Option<u64>,
    stored: Vec<u8>,
) -> Result<Vec<u8>, Damage> {
    frame::open_owned(kind, event, seq.unwrap_or(0), stored)
        .map_err(|problem| Damage::found(event, kind, seq, problem))
}

/// The stored lease of `event`, if any.
fn lease_row(tx: &Transaction<'_>, event: EventId) -> Result<Option<EventLease>, StoreError> {
    tx.prepare_cached("SELECT node, epoch, expires_ms FROM event_leases WHERE event = ?1")
        .map_err(sql)?
        .query_row([event_key(event)], |row| {
            Ok(EventLease {
                event,
                node: NodeId(row.get(0)?),
                epoch: from_sql(row.get(1)?),
                expires: Millis(from_sql(row.get(2)?)),
            })
        })
        .optional()
        .map_err(sql)
}

fn put_lease(tx: &Transaction<'_>, lease: &EventLease) -> Result<(), StoreError> {
    tx.prepare_cached(
        "INSERT INTO event_leases (event, node, epoch, expires_ms) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (event) DO UPDATE SET
             node = excluded.node, epoch = excluded.epoch, expires_ms = excluded.expires_ms",
    )
    .map_err(sql)?
    .execute((
        event_key(lease.event),
        &lease.node.0,
        to_sql(lease.epoch),
        to_sql(lease.expires.0),
    ))
    .map_err(sql)?;
    Ok(())
}

/// `Fenced` unless `lease` is the event's current lease.
fn check_fence(tx: &Transaction<'_>, lease: &EventLease) -> Result<(), StoreError> {
    match lease_row(tx, lease.event)? {
        Some(current) if current.epoch == lease.epoch && current.node == lease.node => Ok(()),
        _ => Err(StoreError::Fenced {
            event: lease.event,
            epoch: lease.epoch,
        }),
    }
}

fn snapshot_seq(tx: &Transaction<'_>, event: EventId) -> Result<Option<u64>, StoreError> {
    let seq: Option<i64> = tx
        .prepare_cached("SELECT seq FROM snapshots WHERE event = ?1")
        .map_err(sql)?
        .query_row([event_key(event)], |row| row.get(0))
        .optional()
        .map_err(sql)?;
    seq.map(stored_seq).transpose()
}

fn last_journal_seq(tx: &Transaction<'_>, event: EventId) -> Result<Option<u64>, StoreError> {
    let seq: Option<i64> = tx
        .prepare_cached("SELECT max(seq) FROM journal WHERE event = ?1")
        .map_err(sql)?
        .query_row([event_key(event)], |row| row.get(0))
        .map_err(sql)?;
    seq.map(stored_seq).transpose()
}

fn first_journal_seq(tx: &Transaction<'_>, event: EventId) -> Result<Option<u64>, StoreError> {
    let seq: Option<i64> = tx
        .prepare_cached("SELECT min(seq) FROM journal WHERE event = ?1")
        .map_err(sql)?
        .query_row([event_key(event)], |row| row.get(0))
        .map_err(sql)?;
    seq.map(stored_seq).transpose()
}

fn feed_retention(tx: &Transaction<'_>) -> Result<bool, StoreError> {
    let on: Option<i64> = tx
        .prepare_cached("SELECT value FROM meta WHERE key = 'feed_retention'")
        .map_err(sql)?
        .query_row([], |row| row.get(0))
        .optional()
        .map_err(sql)?;
    Ok(on.is_some_and(|on| on != 0))
}

fn feed_cursor(tx: &Transaction<'_>, event: EventId) -> Result<Option<FeedCursor>, StoreError> {
    let row: Option<(i64, i64, i64)> = tx
        .prepare_cached(
            "SELECT published, last_message, keep_from FROM feed_cursors WHERE event = ?1",
        )
        .map_err(sql)?
        .query_row([event_key(event)], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?))
        })
        .optional()
        .map_err(sql)?;
    row.map(|(published, last_message, keep_from)| {
        Ok(FeedCursor {
            published: stored_seq(published)?,
            last_message: stored_seq(last_message)?,
            keep_from: stored_seq(keep_from)?,
        })
    })
    .transpose()
}

/// Delete at most `rows_max` journal records at or below the snapshot's
/// seq, oldest first (amortised compaction; see the module docs), except
/// those the change feed still needs ([`compact_bound`]).
fn compact(
    tx: &Transaction<'_>,
    event: EventId,
    snapshot: u64,
    rows_max: u64,
) -> Result<(), StoreError> {
    let Some(oldest) = first_journal_seq(tx, event)? else {
        return Ok(());
    };
    if oldest > snapshot || rows_max == 0 {
        return Ok(());
    }
    let bound = compact_bound(snapshot, feed_retention(tx)?, feed_cursor(tx, event)?);
    if oldest > bound {
        return Ok(());
    }
    // Seqs are distinct: this range holds at most `rows_max` records.
    let through = bound.min(oldest.saturating_add(rows_max - 1));
    tx.prepare_cached("DELETE FROM journal WHERE event = ?1 AND seq <= ?2")
        .map_err(sql)?
        .execute((event_key(event), seq_key(through)?))
        .map_err(sql)?;
    Ok(())
}

fn counter_ceiling(tx: &Transaction<'_>, event: EventId) -> Result<u64, StoreError> {
    let sealed: Option<Option<Vec<u8>>> = tx
        .prepare_cached("SELECT sealed FROM counters WHERE event = ?1")
        .map_err(sql)?
        .query_row([event_key(event)], |row| row.get(0))
        .optional()
        .map_err(sql)?;
    let Some(sealed) = sealed else {
        return Ok(0);
    };
    let opened = sealed
        .ok_or(FrameError::NotFramed)
        .and_then(|bytes| frame::open_counter(event, &bytes));
    opened.map_err(|problem| Damage::found(event, Sealed::Counter, None, problem).into())
}

impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    fn heartbeat_node(
        &self,
        node: &NodeId,
        addr: &str,
        ttl_ms: u64,
        now: Millis,
    ) -> Result<(), StoreError> {
        let expires = now.saturating_add_ms(ttl_ms);
        self.write(|tx| {
            tx.prepare_cached(
                "INSERT INTO nodes (node, addr, expires_ms) VALUES (?1, ?2, ?3)
                 ON CONFLICT (node) DO UPDATE SET
                     addr = excluded.addr, expires_ms = excluded.expires_ms",
            )
            .map_err(sql)?
            .execute((&node.0, addr, to_sql(expires.0)))
            .map_err(sql)?;
            Ok(())
        })
    }

    fn forget_node(&self, node: &NodeId) -> Result<(), StoreError> {
        self.write(|tx| {
            for table in ["nodes", "node_flags"] {
                tx.prepare_cached(&format!("DELETE FROM {table} WHERE node = ?1"))
                    .map_err(sql)?
                    .execute([&node.0])
                    .map_err(sql)?;
            }
            Ok(())
        })
    }

    fn nodes(&self) -> Result<Vec<NodeRecord>, StoreError> {
        self.read(|tx| {
            let mut stmt = tx
                .prepare_cached("SELECT node, addr, expires_ms FROM nodes ORDER BY node")
                .map_err(sql)?;
            let rows = stmt
                .query_map([], |row| {
                    Ok(NodeRecord {
                        node: NodeId(row.get(0)?),
                        addr: row.get(1)?,
                        expires: Millis(from_sql(row.get(2)?)),
                    })
                })
                .map_err(sql)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(sql)
        })
    }

    fn set_node_flags(&self, node: &NodeId, flags: NodeFlags) -> Result<(), StoreError> {
        self.write(|tx| {
            if flags.is_clear() {
                tx.prepare_cached("DELETE FROM node_flags WHERE node = ?1")
                    .map_err(sql)?
                    .execute([&node.0])
                    .map_err(sql)?;
                return Ok(());
            }
            tx.prepare_cached(
                "INSERT INTO node_flags (node, cordoned, draining) VALUES (?1, ?2, ?3)
                 ON CONFLICT (node) DO UPDATE SET
                     cordoned = excluded.cordoned, draining = excluded.draining",
            )
            .map_err(sql)?
            .execute((&node.0, flags.cordoned, flags.draining))
            .map_err(sql)?;
            Ok(())
        })
    }

    fn node_flags(&self) -> Result<Vec<(NodeId, NodeFlags)>, StoreError> {
        self.read(|tx| {
            let mut stmt = tx
                .prepare_cached("SELECT node, cordoned, draining FROM node_flags ORDER BY node")
                .map_err(sql)?;
            let rows = stmt
                .query_map([], |row| {
                    Ok((
                        NodeId(row.get(0)?),
                        NodeFlags {
                            cordoned: row.get(1)?,
                            draining: row.get(2)?,
                        },
                    ))
                })
                .map_err(sql)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(sql)
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
        self.write(|tx| {
            let acquisition = acquire_rule(lease_row(tx, event)?, event, node, ttl_ms, now, over)?;
            if let Acquisition::Acquired(lease) = &acquisition {
                put_lease(tx, lease)?;
            }
            Ok(acquisition)
        })
    }

    fn renew_event(
        &self,
        lease: &EventLease,
        ttl_ms: u64,
        now: Millis,
    ) -> Result<EventLease, StoreError> {
        self.fenced(lease, |tx| {
            let renewed = EventLease {
                expires: now.saturating_add_ms(ttl_ms),
                ..lease.clone()
            };
            put_lease(tx, &renewed)?;
            Ok(renewed)
        })
    }

    fn renew_events(
        &self,
        leases: &[EventLease],
        ttl_ms: u64,
        now: Millis,
    ) -> Result<Vec<Result<EventLease, StoreError>>, StoreError> {
        let expires = now.saturating_add_ms(ttl_ms);
        self.write(|tx| {
            let mut renewed = Vec::with_capacity(leases.len());
            for lease in leases {
                match check_fence(tx, lease) {
                    Err(e @ StoreError::Fenced { .. }) => renewed.push(Err(e)),
                    Err(e) => return Err(e),
                    Ok(()) => {
                        let lease = EventLease {
                            expires,
                            ..lease.clone()
                        };
                        put_lease(tx, &lease)?;
                        renewed.push(Ok(lease));
                    }
                }
            }
            Ok(renewed)
        })
    }

    fn release_event(&self, lease: &EventLease) -> Result<(), StoreError> {
        self.fenced(lease, |tx| {
            put_lease(
                tx,
                &EventLease {
                    expires: Millis(0),
                    ..lease.clone()
                },
            )
        })
    }

    fn event_lease(&self, event: EventId) -> Result<Option<EventLease>, StoreError> {
        self.read(|tx| lease_row(tx, event))
    }

    fn event_leases(&self) -> Result<Vec<EventLease>, StoreError> {
        self.read(|tx| {
            let mut stmt = tx
                .prepare_cached(
                    "SELECT event, node, epoch, expires_ms FROM event_leases ORDER BY event",
                )
                .map_err(sql)?;
            let rows = stmt
                .query_map([], |row| {
                    Ok((
                        row.get::<_, i64>(0)?,
                        NodeId(row.get(1)?),
                        row.get::<_, i64>(2)?,
                        row.get::<_, i64>(3)?,
                    ))
                })
                .map_err(sql)?;
            let mut leases = Vec::new();
            for row in rows {
                let (event, node, epoch, expires) = row.map_err(sql)?;
                leases.push(EventLease {
                    event: EventId(from_sql(event)),
                    node,
                    epoch: from_sql(epoch),
                    expires: Millis(from_sql(expires)),
                });
            }
            // Event ids are bit-cast into SQL: sort as unsigned here.
            leases.sort_unstable_by_key(|lease| lease.event);
            Ok(leases)
        })
    }

    fn append_journal(
        &self,
        lease: &EventLease,
        records: &[JournalBytes],
    ) -> Result<(), StoreError> {
        check_batch(records)?;
        let event = event_key(lease.event);
        self.fenced(lease, |tx| {
            let Some(first) = records.first() else {
                return Ok(());
            };
            // `check_batch` made the batch consecutive: the last seq bounds all.
            seq_key(records[records.len() - 1].seq)?;
            let snapshot = snapshot_seq(tx, lease.event)?.unwrap_or(0);
            let last = last_journal_seq(tx, lease.event)?
                .unwrap_or(0)
                .max(snapshot);
            if first.seq > last + 1 {
                return Err(StoreError::Conflict(format!(
                    "{}: journal gap: next seq is {}, got {}",
                    lease.event,
                    last + 1,
                    first.seq
                )));
            }
            let mut existing = tx
                .prepare_cached("SELECT bytes FROM journal WHERE event = ?1 AND seq = ?2")
                .map_err(sql)?;
            let mut insert = tx
                .prepare_cached("INSERT INTO journal (event, seq, bytes) VALUES (?1, ?2, ?3)")
                .map_err(sql)?;
            let mut sealed = Vec::new();
            for record in records {
                let seq = seq_key(record.seq)?;
                if record.seq <= snapshot {
                    // Already folded into the snapshot: a retry, nothing to do.
                    continue;
                }
                let kind = Sealed::JournalRecord;
                frame::seal_into(&mut sealed, kind, lease.event, record.seq, &record.bytes);
                if record.seq > last {
                    insert.execute((event, seq, &sealed)).map_err(sql)?;
                    continue;
                }
                let stored: Option<Vec<u8>> = existing
                    .query_row((event, seq), |row| row.get(0))
                    .optional()
                    .map_err(sql)?;
                match stored {
                    Some(bytes) if bytes == sealed => {}
                    Some(_) => {
                        return Err(StoreError::Conflict(format!(
                            "{}: journal seq {} already holds different bytes",
                            lease.event, record.seq
                        )));
                    }
                    None => {
                        return Err(StoreError::Corrupt(format!(
                            "{}: journal seq {} missing below seq {last}",
                            lease.event, record.seq
                        )));
                    }
                }
            }
            let rows = (records.len() as u64)
                .saturating_mul(COMPACT_ROWS_PER_RECORD)
                .max(COMPACT_ROWS_MIN);
            compact(tx, lease.event, snapshot, rows)
        })?;
        let last = records.last().map_or(0, |r| r.seq);
        self.raise_mark(lease.event, last, 0, false)
    }

    fn put_snapshot(&self, lease: &EventLease, seq: u64, bytes: &[u8]) -> Result<(), StoreError> {
        let seq_sql = seq_key(seq)?;
        let event = event_key(lease.event);
        self.fenced(lease, |tx| {
            if snapshot_seq(tx, lease.event)?.is_some_and(|stored| seq <= stored) {
                return Ok(());
            }
            let sealed = frame::seal(Sealed::Snapshot, lease.event, seq, bytes);
            tx.prepare_cached(
                "INSERT INTO snapshots (event, seq, bytes) VALUES (?1, ?2, ?3)
                 ON CONFLICT (event) DO UPDATE SET seq = excluded.seq, bytes = excluded.bytes",
            )
            .map_err(sql)?
            .execute((event, seq_sql, sealed))
            .map_err(sql)?;
            // The records it includes go over the next appends, not here.
            compact(tx, lease.event, seq, COMPACT_ROWS_MIN)
        })?;
        self.raise_mark(lease.event, seq, 0, true)
    }

    fn reserve_counter(&self, lease: &EventLease, ceiling: u64) -> Result<u64, StoreError> {
        let stored = self.fenced(lease, |tx| {
            let stored = counter_ceiling(tx, lease.event)?;
            if ceiling <= stored {
                return Ok(stored);
            }
            // The integer column is for people reading the file; the
            // sealed one is what is read back.
            tx.prepare_cached(
                "INSERT INTO counters (event, ceiling, sealed) VALUES (?1, ?2, ?3)
                 ON CONFLICT (event) DO UPDATE SET
                     ceiling = excluded.ceiling, sealed = excluded.sealed",
            )
            .map_err(sql)?
            .execute((
                event_key(lease.event),
                to_sql(ceiling),
                frame::seal_counter(lease.event, ceiling),
            ))
            .map_err(sql)?;
            Ok(ceiling)
        })?;
        self.raise_mark(lease.event, 0, stored, false)?;
        Ok(stored)
    }

    fn load_event(&self, event: EventId) -> Result<StoredEvent, StoreError> {
        let mark = self.read_mark(event)?;
        let stored = self.read(|tx| {
            let snapshot: Option<(i64, Vec<u8>)> = tx
                .prepare_cached("SELECT seq, bytes FROM snapshots WHERE event = ?1")
                .map_err(sql)?
                .query_row([event_key(event)], |row| Ok((row.get(0)?, row.get(1)?)))
                .optional()
                .map_err(sql)?;
            let snapshot = snapshot
                .map(|(seq, bytes)| {
                    let seq = stored_seq(seq)?;
                    Ok::<_, StoreError>((seq, unseal(Sealed::Snapshot, event, Some(seq), bytes)?))
                })
                .transpose()?;
            let after = snapshot.as_ref().map_or(0, |(seq, _)| *seq);
            let mut stmt = tx
                .prepare_cached(
                    "SELECT seq, bytes FROM journal WHERE event = ?1 AND seq > ?2 ORDER BY seq",
                )
                .map_err(sql)?;
            let rows = stmt
                .query_map((event_key(event), seq_key(after)?), |row| {
                    Ok((row.get::<_, i64>(0)?, row.get::<_, Vec<u8>>(1)?))
                })
                .map_err(sql)?;
            let mut journal = Vec::new();
            for row in rows {
                let (seq, bytes) = row.map_err(sql)?;
                let seq = stored_seq(seq)?;
                journal.push(JournalBytes {
                    seq,
                    bytes: unseal(Sealed::JournalRecord, event, Some(seq), bytes)?,
                });
            }
            let counter_ceiling = counter_ceiling(tx, event)?;
            Ok(StoredEvent {
                snapshot,
                journal,
                counter_ceiling,
            })
        })?;
        self.check_mark(event, mark, &stored)?;
        Ok(stored)
    }

    fn set_feed_retention(&self, on: bool) -> Result<(), StoreError> {
        self.write(|tx| {
            tx.prepare_cached(
                "INSERT INTO meta (key, value) VALUES ('feed_retention', ?1)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            )
            .map_err(sql)?
            .execute([i64::from(on)])
            .map_err(sql)?;
            Ok(())
        })
    }

    fn feed_retention(&self) -> Result<bool, StoreError> {
        self.read(feed_retention)
    }

    fn feed_cursor(&self, event: EventId) -> Result<Option<FeedCursor>, StoreError> {
        self.read(|tx| feed_cursor(tx, event))
    }

    fn put_feed_cursor(&self, event: EventId, cursor: FeedCursor) -> Result<(), StoreError> {
        self.write(|tx| {
            tx.prepare_cached(
                "INSERT INTO feed_cursors (event, published, last_message, keep_from)
                 VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (event) DO UPDATE SET
                     published = excluded.published,
                     last_message = excluded.last_message,
                     keep_from = excluded.keep_from
                 WHERE excluded.published >= feed_cursors.published",
            )
            .map_err(sql)?
            .execute((
                event_key(event),
                seq_key(cursor.published)?,
                seq_key(cursor.last_message)?,
                seq_key(cursor.keep_from)?,
            ))
            .map_err(sql)?;
            Ok(())
        })
    }

    fn read_journal(
        &self,
        event: EventId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<JournalBytes>, StoreError> {
        self.read(|tx| {
            let mut stmt = tx
                .prepare_cached(
                    "SELECT seq, bytes FROM journal WHERE event = ?1 AND seq > ?2
                     ORDER BY seq LIMIT ?3",
                )
                .map_err(sql)?;
            let limit = i64::try_from(limit).unwrap_or(i64::MAX);
            let rows = stmt
                .query_map((event_key(event), seq_key(after)?, limit), |row| {
                    Ok((row.get::<_, i64>(0)?, row.get::<_, Vec<u8>>(1)?))
                })
                .map_err(sql)?;
            let mut records = Vec::new();
            for row in rows {
                let (seq, bytes) = row.map_err(sql)?;
                let seq = stored_seq(seq)?;
                records.push(JournalBytes {
                    seq,
                    bytes: unseal(Sealed::JournalRecord, event, Some(seq), bytes)?,
                });
            }
            Ok(records)
        })
    }

    fn put_event_spec(&self, event: EventId, spec: &[u8]) -> Result<(), StoreError> {
        self.write(|tx| {
            tx.prepare_cached(
                "INSERT INTO event_specs (event, spec) VALUES (?1, ?2)
                 ON CONFLICT (event) DO UPDATE SET spec = excluded.spec",
            )
            .map_err(sql)?
            .execute((event_key(event), frame::seal(Sealed::Spec, event, 0, spec)))
            .map_err(sql)?;
            Ok(())
        })
    }

    fn event_specs(&self) -> Result<Vec<(EventId, SpecBytes)>, StoreError> {
        self.read(|tx| {
            let mut stmt = tx
                .prepare_cached("SELECT event, spec FROM event_specs")
                .map_err(sql)?;
            let rows = stmt
                .query_map([], |row| Ok((EventId(from_sql(row.get(0)?)), row.get(1)?)))
                .map_err(sql)?;
            let mut specs: Vec<(EventId, SpecBytes)> = rows
                .map(|row| {
                    let (event, bytes): (EventId, Vec<u8>) = row?;
                    Ok((event, unseal(Sealed::Spec, event, None, bytes)))
                })
                .collect::<Result<_, rusqlite::Error>>()
                .map_err(sql)?;
            // Event ids are bit-cast into SQL: sort as unsigned here.
            specs.sort_unstable_by_key(|(event, _)| *event);
            Ok(specs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored_rows(store: &SqliteStore, event: EventId) -> u64 {
        let rows: i64 = store
            .lock()
            .query_row(
                "SELECT count(*) FROM journal WHERE event = ?1",
                [event_key(event)],
                |row| row.get(0),
            )
            .expect("count");
        rows as u64
    }

    fn records(from: u64, to: u64) -> Vec<JournalBytes> {
        (from..=to)
            .map(|seq| JournalBytes {
                seq,
                bytes: seq.to_le_bytes().to_vec(),
            })
            .collect()
    }

    /// A snapshot deletes little at once; each later append deletes up to
    /// `COMPACT_ROWS_PER_RECORD` × its records of the backlog, until none
    /// is left. Only records after the snapshot ever load.
    #[test]
    fn compaction_is_spread_over_the_appends_after_a_snapshot() {
        let store = SqliteStore::open_in_memory().expect("store");
        let event = EventId(7);
        let lease = store
            .acquire_event(event, &NodeId("n".into()), 60_000, Millis(0))
            .expect("acquire")
            .expect("free");
        store
            .append_journal(&lease, &records(1, 1_000))
            .expect("append");
        store
            .put_snapshot(&lease, 900, b"at 900")
            .expect("snapshot");
        let mut backlog = 900 - COMPACT_ROWS_MIN;
        assert_eq!(stored_rows(&store, event), 1_000 - COMPACT_ROWS_MIN);
        let mut next = 1_001;
        while backlog > 0 {
            store
                .append_journal(&lease, &records(next, next + 99))
                .expect("append");
            next += 100;
            backlog -= backlog.min(100 * COMPACT_ROWS_PER_RECORD);
            assert_eq!(stored_rows(&store, event), backlog + next - 901);
            let stored = store.load_event(event).expect("load");
            assert_eq!(stored.journal, records(901, next - 1));
        }
        assert_eq!(next, 1_501, "five appends of 100 paid 836 rows of backlog");
    }
}
