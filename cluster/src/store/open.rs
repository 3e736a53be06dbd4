//! Opening a node's store at start: refuse what is not the store that was
//! there, unless told to make a new one, and say what was found.
//!
//! A node started on an empty or zero-length file, on a file that is not
//! an onsale store, or on a store whose identity is not the one its
//! high-water marks remember (another store copied into its place) is
//! refused with an error naming the file, unless the operator asked for
//! [`OpenMode::Init`]. A truncated file is named as damaged, not reported
//! as "disk I/O error". The binary logs [`StoreSummary`] as one line.

use std::fmt;
use std::path::Path;

use onsale_schema::EventId;
use onsale_schema::snapshot::{EventSnapshot, JournalEntry, JournalRecord};

use super::marks;
use super::sqlite::{OpenError, SqliteStore};
use super::{Store, StoreError};

/// What a node expects to find at its store's path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenMode {
    /// A store made earlier: anything else is refused.
    Existing,
    /// Make a new store if there is none (a missing or empty file); an
    /// existing store is opened as with `Existing`.
    Init,
}

/// What a store holds, for the startup log line.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StoreSummary {
    pub identity: u64,
    /// Events with a spec.
    pub events: u64,
    /// Events whose stored state cannot be restored (damaged or lost);
    /// each was logged at ERROR while summarising.
    pub unrestorable: Vec<EventId>,
    /// Orders sold, over the restorable events.
    pub orders: u64,
    /// Highest journal seq of any event.
    pub last_seq: u64,
}

impl fmt::Display for StoreSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "store {:016x}: {} events, {} orders, last journal seq {}",
            self.identity, self.events, self.orders, self.last_seq
        )?;
        if !self.unrestorable.is_empty() {
            write!(f, "; {} cannot be restored:", self.unrestorable.len())?;
            for event in &self.unrestorable {
                write!(f, " {event}")?;
            }
        }
        Ok(())
    }
}

/// The file holding a store's identity beside it, so that a store swapped
/// for another is noticed.
fn identity_file(path: &Path) -> std::path::PathBuf {
    marks::dir_of(path).join("identity")
}

/// Open the store at `path` as `mode` allows, check it is the store that
/// was there, and summarise it. See the module docs.
pub fn open_store(path: &Path, mode: OpenMode) -> Result<(SqliteStore, StoreSummary), OpenError> {
    let name = path.display().to_string();
    let create = mode == OpenMode::Init;
    check_file(path, &name, create)?;
    let store = SqliteStore::open_file(path, create)?;
    check_identity(path, &name, store.identity(), create)?;
    let summary = summarize(&store).map_err(|source| match source {
        StoreError::Corrupt(why) => OpenError::Damaged { path: name, why },
        source => OpenError::Store { path: name, source },
    })?;
    Ok((store, summary))
}

/// Refuse a missing or empty file (unless creating), and a file shorter
/// than its own header says (truncated).
fn check_file(path: &Path, name: &str, create: bool) -> Result<(), OpenError> {
    let not_a_store = |why: &str| OpenError::NotAStore {
        path: name.to_owned(),
        why: why.to_owned(),
    };
    let len = match std::fs::metadata(path) {
        Ok(meta) => meta.len(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return if create {
                Ok(())
            } else {
                Err(not_a_store("no such file"))
            };
        }
        Err(e) => return Err(not_a_store(&e.to_string())),
    };
    if len == 0 {
        return if create {
            Ok(())
        } else {
            Err(not_a_store("the file is empty (zero length)"))
        };
    }
    let mut header = [0_u8; 100];
    let read = {
        use std::io::Read;
        let mut file = std::fs::File::open(path).map_err(|e| not_a_store(&e.to_string()))?;
        file.read(&mut header)
            .map_err(|e| not_a_store(&e.to_string()))?
    };
    if read < header.len() || &header[..16] != b"SQLite format 3\0" {
        return Err(not_a_store("not an SQLite database"));
    }
    // Page size at 16 (1 means 65,536), size in pages at 28, valid when
    // the change counter at 24 equals the one at 92.
    let page_bytes = match u16::from_be_bytes([header[16], header[17]]) {
        1 => 65_536,
        n => u64::from(n),
    };
    let pages = u64::from(u32::from_be_bytes([
        header[28], header[29], header[30], header[31],
    ]));
    let valid = header[24..28] == header[92..96];
    if valid && len < pages * page_bytes {
        return Err(OpenError::Damaged {
            path: name.to_owned(),
            why: format!(
                "the file is truncated: {len} bytes, but its header says {pages} pages of \
                 {page_bytes} bytes"
            ),
        });
    }
    Ok(())
}

/// The identity beside the store must be the store's own; a store without
/// one beside it (first open by this build, or marks removed) records it.
fn check_identity(path: &Path, name: &str, identity: u64, create: bool) -> Result<(), OpenError> {
    let file = identity_file(path);
    let marks_error = |source| OpenError::Marks {
        path: name.to_owned(),
        source,
    };
    match std::fs::read_to_string(&file) {
        Ok(text) => {
            let expected = u64::from_str_radix(text.trim(), 16).ok();
            if expected == Some(identity) {
                return Ok(());
            }
            if let Some(expected) = expected
                && !create
            {
                return Err(OpenError::Foreign {
                    path: name.to_owned(),
                    found: identity,
                    expected,
                    marks: file.display().to_string(),
                });
            }
            tracing::warn!(
                path = %file.display(),
                "store identity beside the store replaced (the store was initialised anew)"
            );
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(marks_error(e)),
    }
    write_synced(&file, format!("{identity:016x}\n").as_bytes()).map_err(marks_error)
}

fn write_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let temporary = path.with_extension("new");
    {
        use std::io::Write;
        let mut file = std::fs::File::create(&temporary)?;
        file.write_all(bytes)?;
        file.sync_all()?;
    }
    std::fs::rename(&temporary, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// Count what `store` holds: every event loaded and verified (so a damaged
/// or shortened event is found, and logged at ERROR, at start).
pub fn summarize(store: &SqliteStore) -> Result<StoreSummary, StoreError> {
    let mut summary = StoreSummary {
        identity: store.identity(),
        ..StoreSummary::default()
    };
    for (event, spec) in store.event_specs()? {
        summary.events += 1;
        if spec.is_err() {
            summary.unrestorable.push(event);
            continue;
        }
        let stored = match store.load_event(event) {
            Ok(stored) => stored,
            Err(StoreError::Damaged(_) | StoreError::Lost(_)) => {
                summary.unrestorable.push(event);
                continue;
            }
            Err(e) => return Err(e),
        };
        let last_seq = stored
            .journal
            .last()
            .map(|r| r.seq)
            .or(stored.snapshot.as_ref().map(|(seq, _)| *seq))
            .unwrap_or(0);
        summary.last_seq = summary.last_seq.max(last_seq);
        let mut orders = 0;
        if let Some((_, bytes)) = &stored.snapshot {
            match EventSnapshot::decode(bytes) {
                Ok(snapshot) => orders += snapshot.orders.len() as u64,
                Err(_) => {
                    summary.unrestorable.push(event);
                    continue;
                }
            }
        }
        for record in &stored.journal {
            if let Ok(JournalRecord {
                entry: JournalEntry::Sold { .. },
                ..
            }) = JournalRecord::decode(&record.bytes)
            {
                orders += 1;
            }
        }
        summary.orders += orders;
    }
    Ok(summary)
}
