//! Bad data in the store, and a store that fails: a node must refuse what
//! it cannot trust with a clear error, never panic, keep serving its other
//! events, and never acknowledge what was not stored.

use std::time::Duration;

use onsale_cluster::rpc::Client;
use onsale_cluster::store::sqlite::SqliteStore;
use onsale_cluster::store::{JournalBytes, NodeId, Store};
use onsale_schema::message::{Command, Reply, SaleCommand};
use onsale_schema::snapshot::{EventSnapshot, JournalEntry, JournalRecord, SCHEMA_VERSION};
use onsale_schema::{ErrorCode, EventConfig, EventId, FanId, Millis, Position};
use onsale_tests::{NodeProcess, OPERATOR_TOKEN, now_ms, scratch_dir, spec, venue_json};

const GOOD: EventId = EventId(1);

/// A valid snapshot of a fresh event, as the node itself would write it.
fn snapshot_of(event: EventId) -> EventSnapshot {
    let s = spec(event.0, venue_json(1, 1, 10), EventConfig::default());
    let venue = std::sync::Arc::new(s.venue().expect("venue"));
    onsale_actors::EventCore::new(event, venue, s.config.clone(), Millis(now_ms()))
        .expect("core")
        .snapshot()
}

/// Plant an event whose stored state is `damage`d, as a foreign writer
/// holding the lease would.
fn plant(store: &SqliteStore, event: EventId, damage: &str) {
    let s = spec(event.0, venue_json(1, 1, 10), EventConfig::default());
    store
        .put_event_spec(event, &s.encode().expect("spec"))
        .expect("spec stored");
    let writer = NodeId("planter".into());
    let lease = store
        .acquire_event(event, &writer, 60_000, Millis(now_ms()))
        .expect("store")
        .expect("lease");
    let snapshot = snapshot_of(event);
    let good = snapshot.encode().expect("encodes");
    let record = |seq: u64, event: EventId| JournalRecord {
        schema_version: SCHEMA_VERSION,
        event,
        seq,
        at: Millis(now_ms()),
        entry: JournalEntry::Entered { fan: FanId(1) },
    };
    match damage {
        "garbage snapshot" => store
            .put_snapshot(&lease, 1, b"\xff\x00 not a snapshot")
            .unwrap(),
        "truncated snapshot" => store
            .put_snapshot(&lease, 1, &good[..good.len() / 2])
            .unwrap(),
        "future snapshot" => {
            let mut future = snapshot;
            future.schema_version = SCHEMA_VERSION + 1;
            store
                .put_snapshot(&lease, 1, &future.encode().unwrap())
                .unwrap();
        }
        "garbage journal" => {
            store.put_snapshot(&lease, 0, &good).unwrap();
            let bytes = b"\x01\x02\x03 garbage".to_vec();
            store
                .append_journal(&lease, &[JournalBytes { seq: 1, bytes }])
                .unwrap();
        }
        "journal of another event" => {
            store.put_snapshot(&lease, 0, &good).unwrap();
            let bytes = record(1, EventId(999)).encode().unwrap();
            store
                .append_journal(&lease, &[JournalBytes { seq: 1, bytes }])
                .unwrap();
        }
        "impossible journal entry" => {
            // A fan "entered" who was never admitted: refused, not believed.
            store.put_snapshot(&lease, 0, &good).unwrap();
            let bytes = record(1, event).encode().unwrap();
            store
                .append_journal(&lease, &[JournalBytes { seq: 1, bytes }])
                .unwrap();
        }
        other => panic!("unknown damage {other}"),
    }
    store.reserve_counter(&lease, 5).unwrap();
    store.release_event(&lease).unwrap();
}

const DAMAGES: [&str; 6] = [
    "garbage snapshot",
    "truncated snapshot",
    "future snapshot",
    "garbage journal",
    "journal of another event",
    "impossible journal entry",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_stored_state_is_refused_clearly_and_other_events_go_on() {
    let dir = scratch_dir("bad-store");
    let path = dir.join("onsale.db");
    {
        let store = SqliteStore::open(&path).expect("store");
        for (i, damage) in DAMAGES.iter().enumerate() {
            plant(&store, EventId(100 + i as u64), damage);
        }
    }
    let node = NodeProcess::start(&path, &["--lease-ttl-ms", "1000"])
        .expect("node starts despite bad data");
    let client = Client::connect(&node.addr, OPERATOR_TOKEN.as_bytes())
        .await
        .expect("connects");
    let created = client
        .create_event(spec(GOOD.0, venue_json(1, 1, 10), EventConfig::default()))
        .await
        .expect("create");
    assert!(matches!(created, Reply::Overview { .. }), "{created:?}");
    for (i, damage) in DAMAGES.iter().enumerate() {
        let reply = client
            .call(EventId(100 + i as u64), Command::Overview)
            .await
            .expect("reply");
        match reply {
            Reply::Error {
                code: ErrorCode::Internal,
                message,
            } => {
                assert!(
                    message.contains("cannot be restored"),
                    "{damage}: unclear error {message:?}"
                );
                eprintln!("{damage}: {message}");
            }
            other => panic!("{damage}: the node served an event it cannot trust: {other:?}"),
        }
    }
    // An existing event's venue and settings cannot be replaced: its
    // journal indexes seats of the venue it was created with.
    let replaced = client
        .create_event(spec(GOOD.0, venue_json(2, 2, 5), EventConfig::default()))
        .await
        .expect("create again");
    assert!(
        matches!(
            replaced,
            Reply::Error {
                code: ErrorCode::EventExists,
                ..
            }
        ),
        "an event's spec was replaced: {replaced:?}"
    );
    // The good event, and the node, are unaffected.
    let opened = client
        .call(
            GOOD,
            Command::Sale {
                command: SaleCommand::Open,
            },
        )
        .await
        .expect("open");
    assert!(matches!(opened, Reply::Sale { .. }), "{opened:?}");
    let unknown = client
        .call(EventId(5_555), Command::Overview)
        .await
        .expect("reply");
    assert!(
        matches!(
            unknown,
            Reply::Error {
                code: ErrorCode::UnknownEvent,
                ..
            }
        ),
        "{unknown:?}"
    );
}

/// A store that refuses every write: the event keeps retrying for a while,
/// then stops without ever acknowledging the unstored change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_fails_every_write_gets_nothing_acknowledged() {
    let dir = scratch_dir("failing-store");
    let path = dir.join("onsale.db");
    let node = NodeProcess::start(&path, &["--fault-fail-every", "1"]).expect("node starts");
    let client = Client::connect(&node.addr, OPERATOR_TOKEN.as_bytes())
        .await
        .expect("connects");
    let created = client
        .create_event(spec(GOOD.0, venue_json(1, 1, 10), EventConfig::default()))
        .await
        .expect("create");
    assert!(matches!(created, Reply::Overview { .. }), "{created:?}");
    let started = std::time::Instant::now();
    let opened = client
        .call(
            GOOD,
            Command::Sale {
                command: SaleCommand::Open,
            },
        )
        .await;
    assert!(
        !matches!(opened, Ok(Reply::Sale { .. })),
        "opening the sale was acknowledged though it was never stored: {opened:?}"
    );
    eprintln!("refused after {:?}: {opened:?}", started.elapsed());
    assert!(started.elapsed() < Duration::from_secs(60));
    let _ = Position(0);
}
