//! The store conformance suite: what every [`Store`] backend must do.
//!
//! Each check takes a factory and makes its own fresh, empty store, so
//! checks are independent and may run in any order or in parallel. A
//! backend's test file runs them all, either with [`run_all`] or one test
//! per entry of [`CHECKS`]. A failing check panics with a message naming
//! what went wrong.
//!
//! Times are small numbers of ms from 0: the store keeps no clock, so any
//! `now` works.

use onsale_schema::{EventId, Millis};

use super::{
    Acquisition, EventLease, FeedCursor, JOURNAL_APPEND_BYTES_MAX, JournalBytes, NodeFlags, NodeId,
    NodeRecord, Store, StoreError, StoredEvent,
};

/// Makes a fresh, empty store.
pub type MakeStore<'a> = &'a dyn Fn() -> Box<dyn Store>;

/// One named check.
#[derive(Clone, Copy, Debug)]
pub struct Check {
    pub name: &'static str,
    pub run: fn(MakeStore<'_>),
}

macro_rules! checks {
    ($($name:ident),* $(,)?) => {
        /// Every check, in the order [`run_all`] runs them.
        pub const CHECKS: &[Check] = &[$(Check { name: stringify!($name), run: $name }),*];
    };
}

checks!(
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

/// Run every check, each on a fresh store from `make`, printing its name.
pub fn run_all(make: MakeStore<'_>) {
    for check in CHECKS {
        eprintln!("store conformance: {} ...", check.name);
        (check.run)(make);
    }
    eprintln!("store conformance: {} checks passed", CHECKS.len());
}

// ----- helpers -----

const TTL_MS: u64 = 1_000;

fn node(name: &str) -> NodeId {
    NodeId(name.to_owned())
}

fn record(seq: u64, tag: &str) -> JournalBytes {
    JournalBytes {
        seq,
        bytes: format!("record {seq} {tag}").into_bytes(),
    }
}

/// Records `from..=to`, tagged.
fn records(from: u64, to: u64, tag: &str) -> Vec<JournalBytes> {
    (from..=to).map(|seq| record(seq, tag)).collect()
}

fn seqs(stored: &StoredEvent) -> Vec<u64> {
    stored.journal.iter().map(|r| r.seq).collect()
}

/// Deterministic bytes that do not compress or repeat by chunk.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state.to_le_bytes()[0]
        })
        .collect()
}

/// Every spec, each of which must be intact.
fn specs(store: &dyn Store) -> Vec<(EventId, Vec<u8>)> {
    let listed = store.event_specs().expect("event_specs");
    listed
        .into_iter()
        .map(|(event, spec)| {
            (
                event,
                spec.unwrap_or_else(|e| panic!("spec of {event}: {e}")),
            )
        })
        .collect()
}

fn acquire(store: &dyn Store, event: EventId, name: &str, now: u64) -> EventLease {
    match store.acquire_event(event, &node(name), TTL_MS, Millis(now)) {
        Ok(Some(lease)) => lease,
        other => panic!("{name} should acquire {event} at {now}ms, got {other:?}"),
    }
}

fn load(store: &dyn Store, event: EventId) -> StoredEvent {
    store
        .load_event(event)
        .unwrap_or_else(|e| panic!("load_event({event}) failed: {e}"))
}

fn assert_fenced<T: std::fmt::Debug>(
    result: Result<T, StoreError>,
    lease: &EventLease,
    what: &str,
) {
    match result {
        Err(StoreError::Fenced { event, epoch }) => {
            assert_eq!(
                (event, epoch),
                (lease.event, lease.epoch),
                "{what}: Fenced should name the stale lease's event and epoch"
            );
        }
        other => panic!("{what} with stale lease {lease:?} should be Fenced, got {other:?}"),
    }
}

fn assert_conflict<T: std::fmt::Debug>(result: Result<T, StoreError>, what: &str) {
    assert!(
        matches!(result, Err(StoreError::Conflict(_))),
        "{what} should be a Conflict, got {result:?}"
    );
}

fn append(store: &dyn Store, lease: &EventLease, batch: &[JournalBytes]) {
    store.append_journal(lease, batch).unwrap_or_else(|e| {
        let (first, last) = (batch.first().map(|r| r.seq), batch.last().map(|r| r.seq));
        panic!("append of seqs {first:?}..={last:?} should succeed, got {e}")
    });
}

// ----- nodes -----

/// Heartbeats register and refresh nodes; a node is live until its expiry
/// (exclusive); live nodes come sorted by name.
pub fn nodes_heartbeat_live_and_expire(make: MakeStore<'_>) {
    let store = make();
    assert_eq!(
        store.live_nodes(Millis(0)).unwrap(),
        vec![],
        "a fresh store has no nodes"
    );
    store
        .heartbeat_node(&node("node-b"), "10.0.0.2:7000", TTL_MS, Millis(0))
        .unwrap();
    store
        .heartbeat_node(&node("node-a"), "10.0.0.1:7000", TTL_MS, Millis(100))
        .unwrap();
    let live = store.live_nodes(Millis(500)).unwrap();
    assert_eq!(
        live,
        vec![
            NodeRecord {
                node: node("node-a"),
                addr: "10.0.0.1:7000".into(),
                expires: Millis(1_100)
            },
            NodeRecord {
                node: node("node-b"),
                addr: "10.0.0.2:7000".into(),
                expires: Millis(1_000)
            },
        ],
        "both nodes live, sorted by name, expiring at now + ttl"
    );

    // node-a refreshes with a new address; node-b stops heartbeating.
    store
        .heartbeat_node(&node("node-a"), "10.0.0.9:7001", TTL_MS, Millis(900))
        .unwrap();
    let live = store.live_nodes(Millis(1_000)).unwrap();
    assert_eq!(
        live,
        vec![NodeRecord {
            node: node("node-a"),
            addr: "10.0.0.9:7001".into(),
            expires: Millis(1_900)
        }],
        "node-b expired at exactly 1000ms; node-a refreshed with its new address"
    );
    assert_eq!(
        store.live_nodes(Millis(1_900)).unwrap(),
        vec![],
        "a lease is dead at its expiry"
    );

    // A dead node comes back by heartbeating again.
    store
        .heartbeat_node(&node("node-b"), "10.0.0.2:7000", TTL_MS, Millis(5_000))
        .unwrap();
    let names: Vec<NodeId> = store
        .live_nodes(Millis(5_000))
        .unwrap()
        .into_iter()
        .map(|r| r.node)
        .collect();
    assert_eq!(
        names,
        vec![node("node-b")],
        "a heartbeat revives an expired node"
    );
}

/// Every registered node is listed, expired or not, until forgotten (with
/// its flags).
pub fn expired_nodes_are_listed_until_forgotten(make: MakeStore<'_>) {
    let store = make();
    store
        .heartbeat_node(&node("node-b"), "10.0.0.2:7000", TTL_MS, Millis(0))
        .unwrap();
    store
        .heartbeat_node(&node("node-a"), "10.0.0.1:7000", TTL_MS, Millis(5_000))
        .unwrap();
    let flags = NodeFlags {
        cordoned: true,
        draining: false,
    };
    store.set_node_flags(&node("node-b"), flags).unwrap();
    let names =
        |records: Vec<NodeRecord>| -> Vec<NodeId> { records.into_iter().map(|r| r.node).collect() };
    assert_eq!(
        names(store.live_nodes(Millis(5_000)).unwrap()),
        vec![node("node-a")]
    );
    let all = store.nodes().unwrap();
    assert_eq!(
        names(all.clone()),
        vec![node("node-a"), node("node-b")],
        "the dead too"
    );
    assert_eq!(all[1].expires, Millis(TTL_MS), "with its last expiry");
    store.forget_node(&node("node-b")).unwrap();
    assert_eq!(
        names(store.nodes().unwrap()),
        vec![node("node-a")],
        "forgotten"
    );
    assert_eq!(
        store.node_flags().unwrap(),
        vec![],
        "its flags forgotten with it"
    );
    store.forget_node(&node("node-z")).unwrap();
}

/// Operators' flags on nodes: set, replaced, cleared (a cleared node is
/// not listed), for nodes live or not.
pub fn node_flags_set_clear_and_list_sorted(make: MakeStore<'_>) {
    let store = make();
    assert_eq!(
        store.node_flags().unwrap(),
        vec![],
        "a fresh store flags no node"
    );
    let cordoned = NodeFlags {
        cordoned: true,
        draining: false,
    };
    let draining = NodeFlags {
        cordoned: true,
        draining: true,
    };
    store.set_node_flags(&node("node-b"), draining).unwrap();
    store.set_node_flags(&node("node-a"), cordoned).unwrap();
    store
        .set_node_flags(&node("node-c"), NodeFlags::default())
        .unwrap();
    assert_eq!(
        store.node_flags().unwrap(),
        vec![(node("node-a"), cordoned), (node("node-b"), draining)],
        "flagged nodes sorted by name; clear flags store nothing"
    );
    store.set_node_flags(&node("node-b"), cordoned).unwrap();
    store
        .set_node_flags(&node("node-a"), NodeFlags::default())
        .unwrap();
    assert_eq!(
        store.node_flags().unwrap(),
        vec![(node("node-b"), cordoned)],
        "flags replace; clearing removes the entry"
    );
    assert_eq!(
        store.live_nodes(Millis(0)).unwrap(),
        vec![],
        "flags are not heartbeats: no node became live"
    );
}

// ----- event leases -----

/// Nobody holds a new event: acquiring it succeeds and is visible.
pub fn acquire_free_event(make: MakeStore<'_>) {
    let store = make();
    let event = EventId(1);
    assert_eq!(
        store.event_lease(event).unwrap(),
        None,
        "a fresh event has no lease"
    );
    let lease = acquire(&*store, event, "node-a", 0);
    assert_eq!(lease.event, event);
    assert_eq!(lease.node, node("node-a"));
    assert!(
        lease.epoch >= 1,
        "epochs start above 0, got {}",
        lease.epoch
    );
    assert_eq!(
        lease.expires,
        Millis(TTL_MS),
        "a lease expires at now + ttl"
    );
    assert_eq!(
        store.event_lease(event).unwrap(),
        Some(lease),
        "event_lease returns the lease"
    );
}

/// While node-a's lease is live, node-b is told node-a holds it (the lease
/// as stored) and changes nothing.
pub fn acquire_refused_while_another_node_holds_a_live_lease(make: MakeStore<'_>) {
    let store = make();
    let event = EventId(2);
    let lease = acquire(&*store, event, "node-a", 0);
    for now in [0, 1, TTL_MS - 1] {
        let got = store
            .acquire_event(event, &node("node-b"), TTL_MS, Millis(now))
            .unwrap();
        assert_eq!(got, None, "node-b must not take a live lease at {now}ms");
        let got = store
            .acquire_event_or_holder(event, &node("node-b"), TTL_MS, Millis(now))
            .unwrap();
        assert_eq!(
            got,
            Acquisition::HeldBy(lease.clone()),
            "node-b must not take a live lease at {now}ms, and learns who holds it"
        );
    }
    assert_eq!(
        store.event_lease(event).unwrap(),
        Some(lease),
        "a refused acquire changes nothing"
    );
}

/// Once node-a's lease expired, node-b takes the event at a higher epoch.
pub fn acquire_after_expiry_bumps_the_epoch(make: MakeStore<'_>) {
    let store = make();
    let event = EventId(3);
    let old = acquire(&*store, event, "node-a", 0);
    let new = acquire(&*store, event, "node-b", TTL_MS);
    assert!(
        new.epoch > old.epoch,
        "takeover epoch {} must exceed {}",
        new.epoch,
        old.epoch
    );
    assert_eq!(new.node, node("node-b"));
    assert_eq!(store.event_lease(event).unwrap(), Some(new.clone()));
    assert_fenced(
        store.reserve_counter(&old, 10),
        &old,
        "reserve_counter by the expired owner",
    );
    assert_eq!(
        store.reserve_counter(&new, 10).unwrap(),
        10,
        "the new owner writes"
    );
}

/// A node acquiring its own event again (a restarted process) gets a new
/// epoch, and its previous lease is fenced.
pub fn reacquire_by_the_same_node_bumps_the_epoch_and_fences_the_old_lease(make: MakeStore<'_>) {
    let store = make();
    let event = EventId(4);
    let first = acquire(&*store, event, "node-a", 0);
    let second = acquire(&*store, event, "node-a", 10);
    assert!(second.epoch > first.epoch, "re-acquire must bump the epoch");
    assert_fenced(
        store.append_journal(&first, &records(1, 1, "old")),
        &first,
        "append",
    );
    assert_fenced(
        store.renew_event(&first, TTL_MS, Millis(20)),
        &first,
        "renew",
    );
    append(&*store, &second, &records(1, 1, "new"));
    assert_eq!(load(&*store, event).journal, records(1, 1, "new"));
}

/// A node's leases renewed in one call: the current ones extended, a
/// stale one answered `Fenced` beside them (and left as it is).
pub fn renewing_many_leases_at_once_fences_only_the_stale_ones(make: MakeStore<'_>) {
    let store = make();
    assert_eq!(
        store.renew_events(&[], TTL_MS, Millis(0)).unwrap(),
        vec![],
        "nothing to renew"
    );
    let a = acquire(&*store, EventId(21), "node-a", 0);
    let stale = acquire(&*store, EventId(22), "node-a", 0);
    let c = acquire(&*store, EventId(23), "node-a", 0);
    let taken = store
        .acquire_event_over(
            EventId(22),
            &node("node-b"),
            TTL_MS,
            Millis(10),
            Some(&stale),
        )
        .unwrap()
        .acquired()
        .expect("a takeover");
    let renewed = store
        .renew_events(&[a.clone(), stale.clone(), c.clone()], TTL_MS, Millis(500))
        .unwrap();
    assert_eq!(renewed.len(), 3);
    for (lease, result) in [&a, &c].into_iter().zip([&renewed[0], &renewed[2]]) {
        let expected = EventLease {
            expires: Millis(500 + TTL_MS),
            ..lease.clone()
        };
        assert_eq!(result.as_ref().ok(), Some(&expected), "renewed in place");
        assert_eq!(store.event_lease(lease.event).unwrap(), Some(expected));
    }
    assert_fenced(
        renewed[1].clone(),
        &stale,
        "renew_events of a taken-over lease",
    );
    assert_eq!(
        store.event_lease(EventId(22)).unwrap(),
        Some(taken),
        "the new owner's lease is untouched"
    );
}

/// Renewing extends a current lease; a lease whose epoch moved on is
/// fenced, even if the same node holds the event again.
pub fn renew_extends_a_current_lease_and_refuses_a_stale_one(make: MakeStore<'_>) {
    let store = make();
    let event = EventId(5);
    let lease = acquire(&*store, event, "node-a", 0);
    let renewed = store.renew_event(&lease, TTL_MS, Millis(900)).unwrap();
    assert_eq!(renewed.epoch, lease.epoch, "renewing keeps the epoch");
    assert_eq!(
        renewed.expires,
        Millis(1_900),
        "renewing moves expiry to now + ttl"
    );
    assert_eq!(store.event_lease(event).unwrap(), Some(renewed.clone()));
    let got = store
        .acquire_event_or_holder(event, &node("node-b"), TTL_MS, Millis(1_500))
        .unwrap();
    assert_eq!(
        got,
        Acquisition::HeldBy(renewed.clone()),
        "the renewed lease is still live at 1500ms"
    );
    // Renewing with the lease as first returned (older expiry) also works:
    // only the epoch matters.
    let again = store.renew_event(&lease, TTL_MS, Millis(1_000)).unwrap();
    assert_eq!(again.expires, Millis(2_000));

    let taken = acquire(&*store, event, "node-b", 2_000);
    assert_fenced(
        store.renew_event(&again, TTL_MS, Millis(2_001)),
        &again,
        "renew after takeover",
    );
    let back = acquire(&*store, event, "node-a", 3_000);
    assert!(back.epoch > taken.epoch);
    assert_fenced(
        store.renew_event(&again, TTL_MS, Millis(3_001)),
        &again,
        "renew of an old epoch after the same node took the event back",
    );
    assert_eq!(
        store.event_lease(event).unwrap(),
        Some(back),
        "fenced renews change nothing"
    );
}

/// Releasing expires the lease but keeps its epoch; another node may take
/// the event at once, and the released lease is then fenced.
pub fn release_lets_another_node_acquire_at_once(make: MakeStore<'_>) {
    let store = make();
    let event = EventId(6);
    let lease = acquire(&*store, event, "node-a", 0);
    store.release_event(&lease).unwrap();
    store.release_event(&lease).unwrap(); // a retry
    let released = store
        .event_lease(event)
        .unwrap()
        .expect("a released lease is still stored");
    assert_eq!(released.epoch, lease.epoch, "release keeps the epoch");
    assert_eq!(released.node, lease.node);
    assert!(
        released.expires <= Millis(10),
        "a released lease is expired, got {released:?}"
    );

    let taken = acquire(&*store, event, "node-b", 10);
    assert!(taken.epoch > lease.epoch);
    assert_fenced(
        store.release_event(&lease),
        &lease,
        "release of a lease taken over",
    );
    assert_eq!(
        store.event_lease(event).unwrap(),
        Some(taken),
        "a fenced release changes nothing"
    );
}

/// A takeover names the exact lease it replaces: it succeeds while that
/// lease is current, unexpired or not, bumps the epoch and fences the old
/// holder; naming a lease that is no longer current (another epoch or
/// another node) is an ordinary acquire, refused while the lease lives.
pub fn takeover_of_an_exact_lease_fences_its_holder(make: MakeStore<'_>) {
    let store = make();
    let event = EventId(7);
    let held = acquire(&*store, event, "node-a", 0);
    let stale = EventLease {
        epoch: held.epoch.wrapping_sub(1),
        ..held.clone()
    };
    let refused = store
        .acquire_event_over(event, &node("node-c"), TTL_MS, Millis(10), Some(&stale))
        .unwrap();
    assert_eq!(
        refused,
        Acquisition::HeldBy(held.clone()),
        "a stale lease is not taken over"
    );
    let taken = match store
        .acquire_event_over(event, &node("node-b"), TTL_MS, Millis(10), Some(&held))
        .unwrap()
    {
        Acquisition::Acquired(lease) => lease,
        other => panic!("a takeover of the current lease must succeed, got {other:?}"),
    };
    assert_eq!(taken.node, node("node-b"));
    assert!(taken.epoch > held.epoch, "a takeover bumps the epoch");
    assert_fenced(
        store.renew_event(&held, TTL_MS, Millis(20)),
        &held,
        "renew after a takeover",
    );
    let again = store
        .acquire_event_over(event, &node("node-c"), TTL_MS, Millis(20), Some(&held))
        .unwrap();
    assert_eq!(
        again,
        Acquisition::HeldBy(taken),
        "a lease taken over cannot be taken over twice"
    );
}

/// Every fenced write with a stale lease fails with `Fenced` and leaves
/// the event exactly as it was.
pub fn stale_epoch_writes_are_fenced_and_write_nothing(make: MakeStore<'_>) {
    let store = make();
    let event = EventId(7);
    let old = acquire(&*store, event, "node-a", 0);
    append(&*store, &old, &records(1, 3, "a"));
    store.put_snapshot(&old, 2, b"snapshot at 2").unwrap();
    store.reserve_counter(&old, 100).unwrap();
    let before = load(&*store, event);

    let new = acquire(&*store, event, "node-b", TTL_MS);
    assert_fenced(
        store.append_journal(&old, &records(4, 6, "stale")),
        &old,
        "append_journal",
    );
    assert_fenced(
        store.append_journal(&old, &[]),
        &old,
        "an empty append_journal",
    );
    assert_fenced(
        store.put_snapshot(&old, 3, b"stale snapshot"),
        &old,
        "put_snapshot",
    );
    assert_fenced(store.reserve_counter(&old, 1_000), &old, "reserve_counter");
    assert_fenced(store.release_event(&old), &old, "release_event");
    assert_eq!(
        load(&*store, event),
        before,
        "fenced writes must write nothing"
    );

    // A lease naming the current epoch but another node is not the owner's.
    let forged = EventLease {
        node: node("node-c"),
        ..new.clone()
    };
    assert_fenced(
        store.reserve_counter(&forged, 1_000),
        &forged,
        "a write by the wrong node",
    );
    // A lease for an event nobody ever acquired.
    let nobody = EventLease {
        event: EventId(70),
        ..new.clone()
    };
    assert_fenced(
        store.append_journal(&nobody, &records(1, 1, "x")),
        &nobody,
        "unowned event",
    );
    assert_eq!(
        load(&*store, event),
        before,
        "fenced writes must write nothing"
    );
    assert_eq!(load(&*store, EventId(70)), StoredEvent::default());

    append(&*store, &new, &records(4, 4, "b"));
    assert_eq!(
        seqs(&load(&*store, event)),
        vec![3, 4],
        "the new owner continues the journal"
    );
}

/// Expiry decides liveness only: an owner whose lease expired but that
/// nobody replaced still writes; once replaced, it never does.
pub fn epochs_not_clocks_decide_whether_a_write_lands(make: MakeStore<'_>) {
    let store = make();
    let event = EventId(8);
    let lease = acquire(&*store, event, "node-a", 0);
    // Long past expiry, nobody took over: the epoch is still current.
    append(&*store, &lease, &records(1, 1, "late"));
    assert_eq!(store.reserve_counter(&lease, 5).unwrap(), 5);
    let renewed = store.renew_event(&lease, TTL_MS, Millis(50_000)).unwrap();
    assert_eq!(
        renewed.expires,
        Millis(51_000),
        "an expired but unreplaced lease renews"
    );
    let new = acquire(&*store, event, "node-b", 51_000);
    assert_fenced(
        store.append_journal(&renewed, &records(2, 2, "x")),
        &renewed,
        "append",
    );
    append(&*store, &new, &records(2, 2, "b"));
}

/// A lease authorises writes to its own event only.
pub fn leases_are_per_event(make: MakeStore<'_>) {
    let store = make();
    let a = acquire(&*store, EventId(10), "node-a", 0);
    let b = acquire(&*store, EventId(11), "node-b", 0);
    append(&*store, &a, &records(1, 2, "ten"));
    append(&*store, &b, &records(1, 1, "eleven"));
    store.reserve_counter(&a, 7).unwrap();
    store.put_snapshot(&b, 1, b"eleven at 1").unwrap();
    let ten = load(&*store, EventId(10));
    let eleven = load(&*store, EventId(11));
    assert_eq!(ten.journal, records(1, 2, "ten"));
    assert_eq!(ten.snapshot, None, "event 11's snapshot is not event 10's");
    assert_eq!(ten.counter_ceiling, 7);
    assert_eq!(eleven.journal, vec![]);
    assert_eq!(eleven.snapshot, Some((1, b"eleven at 1".to_vec())));
    assert_eq!(
        eleven.counter_ceiling, 0,
        "event 10's counter is not event 11's"
    );
    // Event 10's lease does not open event 11, even at a matching epoch.
    let cross = EventLease {
        event: EventId(11),
        epoch: b.epoch,
        ..a.clone()
    };
    assert_fenced(
        store.reserve_counter(&cross, 9),
        &cross,
        "a lease for another event",
    );
    assert_eq!(load(&*store, EventId(11)).counter_ceiling, 0);
}

// ----- journal -----

/// Appends in several batches load back as one ascending journal.
/// The bulk lease read sees what the per-event read sees, for every event.
pub fn event_leases_lists_every_lease_sorted(make: MakeStore<'_>) {
    let store = make();
    assert_eq!(
        store.event_leases().unwrap(),
        vec![],
        "no leases in a fresh store"
    );
    let high = EventId(u64::MAX >> 11);
    for event in [EventId(7), high, EventId(1)] {
        store
            .acquire_event(event, &node("node-a"), TTL_MS, Millis(0))
            .unwrap()
            .expect("free event");
    }
    let released = store.event_lease(EventId(7)).unwrap().unwrap();
    store.release_event(&released).unwrap();
    let listed = store.event_leases().unwrap();
    let expected: Vec<EventLease> = [EventId(1), EventId(7), high]
        .into_iter()
        .map(|e| store.event_lease(e).unwrap().unwrap())
        .collect();
    assert_eq!(listed, expected, "every lease, released ones too, by event");
}

pub fn journal_appends_load_in_order(make: MakeStore<'_>) {
    let store = make();
    let event = EventId(20);
    let lease = acquire(&*store, event, "node-a", 0);
    append(&*store, &lease, &records(1, 1, "x"));
    append(&*store, &lease, &records(2, 5, "x"));
    append(&*store, &lease, &[]);
    append(&*store, &lease, &records(6, 10, "x"));
    let stored = load(&*store, event);
    assert_eq!(
        stored.journal,
        records(1, 10, "x"),
        "all records, ascending, bytes intact"
    );
    assert_eq!(stored.snapshot, None);
    assert_eq!(stored.counter_ceiling, 0);
}

/// Re-appending records already stored (a retry after `Unavailable`,
/// possibly overlapping new ones) is a no-op for the stored ones.
pub fn reappending_the_same_records_is_a_no_op(make: MakeStore<'_>) {
    let store = make();
    let event = EventId(21);
    let lease = acquire(&*store, event, "node-a", 0);
    append(&*store, &lease, &records(1, 5, "x"));
    append(&*store, &lease, &records(1, 5, "x"));
    append(&*store, &lease, &records(3, 7, "x"));
    append(&*store, &lease, &records(7, 7, "x"));
    assert_eq!(
        load(&*store, event).journal,
        records(1, 7, "x"),
        "no duplicates, nothing lost"
    );
}

/// Different bytes at a stored seq is a `Conflict`, and the whole batch is
/// refused (its new records are not written either).
pub fn reappending_different_bytes_is_a_conflict(make: MakeStore<'_>) {
    let store = make();
    let event = EventId(22);
    let lease = acquire(&*store, event, "node-a", 0);
    append(&*store, &lease, &records(1, 3, "x"));
    assert_conflict(
        store.append_journal(&lease, &records(2, 2, "y")),
        "different bytes at seq 2",
    );
    let mut batch = records(3, 3, "y");
    batch.extend(records(4, 5, "x"));
    assert_conflict(
        store.append_journal(&lease, &batch),
        "a batch whose first record conflicts",
    );
    let mut batch = records(2, 3, "x");
    batch.extend(records(4, 4, "x"));
    batch[1] = record(3, "y");
    assert_conflict(
        store.append_journal(&lease, &batch),
        "a batch with a conflict in the middle",
    );
    assert_eq!(
        load(&*store, event).journal,
        records(1, 3, "x"),
        "conflicting batches write nothing"
    );
}

/// The journal never has holes: a batch must start at or before the next
/// seq, be consecutive, and seqs start at 1.
pub fn journal_gaps_are_refused(make: MakeStore<'_>) {
    let store = make();
    let event = EventId(23);
    let lease = acquire(&*store, event, "node-a", 0);
    assert_conflict(
        store.append_journal(&lease, &records(2, 3, "x")),
        "starting at 2 on empty",
    );
    assert_conflict(store.append_journal(&lease, &records(0, 1, "x")), "seq 0");
    append(&*store, &lease, &records(1, 2, "x"));
    assert_conflict(
        store.append_journal(&lease, &records(4, 4, "x")),
        "skipping seq 3",
    );
    let batch = vec![record(3, "x"), record(5, "x")];
    assert_conflict(store.append_journal(&lease, &batch), "a batch with a hole");
    let batch = vec![record(4, "x"), record(3, "x")];
    assert_conflict(store.append_journal(&lease, &batch), "a descending batch");
    let batch = vec![record(3, "x"), record(3, "x")];
    assert_conflict(
        store.append_journal(&lease, &batch),
        "a batch repeating a seq",
    );
    assert_eq!(
        load(&*store, event).journal,
        records(1, 2, "x"),
        "refused batches write nothing"
    );
}

// ----- snapshots -----

/// A snapshot at seq S replaces the previous one and deletes journal
/// records up to S; the journal continues after it.
pub fn snapshot_compacts_the_journal(make: MakeStore<'_>) {
    let store = make();
    let event = EventId(30);
    let lease = acquire(&*store, event, "node-a", 0);
    append(&*store, &lease, &records(1, 10, "x"));
    store.put_snapshot(&lease, 6, b"state at 6").unwrap();
    let stored = load(&*store, event);
    assert_eq!(stored.snapshot, Some((6, b"state at 6".to_vec())));
    assert_eq!(
        stored.journal,
        records(7, 10, "x"),
        "only records after the snapshot load"
    );

    // A retry of records folded into the snapshot is a no-op, even with
    // bytes that can no longer be compared.
    append(&*store, &lease, &records(5, 11, "x"));
    append(&*store, &lease, &records(2, 3, "other"));
    assert_conflict(
        store.append_journal(&lease, &records(13, 13, "x")),
        "a gap after compaction",
    );
    assert_eq!(seqs(&load(&*store, event)), (7..=11).collect::<Vec<_>>());

    // A snapshot past the journal's end: the journal empties and continues
    // after the snapshot's seq.
    store.put_snapshot(&lease, 20, b"state at 20").unwrap();
    let stored = load(&*store, event);
    assert_eq!(
        stored.snapshot,
        Some((20, b"state at 20".to_vec())),
        "the newer snapshot replaces"
    );
    assert_eq!(stored.journal, vec![]);
    assert_conflict(
        store.append_journal(&lease, &records(22, 22, "x")),
        "a gap after 20",
    );
    append(&*store, &lease, &records(21, 22, "x"));
    assert_eq!(load(&*store, event).journal, records(21, 22, "x"));
}

/// A snapshot at or below the stored seq (a late or retried write) is
/// ignored and deletes nothing.
pub fn snapshot_not_newer_than_the_stored_one_is_ignored(make: MakeStore<'_>) {
    let store = make();
    let event = EventId(31);
    let lease = acquire(&*store, event, "node-a", 0);
    append(&*store, &lease, &records(1, 12, "x"));
    store.put_snapshot(&lease, 10, b"state at 10").unwrap();
    store.put_snapshot(&lease, 5, b"state at 5").unwrap();
    store.put_snapshot(&lease, 10, b"state at 10").unwrap();
    store
        .put_snapshot(&lease, 10, b"other state at 10")
        .unwrap();
    let stored = load(&*store, event);
    assert_eq!(
        stored.snapshot,
        Some((10, b"state at 10".to_vec())),
        "the newest snapshot stays"
    );
    assert_eq!(
        stored.journal,
        records(11, 12, "x"),
        "an ignored snapshot deletes nothing"
    );

    // A snapshot at seq 0 (before any record) is a valid first snapshot.
    let other = acquire(&*store, EventId(32), "node-a", 0);
    store.put_snapshot(&other, 0, b"initial").unwrap();
    append(&*store, &other, &records(1, 1, "x"));
    let stored = load(&*store, EventId(32));
    assert_eq!(stored.snapshot, Some((0, b"initial".to_vec())));
    assert_eq!(stored.journal, records(1, 1, "x"));
}

// ----- counter -----

/// The counter ceiling only rises; the stored value is returned.
pub fn counter_ceiling_is_never_lowered(make: MakeStore<'_>) {
    let store = make();
    let event = EventId(40);
    let lease = acquire(&*store, event, "node-a", 0);
    assert_eq!(store.reserve_counter(&lease, 100).unwrap(), 100);
    assert_eq!(
        store.reserve_counter(&lease, 50).unwrap(),
        100,
        "a lower ceiling is not stored"
    );
    assert_eq!(store.reserve_counter(&lease, 100).unwrap(), 100);
    assert_eq!(store.reserve_counter(&lease, 0).unwrap(), 100);
    assert_eq!(load(&*store, event).counter_ceiling, 100);
    let next = acquire(&*store, event, "node-b", TTL_MS);
    assert_eq!(
        store.reserve_counter(&next, 1_100).unwrap(),
        1_100,
        "a new owner raises it"
    );
    assert_eq!(
        load(&*store, event).counter_ceiling,
        1_100,
        "the ceiling survives owners"
    );
}

// ----- event specs -----

/// Specs are created, replaced whole, and listed sorted by event (as
/// unsigned numbers).
pub fn event_specs_put_replace_and_list_sorted(make: MakeStore<'_>) {
    let store = make();
    assert_eq!(
        store.event_specs().unwrap(),
        vec![],
        "a fresh store has no specs"
    );
    store.put_event_spec(EventId(u64::MAX), b"last").unwrap();
    store
        .put_event_spec(EventId(300), b"three hundred")
        .unwrap();
    store
        .put_event_spec(EventId(2), b"two, first version")
        .unwrap();
    store.put_event_spec(EventId(1 << 63), b"high bit").unwrap();
    store.put_event_spec(EventId(2), b"two").unwrap();
    store.put_event_spec(EventId(0), b"").unwrap();
    assert_eq!(
        specs(store.as_ref()),
        vec![
            (EventId(0), b"".to_vec()),
            (EventId(2), b"two".to_vec()),
            (EventId(300), b"three hundred".to_vec()),
            (EventId(1 << 63), b"high bit".to_vec()),
            (EventId(u64::MAX), b"last".to_vec()),
        ],
        "specs sorted by event id, the replaced one replaced"
    );
}

// ----- loading -----

/// An event never written loads empty and has no lease.
pub fn unknown_event_loads_empty(make: MakeStore<'_>) {
    let store = make();
    assert_eq!(load(&*store, EventId(999)), StoredEvent::default());
    assert_eq!(store.event_lease(EventId(999)).unwrap(), None);
    // Writing another event does not make this one appear.
    let lease = acquire(&*store, EventId(998), "node-a", 0);
    append(&*store, &lease, &records(1, 1, "x"));
    assert_eq!(load(&*store, EventId(999)), StoredEvent::default());
}

/// Values far over FoundationDB's 100 kB value limit round-trip: a 3 MB
/// snapshot, a 250 kB journal record, a 300 kB spec; and a 12 MB snapshot
/// (over FoundationDB's 10 MB transaction limit) replacing it.
pub fn large_values_round_trip(make: MakeStore<'_>) {
    let store = make();
    let event = EventId(50);
    let lease = acquire(&*store, event, "node-a", 0);
    let big_record = JournalBytes {
        seq: 1,
        bytes: noise(250_000, 1),
    };
    append(&*store, &lease, &[big_record.clone(), record(2, "small")]);
    let stored = load(&*store, event);
    assert!(
        stored.journal == vec![big_record, record(2, "small")],
        "a 250 kB record round-trips"
    );

    let snapshot = noise(3 * 1024 * 1024 + 17, 2);
    store.put_snapshot(&lease, 1, &snapshot).unwrap();
    let stored = load(&*store, event);
    let (seq, bytes) = stored.snapshot.expect("the snapshot is stored");
    assert_eq!(seq, 1);
    assert!(
        bytes == snapshot,
        "a 3 MB snapshot round-trips ({} bytes back)",
        bytes.len()
    );
    assert_eq!(stored.journal, vec![record(2, "small")]);

    let huge = noise(12 * 1024 * 1024, 3);
    store.put_snapshot(&lease, 2, &huge).unwrap();
    let stored = load(&*store, event);
    let (seq, bytes) = stored.snapshot.expect("the snapshot is stored");
    assert_eq!(seq, 2);
    assert!(
        bytes == huge,
        "a 12 MB snapshot round-trips ({} bytes back)",
        bytes.len()
    );
    assert_eq!(stored.journal, vec![]);
    // An older large snapshot is ignored, not half-written.
    store.put_snapshot(&lease, 1, &snapshot).unwrap();
    assert!(
        load(&*store, event).snapshot == Some((2, huge)),
        "the older one is ignored"
    );

    let spec = noise(300_000, 4);
    store.put_event_spec(event, &spec).unwrap();
    assert!(
        specs(store.as_ref()) == vec![(event, spec)],
        "a 300 kB spec round-trips"
    );
}

/// A batch of 1,000 records of 64 bytes (one group commit) lands whole; a
/// batch over [`JOURNAL_APPEND_BYTES_MAX`] is refused.
pub fn batch_of_a_thousand_records_and_the_batch_limit(make: MakeStore<'_>) {
    let store = make();
    let event = EventId(60);
    let lease = acquire(&*store, event, "node-a", 0);
    let batch: Vec<JournalBytes> = (1..=1_000)
        .map(|seq| JournalBytes {
            seq,
            bytes: noise(64, seq),
        })
        .collect();
    append(&*store, &lease, &batch);
    assert!(
        load(&*store, event).journal == batch,
        "1,000 records round-trip in order"
    );

    let over: Vec<JournalBytes> = (1_001..=1_009)
        .map(|seq| JournalBytes {
            seq,
            bytes: vec![7; JOURNAL_APPEND_BYTES_MAX / 8],
        })
        .collect();
    assert_conflict(
        store.append_journal(&lease, &over),
        "a batch over the byte limit",
    );
    assert_eq!(
        load(&*store, event).journal.len(),
        1_000,
        "a refused batch writes nothing"
    );
}

/// Ids and times at the ends of `u64` are stored exactly; expiry saturates.
pub fn extreme_ids_and_times(make: MakeStore<'_>) {
    let store = make();
    for event in [EventId(0), EventId(1 << 63), EventId(u64::MAX)] {
        let lease = acquire(&*store, event, "node-a", u64::MAX - 10);
        assert_eq!(lease.expires, Millis(u64::MAX), "now + ttl saturates");
        assert_eq!(store.event_lease(event).unwrap(), Some(lease.clone()));
        let got = store
            .acquire_event_or_holder(event, &node("node-b"), TTL_MS, Millis(u64::MAX - 1))
            .unwrap();
        assert_eq!(
            got,
            Acquisition::HeldBy(lease.clone()),
            "a lease ending at u64::MAX is live just before it"
        );
        assert_eq!(store.reserve_counter(&lease, u64::MAX).unwrap(), u64::MAX);
        append(&*store, &lease, &records(1, 1, "x"));
        let stored = load(&*store, event);
        assert_eq!(stored.counter_ceiling, u64::MAX);
        assert_eq!(stored.journal, records(1, 1, "x"));
    }
    store
        .heartbeat_node(&node("node-a"), "a:1", u64::MAX, Millis(5))
        .unwrap();
    let live = store.live_nodes(Millis(u64::MAX - 1)).unwrap();
    assert_eq!(
        live.len(),
        1,
        "a node lease ending at u64::MAX is live just before it"
    );
    assert_eq!(live[0].expires, Millis(u64::MAX));
}

/// Every value is sealed by the backend and opened on read: bytes that
/// look like a frame (or a bare counter) come back exactly as given, and
/// intact values are never reported damaged.
pub fn values_that_look_like_frames_round_trip_exactly(make: MakeStore<'_>) {
    let store = make();
    let event = EventId(5);
    let lease = acquire(&*store, event, "a", 0);
    let framed = super::frame::seal(super::Sealed::JournalRecord, event, 1, b"inner");
    let batch = vec![
        JournalBytes {
            seq: 1,
            bytes: framed.clone(),
        },
        JournalBytes {
            seq: 2,
            bytes: vec![super::frame::MAGIC],
        },
        JournalBytes {
            seq: 3,
            bytes: Vec::new(),
        },
    ];
    append(&*store, &lease, &batch);
    store.put_snapshot(&lease, 1, &framed).unwrap();
    store.reserve_counter(&lease, u64::MAX - 1).unwrap();
    store.put_event_spec(event, &framed).unwrap();
    let stored = load(&*store, event);
    assert_eq!(stored.snapshot, Some((1, framed.clone())), "snapshot exact");
    assert_eq!(stored.journal, batch[1..].to_vec(), "records exact");
    assert_eq!(stored.counter_ceiling, u64::MAX - 1, "counter exact");
    assert_eq!(specs(&*store), vec![(event, framed)], "spec exact");
}

fn read_seqs(store: &dyn Store, event: EventId, after: u64, limit: usize) -> Vec<u64> {
    store
        .read_journal(event, after, limit)
        .expect("read_journal")
        .iter()
        .map(|r| r.seq)
        .collect()
}

/// With feed retention on, a snapshot compacts only what the feed has
/// read (and kept no longer needed); without it, everything it includes.
/// Either way only records after the snapshot load.
pub fn feed_retention_keeps_what_the_feed_has_not_read(make: MakeStore<'_>) {
    let store = make();
    assert!(
        !store.feed_retention().unwrap(),
        "retention is off by default"
    );
    let kept = EventId(90);
    let plain = EventId(91);
    store.set_feed_retention(true).unwrap();
    assert!(store.feed_retention().unwrap());
    let lease = acquire(&*store, kept, "node-a", 0);
    append(&*store, &lease, &records(1, 40, "x"));
    store.put_snapshot(&lease, 30, b"state at 30").unwrap();
    append(&*store, &lease, &records(41, 41, "x"));
    assert_eq!(seqs(&load(&*store, kept)), (31..=41).collect::<Vec<_>>());
    assert_eq!(
        read_seqs(&*store, kept, 0, 1_000),
        (1..=41).collect::<Vec<_>>(),
        "no cursor yet: every record is kept for the feed"
    );
    assert_eq!(
        read_seqs(&*store, kept, 5, 3),
        vec![6, 7, 8],
        "after and limit"
    );
    assert_eq!(
        store.read_journal(kept, 0, 1).unwrap(),
        records(1, 1, "x"),
        "the bytes as appended"
    );

    // The feed read through 25 and needs from 20 on.
    let cursor = FeedCursor {
        published: 25,
        last_message: 24,
        keep_from: 20,
    };
    store.put_feed_cursor(kept, cursor).unwrap();
    assert_eq!(store.feed_cursor(kept).unwrap(), Some(cursor));
    store.put_snapshot(&lease, 35, b"state at 35").unwrap();
    append(&*store, &lease, &records(42, 45, "x"));
    assert_eq!(
        read_seqs(&*store, kept, 0, 1_000),
        (20..=45).collect::<Vec<_>>()
    );
    assert_eq!(seqs(&load(&*store, kept)), (36..=45).collect::<Vec<_>>());

    // Retention off: the next compaction takes everything in the snapshot.
    store.set_feed_retention(false).unwrap();
    store.put_snapshot(&lease, 40, b"state at 40").unwrap();
    append(&*store, &lease, &records(46, 46, "x"));
    assert_eq!(
        read_seqs(&*store, kept, 0, 1_000),
        (41..=46).collect::<Vec<_>>()
    );
    assert_eq!(store.feed_cursor(plain).unwrap(), None);
    assert_eq!(read_seqs(&*store, plain, 0, 10), Vec::<u64>::new());
}

/// The cursor is kept per event and a write that would move `published`
/// back (a late retry, a second relay) changes nothing.
pub fn feed_cursor_never_moves_back(make: MakeStore<'_>) {
    let store = make();
    let event = EventId(92);
    let at = |published| FeedCursor {
        published,
        last_message: published,
        keep_from: published + 1,
    };
    store.put_feed_cursor(event, at(10)).unwrap();
    store.put_feed_cursor(event, at(7)).unwrap();
    assert_eq!(store.feed_cursor(event).unwrap(), Some(at(10)));
    store.put_feed_cursor(event, at(12)).unwrap();
    assert_eq!(store.feed_cursor(event).unwrap(), Some(at(12)));
    assert_eq!(store.feed_cursor(EventId(93)).unwrap(), None);
}
