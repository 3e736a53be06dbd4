//! High-water marks beside the embedded store: per event, the highest
//! journal seq and counter ceiling the store ever acknowledged, kept where
//! losing the SQLite WAL cannot roll them back with the data.
//!
//! **Why a side file.** SQLite replays its WAL up to the first frame that
//! fails its checksum and drops everything after it; a deleted WAL drops
//! every commit since the last checkpoint. Rows committed together vanish
//! together, so a mark in the same database would vanish with the journal
//! rows it vouches for. The marks live in a directory beside the store
//! (`<store>-marks/`, one 64-byte file per event), written after each
//! commit of the event's journal, snapshot or counter, and before the
//! store call returns, so before anything the commit enables (a reply, a
//! push, a charge) is released.
//!
//! **Format.** Two 32-byte slots, written alternately: generation,
//! journal seq, counter ceiling (all `u64` little-endian) and the first 8
//! bytes of BLAKE3 over the store's identity, the event and those three.
//! A reader takes the valid slot with the highest generation, so a torn
//! write costs one update, never the mark; a slot of another store (its
//! identity differs) or a damaged one is ignored with a warning.
//!
//! **Durability.** A mark update is a `pwrite` into the page cache, not
//! an fsync (a second fsync per group commit would cost the durable
//! throughput far more than its 3 % budget). So the marks survive any
//! process crash (kill -9) exactly; after a power loss they may lag what
//! the store acknowledged by what the kernel had not written back, and
//! then a loss of those last commits goes unnoticed. A snapshot's mark is
//! fsynced. A mark never runs ahead of the store: it is written only
//! after the commit it records, so a lagging mark misses a loss but never
//! invents one.
//!
//! **Several processes.** Only an event's owner writes its mark (writes
//! follow fenced commits). An owner reads the mark when it loads the
//! event, so it continues the generations of the previous owner. A fenced
//! owner that committed just before losing the event may write its older
//! mark last: the mark then lags (a miss, never a false alarm).

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use onsale_schema::EventId;
use rustc_hash::FxHashMap;

const SLOT_BYTES: usize = 32;
const FILE_BYTES: usize = 2 * SLOT_BYTES;

/// What a store acknowledged for one event.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Mark {
    /// Highest journal (or snapshot) seq committed.
    pub seq: u64,
    /// Highest counter ceiling committed.
    pub ceiling: u64,
}

#[derive(Debug)]
struct Open {
    file: File,
    generation: u64,
    mark: Mark,
}

/// The marks of one store. See the module docs.
#[derive(Debug)]
pub struct Marks {
    dir: PathBuf,
    identity: u64,
    /// One open file per event this process wrote or loaded: bounded by
    /// the events in the store.
    open: Mutex<FxHashMap<EventId, Open>>,
}

/// Where the marks of the store at `store` live.
#[must_use]
pub fn dir_of(store: &Path) -> PathBuf {
    let mut name = store.as_os_str().to_owned();
    name.push("-marks");
    PathBuf::from(name)
}

fn check(identity: u64, event: EventId, generation: u64, mark: Mark) -> [u8; 8] {
    let mut hasher = blake3::Hasher::new();
    hasher.update(b"onsale mark v1");
    for word in [identity, event.0, generation, mark.seq, mark.ceiling] {
        hasher.update(&word.to_le_bytes());
    }
    let mut out = [0; 8];
    out.copy_from_slice(&hasher.finalize().as_bytes()[..8]);
    out
}

fn encode(identity: u64, event: EventId, generation: u64, mark: Mark) -> [u8; SLOT_BYTES] {
    let mut slot = [0; SLOT_BYTES];
    slot[0..8].copy_from_slice(&generation.to_le_bytes());
    slot[8..16].copy_from_slice(&mark.seq.to_le_bytes());
    slot[16..24].copy_from_slice(&mark.ceiling.to_le_bytes());
    slot[24..32].copy_from_slice(&check(identity, event, generation, mark));
    slot
}

fn word(bytes: &[u8], at: usize) -> u64 {
    let mut out = [0; 8];
    out.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(out)
}

/// The valid slot with the highest generation, if any.
fn decode(identity: u64, event: EventId, bytes: &[u8]) -> Option<(u64, Mark)> {
    bytes
        .chunks_exact(SLOT_BYTES)
        .filter_map(|slot| {
            let generation = word(slot, 0);
            let mark = Mark {
                seq: word(slot, 8),
                ceiling: word(slot, 16),
            };
            (slot[24..32] == check(identity, event, generation, mark)).then_some((generation, mark))
        })
        .max_by_key(|(generation, _)| *generation)
}

impl Marks {
    /// The marks beside the store at `store`, of the store with `identity`
    /// (the directory is created if missing).
    pub fn open(store: &Path, identity: u64) -> io::Result<Marks> {
        let dir = dir_of(store);
        std::fs::create_dir_all(&dir)?;
        Ok(Marks {
            dir,
            identity,
            open: Mutex::default(),
        })
    }

    /// The file holding `event`'s mark.
    #[must_use]
    pub fn path(&self, event: EventId) -> PathBuf {
        self.dir.join(format!("{}.mark", event.0))
    }

    fn read_file(&self, event: EventId) -> io::Result<Open> {
        let path = self.path(event);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)?;
        let mut bytes = [0; FILE_BYTES];
        let len = read_up_to(&file, &mut bytes)?;
        let found = decode(self.identity, event, &bytes[..len - len % SLOT_BYTES]);
        if found.is_none() && bytes[..len].iter().any(|b| *b != 0) {
            tracing::warn!(
                %event,
                path = %path.display(),
                "the event's high-water mark is damaged or belongs to another store: ignored"
            );
        }
        let (generation, mark) = found.unwrap_or_default();
        Ok(Open {
            file,
            generation,
            mark,
        })
    }

    /// The event's mark as on disk now (zero if none), remembered for the
    /// next [`Marks::raise`].
    pub fn read(&self, event: EventId) -> io::Result<Mark> {
        let open = self.read_file(event)?;
        let mark = open.mark;
        self.lock().insert(event, open);
        Ok(mark)
    }

    /// Raise the event's mark to at least `seq` and `ceiling`, after a
    /// commit that stored them; fsynced if `sync`.
    pub fn raise(&self, event: EventId, seq: u64, ceiling: u64, sync: bool) -> io::Result<()> {
        let mut open = self.lock();
        let entry = match open.entry(event) {
            std::collections::hash_map::Entry::Occupied(entry) => entry.into_mut(),
            std::collections::hash_map::Entry::Vacant(entry) => {
                entry.insert(self.read_file(event)?)
            }
        };
        let mark = Mark {
            seq: entry.mark.seq.max(seq),
            ceiling: entry.mark.ceiling.max(ceiling),
        };
        if mark == entry.mark && !sync {
            return Ok(());
        }
        let generation = entry.generation + 1;
        let slot = (generation % 2) * SLOT_BYTES as u64;
        entry
            .file
            .write_all_at(&encode(self.identity, event, generation, mark), slot)?;
        if sync {
            entry.file.sync_data()?;
        }
        entry.generation = generation;
        entry.mark = mark;
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FxHashMap<EventId, Open>> {
        // A panic mid-update leaves at worst a stale cached mark (a miss).
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn read_up_to(file: &File, buf: &mut [u8]) -> io::Result<usize> {
    let mut len = 0;
    while len < buf.len() {
        match file.read_at(&mut buf[len..], len as u64)? {
            0 => break,
            n => len += n,
        }
    }
    Ok(len)
}

#[cfg(test)]
mod tests {
    use super::*;

    const E: EventId = EventId(3);

    #[test]
    fn a_raised_mark_reads_back_and_never_lowers() {
        let dir = tempfile::tempdir().expect("dir");
        let store = dir.path().join("store.sqlite");
        let marks = Marks::open(&store, 42).expect("marks");
        assert_eq!(marks.read(E).expect("read"), Mark::default());
        marks.raise(E, 10, 100, false).expect("raise");
        marks.raise(E, 5, 200, false).expect("raise");
        let again = Marks::open(&store, 42).expect("marks");
        let want = Mark {
            seq: 10,
            ceiling: 200,
        };
        assert_eq!(again.read(E).expect("read"), want);
    }

    #[test]
    fn a_torn_slot_costs_one_update_and_another_stores_marks_are_ignored() {
        let dir = tempfile::tempdir().expect("dir");
        let store = dir.path().join("store.sqlite");
        let marks = Marks::open(&store, 42).expect("marks");
        marks.raise(E, 10, 0, false).expect("raise");
        marks.raise(E, 11, 0, false).expect("raise");
        let path = marks.path(E);
        let mut bytes = std::fs::read(&path).expect("mark file");
        bytes[0] ^= 0x40; // generation 2 lives in slot 0
        std::fs::write(&path, &bytes).expect("write");
        let reader = Marks::open(&store, 42).expect("marks");
        assert_eq!(reader.read(E).expect("read").seq, 10);
        let foreign = Marks::open(&store, 43).expect("marks");
        assert_eq!(foreign.read(E).expect("read"), Mark::default());
    }
}
