//! Damaged, shortened, emptied and foreign stores: never a silently
//! different state, always a clear refusal naming the event and the
//! record (or the file), or an exact restore.
//!
//! Bits are flipped with a seeded generator (SplitMix64 in
//! `onsale_tests`'s spirit, repeated here so this crate needs no test
//! dependency on the process harness); the raw rows and the WAL are
//! changed behind the store's back with rusqlite and plain file writes.

use std::path::{Path, PathBuf};

use onsale_cluster::store::open::{OpenMode, open_store};
use onsale_cluster::store::sqlite::{OpenError, SqliteStore};
use onsale_cluster::store::{
    Damage, EventLease, FrameError, JournalBytes, NodeId, Sealed, Store, StoreError, StoredEvent,
};
use onsale_schema::{EventId, Millis};
use rusqlite::Connection;

const EVENT: EventId = EventId(7);
const OTHER: EventId = EventId(8);

fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn lease(store: &dyn Store, event: EventId) -> EventLease {
    store
        .acquire_event(event, &NodeId("writer".into()), 60_000, Millis(0))
        .expect("store")
        .expect("free")
}

/// A store with two events: a snapshot at 10, records 11..=20, a counter
/// and a spec each.
fn filled(path: &Path) -> StoredEvent {
    let store = SqliteStore::open(path).expect("store");
    for event in [EVENT, OTHER] {
        store
            .put_event_spec(event, format!("spec of {event}").as_bytes())
            .expect("spec");
        let lease = lease(&store, event);
        let records: Vec<JournalBytes> = (1..=20)
            .map(|seq| JournalBytes {
                seq,
                bytes: format!("record {seq} of {event}").into_bytes(),
            })
            .collect();
        store
            .append_journal(&lease, &records[..10])
            .expect("append");
        store
            .put_snapshot(&lease, 10, b"snapshot at ten")
            .expect("snapshot");
        store
            .append_journal(&lease, &records[10..])
            .expect("append");
        store.reserve_counter(&lease, 4_096).expect("counter");
    }
    store.load_event(EVENT).expect("load")
}

/// The raw stored value of one kind, changed by `change`.
fn tamper(path: &Path, kind: Sealed, seq: Option<u64>, change: impl FnOnce(&mut Vec<u8>)) {
    let conn = Connection::open(path).expect("raw connection");
    let (table, column, key) = match kind {
        Sealed::Snapshot => ("snapshots", "bytes", "event = ?1"),
        Sealed::JournalRecord => ("journal", "bytes", "event = ?1 AND seq = ?2"),
        Sealed::Spec => ("event_specs", "spec", "event = ?1"),
        Sealed::Counter => ("counters", "sealed", "event = ?1"),
    };
    let seq = seq.unwrap_or(0) as i64;
    let select = format!("SELECT {column} FROM {table} WHERE {key} AND ?2 = ?2");
    let mut bytes: Vec<u8> = conn
        .query_row(&select, (EVENT.0 as i64, seq), |row| row.get(0))
        .expect("the value is stored");
    change(&mut bytes);
    let update = format!("UPDATE {table} SET {column} = ?3 WHERE {key} AND ?2 = ?2");
    conn.execute(&update, (EVENT.0 as i64, seq, bytes))
        .expect("tampered");
}

fn damage_of(store: &SqliteStore, kind: Sealed) -> Damage {
    if kind == Sealed::Spec {
        let specs = store.event_specs().expect("specs list");
        assert!(
            specs.iter().any(|(e, s)| *e == OTHER && s.is_ok()),
            "the other event's spec is still listed intact"
        );
        let (_, spec) = specs
            .into_iter()
            .find(|(e, _)| *e == EVENT)
            .expect("listed");
        return spec.expect_err("a damaged spec is refused");
    }
    match store.load_event(EVENT) {
        Err(StoreError::Damaged(damage)) => damage,
        other => panic!("a damaged {kind} must be refused as Damaged, got {other:?}"),
    }
}

/// Every single-bit flip, anywhere in any stored kind, is refused and
/// named (seeded: 40 flips per kind, each on a fresh copy).
#[test]
fn a_flipped_bit_in_any_stored_value_is_refused_naming_the_event_and_record() {
    let mut rng = 11_u64;
    let kinds = [
        (Sealed::Snapshot, Some(10)),
        (Sealed::JournalRecord, Some(15)),
        (Sealed::Spec, None),
        (Sealed::Counter, None),
    ];
    for (kind, seq) in kinds {
        for _ in 0..40 {
            let dir = tempfile::tempdir().expect("dir");
            let path = dir.path().join("store.sqlite");
            filled(&path);
            let mut flipped = 0;
            tamper(&path, kind, seq, |bytes| {
                flipped = (splitmix(&mut rng) % (bytes.len() as u64 * 8)) as usize;
                bytes[flipped / 8] ^= 1 << (flipped % 8);
            });
            let store = SqliteStore::open(&path).expect("store");
            let damage = damage_of(&store, kind);
            assert_eq!((damage.event, damage.kind, damage.seq), (EVENT, kind, seq));
            assert!(
                matches!(
                    damage.problem,
                    FrameError::Checksum | FrameError::NotFramed | FrameError::FutureVersion(_)
                ),
                "bit {flipped}: {damage}"
            );
            store
                .load_event(OTHER)
                .expect("the other event still loads");
        }
    }
}

#[test]
fn the_error_says_which_record_of_which_event() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("store.sqlite");
    filled(&path);
    tamper(&path, Sealed::JournalRecord, Some(15), |bytes| {
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
    });
    let store = SqliteStore::open(&path).expect("store");
    let err = store.load_event(EVENT).expect_err("refused");
    assert_eq!(
        err.to_string(),
        format!("{EVENT} cannot be restored: checksum mismatch in journal record 15")
    );
}

/// A value moved to another key (here record 14's bytes under 15) fails
/// like a damaged one: the key is in the checksum.
#[test]
fn a_record_under_the_wrong_seq_is_refused() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("store.sqlite");
    filled(&path);
    let conn = Connection::open(&path).expect("raw");
    conn.execute(
        "UPDATE journal SET bytes = (SELECT bytes FROM journal WHERE event = ?1 AND seq = 14)
         WHERE event = ?1 AND seq = 15",
        [EVENT.0 as i64],
    )
    .expect("moved");
    drop(conn);
    let store = SqliteStore::open(&path).expect("store");
    let damage = damage_of(&store, Sealed::JournalRecord);
    assert_eq!(damage.seq, Some(15));
}

/// Journal rows after the snapshot that vanish, or a counter that goes
/// back, are noticed against the high-water mark beside the store.
#[test]
fn vanished_journal_rows_or_a_lowered_counter_refuse_to_restore() {
    for (what, sql) in [
        ("tail", "DELETE FROM journal WHERE event = ?1 AND seq > 17"),
        (
            "all after the snapshot",
            "DELETE FROM journal WHERE event = ?1",
        ),
        ("counter", "DELETE FROM counters WHERE event = ?1"),
        (
            "snapshot and journal",
            "DELETE FROM snapshots WHERE event = ?1; ",
        ),
    ] {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("store.sqlite");
        filled(&path);
        let conn = Connection::open(&path).expect("raw");
        conn.execute(sql.trim_end_matches("; "), [EVENT.0 as i64])
            .expect("deleted");
        if what == "snapshot and journal" {
            conn.execute("DELETE FROM journal WHERE event = ?1", [EVENT.0 as i64])
                .expect("deleted");
        }
        drop(conn);
        let store = SqliteStore::open(&path).expect("store");
        match store.load_event(EVENT) {
            Err(StoreError::Lost(lost)) => {
                assert_eq!((lost.event, lost.marked_seq), (EVENT, 20), "{what}");
                assert_eq!(lost.marked_ceiling, 4_096, "{what}");
                assert!(lost.to_string().contains("lost committed data"), "{what}");
            }
            other => panic!("{what}: a shortened event must be Lost, got {other:?}"),
        }
        store.load_event(OTHER).expect("the other event loads");
    }
}

/// Copy the store as a crash would leave it: database, WAL and marks, with
/// the store still open (so the WAL holds the recent commits).
fn crash_image(from: &Path, to: &Path) {
    for suffix in ["", "-wal"] {
        let mut src = from.as_os_str().to_owned();
        src.push(suffix);
        let mut dst = to.as_os_str().to_owned();
        dst.push(suffix);
        std::fs::copy(PathBuf::from(src), PathBuf::from(dst)).expect("copied");
    }
    let marks = onsale_cluster::store::marks::dir_of(from);
    let to_marks = onsale_cluster::store::marks::dir_of(to);
    std::fs::create_dir_all(&to_marks).expect("marks dir");
    for entry in std::fs::read_dir(marks).expect("marks") {
        let entry = entry.expect("entry");
        std::fs::copy(entry.path(), to_marks.join(entry.file_name())).expect("mark copied");
    }
}

fn wal_of(path: &Path) -> PathBuf {
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    PathBuf::from(wal)
}

/// SQLite stops replaying its WAL at the first bad frame and drops every
/// commit after it; a deleted WAL drops every commit since the last
/// checkpoint. Either way the event comes back shorter than its mark, and
/// is refused; an intact crash image restores exactly.
#[test]
fn a_damaged_or_deleted_wal_is_noticed_and_an_intact_one_restores_exactly() {
    let dir = tempfile::tempdir().expect("dir");
    let live = dir.path().join("live.sqlite");
    // Open first and keep open, so that the commits stay in the WAL.
    let (keep_open, _) = open_store(&live, OpenMode::Init).expect("the store stays open");
    let expected = filled(&live);
    let wal_len = std::fs::metadata(wal_of(&live)).expect("a WAL").len();
    assert!(
        wal_len > 4_096,
        "the commits are in the WAL ({wal_len} bytes)"
    );

    let intact = dir.path().join("intact.sqlite");
    crash_image(&live, &intact);
    let (store, _) = open_store(&intact, OpenMode::Existing).expect("opens");
    assert_eq!(store.load_event(EVENT).expect("exact"), expected);
    drop(store);

    let mut rng = 5_u64;
    for case in 0..12 {
        let image = dir.path().join(format!("image-{case}.sqlite"));
        crash_image(&live, &image);
        let wal = wal_of(&image);
        let mut bytes = std::fs::read(&wal).expect("wal");
        match case {
            0 => bytes.clear(),
            1 => bytes.truncate(bytes.len() / 2),
            _ => {
                // A bit in the last quarter: the final commits are lost.
                let from = bytes.len() * 3 / 4;
                let at = from + (splitmix(&mut rng) as usize % (bytes.len() - from));
                bytes[at] ^= 1 << (splitmix(&mut rng) % 8);
            }
        }
        std::fs::write(&wal, &bytes).expect("damaged");
        let store = match open_store(&image, OpenMode::Existing) {
            Ok((store, _)) => store,
            Err(e) => {
                // Also a refusal; it names the file.
                assert!(e.to_string().contains("image-"), "case {case}: {e}");
                continue;
            }
        };
        match store.load_event(EVENT) {
            Ok(stored) => assert_eq!(stored, expected, "case {case}: never a different state"),
            Err(StoreError::Lost(_) | StoreError::Damaged(_)) => {}
            Err(e) => panic!("case {case}: unclear refusal {e}"),
        }
    }
    drop(keep_open);
}

// ----- opening a node's store -----

#[test]
fn an_empty_or_missing_file_is_refused_unless_told_to_init() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("store.sqlite");
    let err = open_store(&path, OpenMode::Existing).expect_err("missing");
    assert!(matches!(err, OpenError::NotAStore { .. }), "{err}");
    std::fs::write(&path, b"").expect("empty file");
    let err = open_store(&path, OpenMode::Existing).expect_err("empty");
    assert!(err.to_string().contains("empty"), "{err}");
    assert!(err.to_string().contains("--init"), "{err}");
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );
    let (store, summary) = open_store(&path, OpenMode::Init).expect("init");
    assert_eq!(summary.events, 0);
    assert_eq!(summary.identity, store.identity());
    drop(store);
    let (_, again) = open_store(&path, OpenMode::Existing).expect("now it exists");
    assert_eq!(again.identity, summary.identity, "the identity is kept");
}

#[test]
fn the_summary_counts_events_and_names_the_unrestorable_ones() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("store.sqlite");
    filled(&path);
    tamper(&path, Sealed::Snapshot, Some(10), |bytes| bytes[12] ^= 4);
    let (_, summary) = open_store(&path, OpenMode::Existing).expect("opens");
    assert_eq!(summary.events, 2);
    assert_eq!(summary.last_seq, 20);
    // (The other event's "snapshot" is not a real one: it is listed too.)
    assert_eq!(summary.unrestorable.first(), Some(&EVENT));
    let line = summary.to_string();
    assert!(line.contains("2 events"), "{line}");
    assert!(line.contains("cannot be restored"), "{line}");
}

#[test]
fn another_store_in_its_place_is_refused_as_foreign() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("store.sqlite");
    let other = dir.path().join("other.sqlite");
    open_store(&path, OpenMode::Init).expect("init");
    drop(open_store(&other, OpenMode::Init).expect("another store"));
    std::fs::copy(&other, &path).expect("swapped");
    let err = open_store(&path, OpenMode::Existing).expect_err("foreign");
    assert!(matches!(err, OpenError::Foreign { .. }), "{err}");
    open_store(&path, OpenMode::Init).expect("told to init, it adopts the new store");
    open_store(&path, OpenMode::Existing).expect("and keeps it");
}

#[test]
fn a_truncated_store_file_is_named_as_damaged_not_disk_io() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("store.sqlite");
    filled(&path);
    let mut bytes = std::fs::read(&path).expect("store");
    assert!(bytes.len() > 8_192, "the store has several pages");
    bytes.truncate(bytes.len() / 2);
    std::fs::write(&path, &bytes).expect("truncated");
    let err = open_store(&path, OpenMode::Existing).expect_err("truncated");
    let text = err.to_string();
    assert!(matches!(err, OpenError::Damaged { .. }), "{text}");
    assert!(text.contains("truncated"), "{text}");
    assert!(text.contains(&path.display().to_string()), "{text}");
}

/// A store written by the build before frames (schema 1, values bare) is
/// sealed when opened and reads back exactly.
#[test]
fn a_schema_1_store_is_sealed_on_open_and_reads_the_same() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("old.sqlite");
    let conn = Connection::open(&path).expect("raw");
    conn.execute_batch(
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
         INSERT INTO meta VALUES ('schema_version', 1);
         CREATE TABLE event_leases (event INTEGER PRIMARY KEY, node TEXT NOT NULL,
             epoch INTEGER NOT NULL, expires_ms INTEGER NOT NULL);
         CREATE TABLE snapshots (event INTEGER PRIMARY KEY, seq INTEGER NOT NULL,
             bytes BLOB NOT NULL);
         CREATE TABLE journal (event INTEGER NOT NULL, seq INTEGER NOT NULL,
             bytes BLOB NOT NULL, PRIMARY KEY (event, seq)) WITHOUT ROWID;
         CREATE TABLE counters (event INTEGER PRIMARY KEY, ceiling INTEGER NOT NULL);
         CREATE TABLE event_specs (event INTEGER PRIMARY KEY, spec BLOB NOT NULL);
         INSERT INTO snapshots VALUES (7, 2, x'04070102');
         INSERT INTO journal VALUES (7, 3, x'040703');
         INSERT INTO journal VALUES (7, 4, x'040704');
         INSERT INTO counters VALUES (7, 512);
         INSERT INTO event_specs VALUES (7, x'0701');",
    )
    .expect("an old store");
    drop(conn);
    let store = SqliteStore::open(&path).expect("migrates");
    let stored = store.load_event(EVENT).expect("loads");
    assert_eq!(stored.snapshot, Some((2, vec![4, 7, 1, 2])));
    let journal: Vec<(u64, Vec<u8>)> = stored
        .journal
        .into_iter()
        .map(|r| (r.seq, r.bytes))
        .collect();
    assert_eq!(journal, vec![(3, vec![4, 7, 3]), (4, vec![4, 7, 4])]);
    assert_eq!(stored.counter_ceiling, 512);
    assert_eq!(
        store.event_specs().expect("specs"),
        vec![(EVENT, Ok(vec![7, 1]))]
    );
    // And from now on every value is checked.
    drop(store);
    tamper(&path, Sealed::JournalRecord, Some(4), |bytes| {
        bytes[11] ^= 1
    });
    let store = SqliteStore::open(&path).expect("opens");
    assert_eq!(damage_of(&store, Sealed::JournalRecord).seq, Some(4));
}
