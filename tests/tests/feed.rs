//! The sales change feed against a real NATS JetStream broker
//! (`nats-server`, started by each test on a free loopback port).
//!
//! - A live sale while the relay, the node and the broker are each killed
//!   with -9 at seeded random points and restarted: at the end the stream
//!   holds exactly one message per journal entry that matters, in order
//!   per event (each message names the one before it), no duplicates, and
//!   the orders sold are exactly the event's audit.
//! - A node with `--feed` relays by itself and shows the lag on /metrics.
//! - A stream that refuses publishes (full, discard new) and a stream that
//!   does not exist (`--feed-no-create`) pause the feed with a clear error
//!   and lose nothing once fixed.
//!
//! `ONSALE_FEED_SEEDS=N` runs N seeds of the crash campaign (default 2).

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::time::{Duration, Instant};

use onsale_cluster::rpc::Client;
use onsale_schema::message::{Area, Command, FanStatus, HoldRequest, Reply};
use onsale_schema::{EventConfig, EventId, FanId};
use onsale_tests::nats::{NatsServer, StreamMessage, create_stream, stream_messages};
use onsale_tests::{NodeProcess, OPERATOR_TOKEN, Rng, scratch_dir, spec, venue_json};
use serde_json::Value;

const EVENT: EventId = EventId(15);
const STREAM: &str = "ONSALE";

fn config() -> EventConfig {
    EventConfig {
        tickets_per_fan_max: 4,
        full_factor: 50,
        shoppers_max: 16,
        show_up_window_ms: 2_000,
        shopping_window_ms: 4_000,
        checkout_window_ms: 1_500,
        counter_block: 8,
        ..EventConfig::default()
    }
}

/// `onsale relay` as its own process.
fn start_relay(store: &Path, url: &str, extra: &[&str]) -> NodeProcess {
    let mut args: Vec<String> = ["relay", "--store"]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    args.push(store.display().to_string());
    args.extend(["--feed".to_owned(), url.to_owned()]);
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    NodeProcess::start_with(store, "-", &args, "onsale relay on").expect("the relay starts")
}

async fn create_and_open(addr: &str) {
    onsale_tests::create_and_open(addr, spec(EVENT.0, venue_json(2, 8, 10), config())).await;
}

/// Join, wait for the turn, hold 1..=3 seats, pay (the simulated provider
/// confirms or declines). Any error ends the journey: a node may be dead.
async fn fan_journey(addr: String, mut rng: Rng, fan: FanId) {
    tokio::time::sleep(Duration::from_millis(rng.below(800))).await;
    let Ok(client) = Client::connect(&addr, OPERATOR_TOKEN.as_bytes()).await else {
        return;
    };
    let Ok(Reply::Joined { .. }) = client.call(EVENT, Command::Join { fan }).await else {
        return;
    };
    for _ in 0..100 {
        match client.call(EVENT, Command::Status { fan }).await {
            Ok(Reply::Status {
                status: Some(FanStatus::Admitted { .. }),
            }) => break,
            Ok(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            Err(_) => return,
        }
    }
    let _ = client.call(EVENT, Command::Enter { fan }).await;
    let request = HoldRequest::Best {
        count: 1 + rng.below(3) as u8,
        area: Area::Anywhere,
    };
    let Ok(Reply::HoldPlaced { placed }) = client.call(EVENT, Command::Hold { fan, request }).await
    else {
        return;
    };
    if rng.below(5) == 0 {
        return; // the checkout clock runs out: a release
    }
    let _ = client
        .call(
            EVENT,
            Command::SubmitPayment {
                fan,
                hold: placed.hold,
            },
        )
        .await;
}

async fn audit_orders(addr: &str) -> BTreeMap<u64, (u64, usize)> {
    let client = Client::connect(addr, OPERATOR_TOKEN.as_bytes())
        .await
        .expect("connects");
    let reply = client.call(EVENT, Command::Audit).await.expect("audit");
    let Reply::Audit { audit } = reply else {
        panic!("audit: {reply:?}");
    };
    assert_eq!(audit.problem, None, "the event's audit");
    audit
        .orders
        .iter()
        .map(|o| (o.order.0, (o.fan.0, o.seats.len())))
        .collect()
}

/// The event's messages, checked as a consumer would: ids `<event>:<seq>`
/// unique, subjects `onsale.<event>.<kind>`, seqs increasing, and each
/// message's `prev` the seq of the one before (no gap, no duplicate, in
/// order). Returns the bodies.
fn check_stream(messages: &[StreamMessage]) -> Vec<Value> {
    let mut ids = HashSet::new();
    let mut prev = 0;
    let mut bodies = Vec::new();
    for message in messages {
        let body = message.json();
        if body["event"] != EVENT.0 {
            continue;
        }
        let seq = body["seq"].as_u64().expect("seq");
        let kind = body["kind"].as_str().expect("kind");
        assert_eq!(body["v"], 1, "schema version: {body}");
        assert_ne!(kind, "gap", "a gap: {body}");
        assert_eq!(message.subject, format!("onsale.{}.{kind}", EVENT.0));
        let id = message.msg_id.clone().expect("Nats-Msg-Id");
        assert_eq!(id, format!("{}:{seq}", EVENT.0));
        assert!(ids.insert(id.clone()), "duplicate message {id}");
        assert_eq!(
            body["prev"].as_u64(),
            Some(prev),
            "message {id} follows {prev}: a gap or a reordering"
        );
        assert!(seq > prev, "seqs increase: {seq} after {prev}");
        prev = seq;
        bodies.push(body);
    }
    bodies
}

/// The orders the stream says were sold: order → (fan, seats), each once;
/// checked on the way: every sold or released hold was held (and is sold
/// or released once), admissions in FIFO order, totals add up.
fn sold(bodies: &[Value]) -> BTreeMap<u64, (u64, usize)> {
    let mut sold = BTreeMap::new();
    let mut held = HashSet::new();
    let mut admitted_through = 0;
    for body in bodies {
        match body["kind"].as_str() {
            Some("held") => {
                held.insert(body["hold"].as_u64().expect("hold"));
                let seats = body["seats"].as_array().expect("seats");
                let total: u64 = seats
                    .iter()
                    .map(|s| s["price_cents"].as_u64().unwrap())
                    .sum();
                assert_eq!(body["total_cents"].as_u64(), Some(total), "{body}");
            }
            Some("released") => {
                let hold = body["hold"].as_u64().expect("hold");
                assert!(held.remove(&hold), "released but not held: {body}");
            }
            Some("admitted") => {
                for fan in body["fans"].as_array().expect("fans") {
                    let position = fan["position"].as_u64().expect("position");
                    assert!(
                        position > admitted_through,
                        "admitted out of FIFO order: {body}"
                    );
                    admitted_through = position;
                }
            }
            Some("sold") => {
                let hold = body["hold"].as_u64().expect("hold");
                assert!(held.remove(&hold), "sold but not held: {body}");
                let order = body["order"].as_u64().expect("order");
                let fan = body["fan"].as_u64().expect("a sold message names its fan");
                let seats = body["seats"].as_array().expect("seats").len();
                assert!(
                    sold.insert(order, (fan, seats)).is_none(),
                    "order {order} sold twice"
                );
            }
            _ => {}
        }
    }
    sold
}

/// Wait until the stream's sold orders are the audit's and nothing more
/// arrives for a moment; the stream's messages then.
async fn caught_up(url: &str, addr: &str) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last_len = usize::MAX;
    loop {
        let orders = audit_orders(addr).await;
        let bodies = check_stream(&stream_messages(url, STREAM).await);
        if sold(&bodies) == orders && bodies.len() == last_len {
            return bodies;
        }
        assert!(
            Instant::now() < deadline,
            "the feed did not catch up within 60 s: {} orders audited, {} sold in the stream",
            orders.len(),
            sold(&bodies).len()
        );
        last_len = bodies.len();
        tokio::time::sleep(Duration::from_millis(1_000)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_holds_every_sale_once_in_order_through_kill_9_of_relay_node_and_broker() {
    let seeds: u64 = std::env::var("ONSALE_FEED_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2);
    for seed in 1..=seeds {
        run_seed(seed).await;
    }
}

async fn run_seed(seed: u64) {
    let dir = scratch_dir(&format!("feed-{seed}"));
    let store = dir.join("onsale.db");
    let mut nats = NatsServer::start().await;
    let url = nats.url();
    let mut node = NodeProcess::start(
        &store,
        &["--snapshot-every", "20", "--lease-ttl-ms", "1000"],
    )
    .expect("node starts");
    create_and_open(&node.addr).await;
    // A duplicate window of 1 s: exactly once must not rest on the broker
    // dropping repeats (a relay or broker down for longer than the window).
    let mut relay = start_relay(&store, &url, &["--feed-duplicate-window-s", "1"]);
    let mut rng = Rng(seed.wrapping_mul(104_729) + 3);
    let mut killed = [0; 3];
    for round in 0..6u64 {
        let tasks: Vec<_> = (0..30)
            .map(|i| {
                let fan = FanId(seed * 1_000_000 + round * 1_000 + i);
                tokio::spawn(fan_journey(node.addr.clone(), Rng(rng.next_u64()), fan))
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(200 + rng.below(900))).await;
        let victim = rng.below(3) as usize;
        killed[victim] += 1;
        match victim {
            0 => {
                relay.kill9();
                tokio::time::sleep(Duration::from_millis(rng.below(500))).await;
                relay.restart().expect("the relay restarts");
            }
            1 => {
                node.kill9();
                for task in tasks {
                    let _ = task.await;
                }
                node.restart().expect("the node restarts");
                continue;
            }
            _ => {
                nats.kill9();
                tokio::time::sleep(Duration::from_millis(rng.below(1_500))).await;
                nats.restart().await;
            }
        }
        for task in tasks {
            let _ = task.await;
        }
    }
    let bodies = caught_up(&url, &node.addr).await;
    let orders = audit_orders(&node.addr).await;
    let kinds = bodies
        .iter()
        .fold(BTreeMap::<String, u32>::new(), |mut m, b| {
            *m.entry(b["kind"].as_str().unwrap().to_owned()).or_default() += 1;
            m
        });
    eprintln!(
        "seed {seed}: killed relay/node/broker {killed:?}; {} messages {kinds:?}; {} orders",
        bodies.len(),
        orders.len()
    );
    assert!(
        !orders.is_empty(),
        "nothing was sold: the test checked nothing"
    );
    assert!(kinds.contains_key("admitted") && kinds.contains_key("sale"));
}

async fn metrics(addr: &str) -> String {
    onsale_tests::client::request(addr, "GET", "/metrics", &[], b"")
        .await
        .body
}

/// A gauge or counter's value on /metrics (summed over its labels).
fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Sell to `fans` fans through the node's RPC (`rpc`), journeys in full.
async fn sell(rpc: &str, fans: u64, seed: u64) {
    let mut rng = Rng(seed);
    let tasks: Vec<_> = (0..fans)
        .map(|i| {
            tokio::spawn(fan_journey(
                rpc.to_owned(),
                Rng(rng.next_u64()),
                FanId(7_000 + i),
            ))
        })
        .collect();
    for task in tasks {
        task.await.expect("journey");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_feed_relays_by_itself_and_shows_the_lag() {
    let nats = NatsServer::start().await;
    let dir = scratch_dir("feed-node");
    let store = dir.join("onsale.db");
    let rpc = format!("127.0.0.1:{}", onsale_tests::free_port());
    let node = NodeProcess::start_http(&store, &["--rpc", &rpc, "--feed", &nats.url()])
        .expect("node starts");
    create_and_open(&rpc).await;
    sell(&rpc, 20, 5).await;
    let bodies = caught_up(&nats.url(), &rpc).await;
    assert!(!sold(&bodies).is_empty());
    let text = metrics(&node.addr).await;
    assert!(text.contains("onsale_feed_lag_seconds"), "{text}");
    assert!(metric(&text, "onsale_feed_messages_total") >= bodies.len() as f64);
    assert_eq!(metric(&text, "onsale_feed_up"), 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_that_refuses_publishes_pauses_the_feed_and_loses_nothing() {
    let nats = NatsServer::start().await;
    let url = nats.url();
    // An operator's stream that is full at 5 messages and refuses more.
    create_stream(&url, STREAM, &["onsale.>"], Some(5)).await;
    let dir = scratch_dir("feed-full");
    let store = dir.join("onsale.db");
    let rpc = format!("127.0.0.1:{}", onsale_tests::free_port());
    let node =
        NodeProcess::start_http(&store, &["--rpc", &rpc, "--feed", &url]).expect("node starts");
    create_and_open(&rpc).await;
    sell(&rpc, 12, 6).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        stream_messages(&url, STREAM).await.len(),
        5,
        "the stream is full"
    );
    let text = metrics(&node.addr).await;
    assert!(
        text.contains("onsale_feed_errors_total{kind=\"refused\"}"),
        "the refusal is counted: {text}"
    );
    assert_eq!(metric(&text, "onsale_feed_up"), 0.0);
    assert!(
        metric(&text, "onsale_feed_lag_seconds") > 0.0,
        "the lag shows"
    );
    // The operator lifts the limit: the feed catches up, nothing lost.
    onsale_tests::nats::update_stream_max_msgs(&url, STREAM, None).await;
    let bodies = caught_up(&url, &rpc).await;
    assert!(bodies.len() > 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_stream_is_waited_for_and_nothing_is_lost() {
    let nats = NatsServer::start().await;
    let url = nats.url();
    let dir = scratch_dir("feed-missing");
    let store = dir.join("onsale.db");
    let rpc = format!("127.0.0.1:{}", onsale_tests::free_port());
    let node =
        NodeProcess::start_http(&store, &["--rpc", &rpc, "--feed", &url, "--feed-no-create"])
            .expect("node starts");
    create_and_open(&rpc).await;
    sell(&rpc, 10, 7).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let text = metrics(&node.addr).await;
    assert!(
        text.contains("onsale_feed_errors_total{kind=\"no_stream\"}"),
        "the missing stream is named: {text}"
    );
    create_stream(&url, STREAM, &["onsale.>"], None).await;
    let bodies = caught_up(&url, &rpc).await;
    assert!(!sold(&bodies).is_empty());
    drop(node);
}
