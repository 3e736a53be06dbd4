//! The embedded store: the whole conformance suite on file-backed stores
//! (one test per check) and in memory, plus what only SQLite has: several
//! stores, and several processes, sharing one file; schema versions; files
//! that are not stores.

use std::cell::Cell;
use std::path::Path;
use std::process::{Command, Stdio};

use onsale_cluster::store::conformance::{self, MakeStore};
use onsale_cluster::store::sqlite::{OpenError, SCHEMA_VERSION, SqliteStore};
use onsale_cluster::store::{EventLease, JournalBytes, NodeId, Store, StoreError};
use onsale_schema::{EventId, Millis};

/// Run `check` with a factory of fresh stores, each in its own new file in
/// a temporary directory removed afterwards.
fn with_file_stores(check: fn(MakeStore<'_>)) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let made = Cell::new(0_u32);
    let make = || -> Box<dyn Store> {
        made.set(made.get() + 1);
        let path = dir.path().join(format!("store-{}.sqlite", made.get()));
        Box::new(SqliteStore::open(&path).expect("a new store file opens"))
    };
    check(&make);
}

macro_rules! conformance_tests {
    ($($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                with_file_stores(conformance::$name);
            }
        )*

        /// A check added to the suite must get its test here too.
        #[test]
        fn every_conformance_check_has_a_test() {
            let mut here = vec![$(stringify!($name)),*];
            let mut suite: Vec<&str> = conformance::CHECKS.iter().map(|c| c.name).collect();
            here.sort_unstable();
            suite.sort_unstable();
            assert_eq!(here, suite, "store_sqlite.rs must list every conformance check");
        }
    };
}

conformance_tests!(
    nodes_heartbeat_live_and_expire,
    node_flags_set_clear_and_list_sorted,
    expired_nodes_are_listed_until_forgotten,
    acquire_free_event,
    acquire_refused_while_another_node_holds_a_live_lease,
    acquire_after_expiry_bumps_the_epoch,
    reacquire_by_the_same_node_bumps_the_epoch_and_fences_the_old_lease,
    renew_extends_a_current_lease_and_refuses_a_stale_one,
    renewing_many_leases_at_once_fences_only_the_stale_ones,
    release_lets_another_node_acquire_at_once,
    takeover_of_an_exact_lease_fences_its_holder,
    stale_epoch_writes_are_fenced_and_write_nothing,
    epochs_not_clocks_decide_whether_a_write_lands,
    leases_are_per_event,
    event_leases_lists_every_lease_sorted,
    journal_appends_load_in_order,
    reappending_the_same_records_is_a_no_op,
    reappending_different_bytes_is_a_conflict,
    journal_gaps_are_refused,
    snapshot_compacts_the_journal,
    snapshot_not_newer_than_the_stored_one_is_ignored,
    counter_ceiling_is_never_lowered,
    event_specs_put_replace_and_list_sorted,
    unknown_event_loads_empty,
    large_values_round_trip,
    batch_of_a_thousand_records_and_the_batch_limit,
    extreme_ids_and_times,
    values_that_look_like_frames_round_trip_exactly,
    feed_retention_keeps_what_the_feed_has_not_read,
    feed_cursor_never_moves_back,
);

#[test]
fn in_memory_stores_pass_the_whole_suite() {
    conformance::run_all(&|| Box::new(SqliteStore::open_in_memory().expect("in-memory store")));
}

// ----- sharing one file -----

const TTL_MS: u64 = 1_000;

fn node(name: &str) -> NodeId {
    NodeId(name.to_owned())
}

fn records(from: u64, to: u64, tag: &str) -> Vec<JournalBytes> {
    (from..=to)
        .map(|seq| JournalBytes {
            seq,
            bytes: format!("{tag} {seq}").into_bytes(),
        })
        .collect()
}

fn acquire(store: &SqliteStore, event: EventId, name: &str, now: u64) -> EventLease {
    store
        .acquire_event(event, &node(name), TTL_MS, Millis(now))
        .expect("acquire_event")
        .unwrap_or_else(|| panic!("{name} should acquire {event} at {now}ms"))
}

#[test]
fn two_stores_on_one_file_see_each_others_writes_and_fence_each_other() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shared.sqlite");
    let a = SqliteStore::open(&path).unwrap();
    let b = SqliteStore::open(&path).unwrap();
    let event = EventId(1);

    a.heartbeat_node(&node("node-a"), "a:1", TTL_MS, Millis(0))
        .unwrap();
    b.heartbeat_node(&node("node-b"), "b:1", TTL_MS, Millis(0))
        .unwrap();
    let seen_by_a: Vec<NodeId> = a
        .live_nodes(Millis(1))
        .unwrap()
        .into_iter()
        .map(|n| n.node)
        .collect();
    assert_eq!(
        seen_by_a,
        vec![node("node-a"), node("node-b")],
        "a sees b's heartbeat"
    );

    let lease_a = acquire(&a, event, "node-a", 0);
    assert_eq!(
        b.acquire_event(event, &node("node-b"), TTL_MS, Millis(10))
            .unwrap(),
        None,
        "b sees a's live lease"
    );
    a.append_journal(&lease_a, &records(1, 3, "a")).unwrap();
    a.reserve_counter(&lease_a, 50).unwrap();
    let seen = b.load_event(event).unwrap();
    assert_eq!(seen.journal, records(1, 3, "a"), "b reads a's journal");
    assert_eq!(seen.counter_ceiling, 50);

    // a stalls past expiry; b takes over and continues the journal.
    let lease_b = acquire(&b, event, "node-b", TTL_MS);
    assert!(lease_b.epoch > lease_a.epoch);
    b.append_journal(&lease_b, &records(4, 4, "b")).unwrap();
    assert_eq!(
        a.append_journal(&lease_a, &records(4, 5, "a")),
        Err(StoreError::Fenced {
            event,
            epoch: lease_a.epoch
        }),
        "a is fenced by b's acquire through the shared file"
    );
    assert_eq!(
        a.put_snapshot(&lease_a, 4, b"a's view"),
        Err(StoreError::Fenced {
            event,
            epoch: lease_a.epoch
        })
    );
    let seen = a.load_event(event).unwrap();
    assert_eq!(seen.journal.len(), 4);
    assert_eq!(
        seen.journal[3],
        records(4, 4, "b")[0],
        "a reads b's record, not its own"
    );
}

#[test]
fn a_reopened_file_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("durable.sqlite");
    let event = EventId(9);
    let lease = {
        let store = SqliteStore::open(&path).unwrap();
        let lease = acquire(&store, event, "node-a", 0);
        store.append_journal(&lease, &records(1, 5, "x")).unwrap();
        store.put_snapshot(&lease, 2, b"at 2").unwrap();
        store.reserve_counter(&lease, 77).unwrap();
        store.put_event_spec(event, b"spec").unwrap();
        lease
    };
    let store = SqliteStore::open(&path).unwrap();
    let stored = store.load_event(event).unwrap();
    assert_eq!(stored.snapshot, Some((2, b"at 2".to_vec())));
    assert_eq!(stored.journal, records(3, 5, "x"));
    assert_eq!(stored.counter_ceiling, 77);
    assert_eq!(store.event_lease(event).unwrap(), Some(lease.clone()));
    assert_eq!(
        store.event_specs().unwrap(),
        vec![(event, Ok(b"spec".to_vec()))]
    );
    // The lease from before the reopen still writes: epochs, not
    // connections, decide.
    store.append_journal(&lease, &records(6, 6, "x")).unwrap();
}

// ----- files that are not (this version's) stores -----

#[test]
fn a_file_with_a_newer_schema_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("future.sqlite");
    drop(SqliteStore::open(&path).unwrap());
    set_schema_version(&path, SCHEMA_VERSION + 1);

    match SqliteStore::open(&path) {
        Err(
            err @ OpenError::NewerSchema {
                found, supported, ..
            },
        ) => {
            assert_eq!((found, supported), (SCHEMA_VERSION + 1, SCHEMA_VERSION));
            let message = err.to_string();
            assert!(message.contains("newer"), "the error says why: {message}");
        }
        other => panic!("a newer schema must be refused, got {other:?}"),
    }
    assert_eq!(
        schema_version(&path),
        SCHEMA_VERSION + 1,
        "a refused file is left as it was"
    );
}

#[test]
fn a_file_that_is_not_a_database_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("garbage.sqlite");
    std::fs::write(
        &path,
        b"this is not a SQLite database, just some text. ".repeat(200),
    )
    .unwrap();
    match SqliteStore::open(&path) {
        Err(OpenError::Damaged { path: named, why }) => {
            assert_eq!(
                named,
                path.display().to_string(),
                "the error names the file"
            );
            assert!(!why.is_empty());
        }
        other => panic!("a non-SQLite file must give a Damaged error, got {other:?}"),
    }
}

#[test]
fn an_empty_file_becomes_a_fresh_store() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("empty.sqlite");
    std::fs::write(&path, b"").unwrap();
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(store.event_specs().unwrap(), vec![]);
    assert_eq!(schema_version(&path), SCHEMA_VERSION);
}

#[test]
fn a_directory_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let err = SqliteStore::open(dir.path()).expect_err("a directory is not a store file");
    assert!(matches!(err, OpenError::Store { .. }), "got {err:?}");
}

fn schema_version(path: &Path) -> i64 {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.query_row(
        "SELECT value FROM meta WHERE key = 'schema_version'",
        [],
        |row| row.get(0),
    )
    .unwrap()
}

fn set_schema_version(path: &Path, version: i64) {
    let conn = rusqlite::Connection::open(path).unwrap();
    let changed = conn
        .execute(
            "UPDATE meta SET value = ?1 WHERE key = 'schema_version'",
            [version],
        )
        .unwrap();
    assert_eq!(changed, 1);
}

// ----- several processes -----

/// Set for the child process of `two_processes_share_one_file`: the store
/// file it writes to.
const CHILD_FILE_ENV: &str = "ONSALE_STORE_TEST_CHILD_FILE";
const CHILD_EVENT: EventId = EventId(2);
const SHARED_EVENT: EventId = EventId(3);
/// Appends each process makes, concurrently, of `BATCH` records each.
const APPENDS: u64 = 100;
const BATCH: u64 = 10;

/// Two OS processes write one file at once (each its own event, so both
/// wait on each other's write locks), then the child takes over an event
/// the parent owned and the parent finds itself fenced.
#[test]
fn two_processes_share_one_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("processes.sqlite");
    let store = SqliteStore::open(&path).unwrap();
    let parent_event = EventId(1);
    let lease = acquire(&store, parent_event, "parent", 0);
    let shared = acquire(&store, SHARED_EVENT, "parent", 0);
    store
        .append_journal(&shared, &records(1, 1, "parent"))
        .unwrap();

    // The child's test-harness output is captured (so that it does not
    // read as this binary's result) and shown only if it failed.
    let child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "multi_process_child", "--test-threads=1"])
        .env(CHILD_FILE_ENV, &path)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the test binary as a child");
    for i in 0..APPENDS {
        store
            .append_journal(&lease, &records(i * BATCH + 1, (i + 1) * BATCH, "parent"))
            .unwrap();
    }
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "the child process failed: {}\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );

    let mine = store.load_event(parent_event).unwrap();
    assert_eq!(mine.journal, records(1, APPENDS * BATCH, "parent"));
    let childs = store.load_event(CHILD_EVENT).unwrap();
    assert_eq!(
        childs.journal,
        records(1, APPENDS * BATCH, "child"),
        "the child's writes are seen"
    );
    assert_eq!(
        store.append_journal(&shared, &records(3, 3, "parent")),
        Err(StoreError::Fenced {
            event: SHARED_EVENT,
            epoch: shared.epoch
        }),
        "the child's acquire fenced the parent"
    );
    let both = store.load_event(SHARED_EVENT).unwrap();
    assert_eq!(
        both.journal.iter().map(|r| r.seq).collect::<Vec<_>>(),
        vec![1, 2]
    );
}

/// The child half of `two_processes_share_one_file`; does nothing when
/// run on its own.
#[test]
fn multi_process_child() {
    let Some(path) = std::env::var_os(CHILD_FILE_ENV) else {
        return;
    };
    let store = SqliteStore::open(&path).unwrap();
    let lease = acquire(&store, CHILD_EVENT, "child", 0);
    for i in 0..APPENDS {
        store
            .append_journal(&lease, &records(i * BATCH + 1, (i + 1) * BATCH, "child"))
            .unwrap();
    }
    // The parent's lease on the shared event expired at TTL_MS.
    let taken = acquire(&store, SHARED_EVENT, "child", TTL_MS);
    store
        .append_journal(&taken, &records(2, 2, "child"))
        .unwrap();
}
