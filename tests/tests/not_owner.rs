//! Two nodes on one shared store: the node that does not own an event
//! answers `not_owner`, naming the owner and its lease epoch, over the
//! node RPC and over HTTP (503 with `Retry-After` and the owner in the
//! body), and never serves the event itself.

use onsale_cluster::rpc::Client;
use onsale_cluster::store::sqlite::SqliteStore;
use onsale_cluster::store::{EventLease, Store};
use onsale_schema::message::{Command, EventOwner, Reply};
use onsale_schema::{EventConfig, EventId, FanId};
use onsale_tests::client::{Fan, request};
use onsale_tests::{NodeProcess, OPERATOR_TOKEN, free_port, now_ms, scratch_dir, spec, venue_json};
use serde_json::json;

const EVENT: EventId = EventId(11);
/// Long enough that the owner's lease never lapses during the test, however
/// slow the machine: ownership must not move under the assertions.
const LEASE_TTL_MS: &str = "120000";

fn stored_lease(store: &std::path::Path) -> EventLease {
    SqliteStore::open(store)
        .expect("store")
        .event_lease(EVENT)
        .expect("read")
        .expect("the event has a lease")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_that_does_not_own_an_event_names_its_owner_and_epoch() {
    let dir = scratch_dir("not-owner");
    let store = dir.join("onsale.db");
    let node_a = NodeProcess::start(&store, &["--lease-ttl-ms", LEASE_TTL_MS]).expect("node A");
    let a = Client::connect(&node_a.addr, OPERATOR_TOKEN.as_bytes())
        .await
        .expect("A");
    let created = a
        .create_event(spec(EVENT.0, venue_json(1, 2, 10), EventConfig::default()))
        .await
        .expect("create");
    assert!(matches!(created, Reply::Overview { .. }), "{created:?}");
    let lease = stored_lease(&store);
    let owner_a = format!("node@{}", node_a.addr);
    assert_eq!(lease.node.0, owner_a, "A owns the event it created");

    // B: the node RPC and the HTTP gateway, on the same store.
    let b_rpc = format!("127.0.0.1:{}", free_port());
    let node_b =
        NodeProcess::start_http(&store, &["--lease-ttl-ms", LEASE_TTL_MS, "--rpc", &b_rpc])
            .expect("node B");
    let b = Client::connect(&b_rpc, OPERATOR_TOKEN.as_bytes())
        .await
        .expect("B");

    // Asked again and again (the first answer comes through the router
    // and the store, the later ones from what B remembers), B names A.
    for command in [
        Command::Overview,
        Command::Join { fan: FanId(1) },
        Command::Overview,
        Command::Audit,
    ] {
        let reply = b.call(EVENT, command.clone()).await.expect("B answers");
        let Reply::NotOwner { owner } = reply else {
            panic!("B answered {command:?} for an event A owns: {reply:?}");
        };
        let EventOwner {
            node,
            epoch,
            lease_expires,
        } = owner;
        assert_eq!(node, owner_a, "{command:?}");
        assert_eq!(epoch, lease.epoch, "{command:?}");
        assert!(
            lease_expires.0 > now_ms(),
            "a live lease: {lease_expires:?}"
        );
    }

    // Over HTTP: 503, Retry-After, the owner in the body; for the public
    // event page and for a fan's command alike.
    let page = request(
        &node_b.addr,
        "GET",
        &format!("/api/events/{}", EVENT.0),
        &[],
        b"",
    )
    .await;
    let fan = Fan::login(&node_b.addr, "alice").await;
    let command = fan.send(EVENT.0, json!({ "cmd": "join" })).await;
    for response in [page, command] {
        assert_eq!(response.status, 503, "{response:?}");
        assert!(response.header("Retry-After").is_some(), "{response:?}");
        let body = response.json();
        assert_eq!(body["reply"], "error", "{body}");
        assert_eq!(body["code"], "not_owner", "{body}");
        assert_eq!(body["owner"]["node"], owner_a.as_str(), "{body}");
        assert_eq!(body["owner"]["epoch"], lease.epoch, "{body}");
    }

    // A still owns and serves the event; B never took it.
    let overview = a.call(EVENT, Command::Overview).await.expect("A answers");
    assert!(matches!(overview, Reply::Overview { .. }), "{overview:?}");
    assert_eq!(stored_lease(&store).epoch, lease.epoch);
}
