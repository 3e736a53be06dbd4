//! The pre-queue draw over a real gateway: fans who join before a drawn
//! event opens are told they are pre-queued (and when the draw is), keep
//! that across kill -9, get random positions when the sale opens by its
//! scheduled time, all ahead of later arrivals, a watching fan hears its
//! drawn position on its websocket, and every drawn position survives
//! another kill -9.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use onsale_tests::client::{Fan, ops};
use onsale_tests::{NodeProcess, now_ms, scratch_dir, venue_json};
use serde_json::{Value, json};

const EVENT: u64 = 61;
const FANS: usize = 12;

/// A fan's status, retried while the event is busy (restarting).
async fn status(fan: &Fan) -> Value {
    fan.call(EVENT, json!({"cmd": "status"})).await["status"].clone()
}

/// The position in a waiting or admitted status.
fn position(status: &Value) -> Option<u64> {
    match status["status"].as_str() {
        Some("waiting" | "admitted") => status["position"].as_u64(),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pre_queued_fans_get_random_places_at_the_opening_and_keep_them() {
    let store = scratch_dir("pre-queue").join("pre-queue.db");
    let mut node = NodeProcess::start_http(&store, &[]).expect("node starts");
    let addr = node.addr.clone();
    // Opens by itself in 6 s: time for the joins and one restart.
    let opens_at = now_ms() + 6_000;
    let venue: Value = serde_json::from_str(&venue_json(1, 4, 10)).unwrap();
    let created = ops(
        &addr,
        "POST",
        "/api/ops/events",
        &json!({"event": EVENT, "name": "Drawn", "city": "Testville",
                "starts_at": 1_900_000_000_000u64, "venue": venue,
                "config": {"pre_queue_draw": true, "opens_at": opens_at, "shoppers_max": 2}}),
    )
    .await;
    assert_eq!(created.status, 200, "{created:?}");

    // Before the opening: everyone is pre-queued, without a position.
    let mut fans = Vec::new();
    let mut tokens = HashMap::new();
    for i in 0..FANS {
        let fan = Fan::login(&addr, &format!("early-{i}")).await;
        let reply = fan.call(EVENT, json!({"cmd": "join"})).await;
        assert_eq!(reply["reply"], "joined", "{reply}");
        let status = &reply["joined"]["status"];
        assert_eq!(status["status"], "pre_queued", "{reply}");
        assert_eq!(status["opens_at"], opens_at, "{reply}");
        assert_eq!(reply["joined"]["position"], 0, "{reply}");
        tokens.insert(fan.fan, reply["token"].as_str().unwrap().to_owned());
        fans.push(fan);
    }
    // Joining again changes nothing.
    let again = fans[0].call(EVENT, json!({"cmd": "join"})).await;
    assert_eq!(again["joined"]["fresh"], false, "{again}");

    // The pre-queue is durable: kill -9 before the opening loses no one.
    node.kill9();
    node.restart().expect("restarts");
    for fan in &fans {
        assert_eq!(status(fan).await["status"], "pre_queued");
    }

    // One fan watches with its pre-queue token.
    let watcher = &fans[FANS - 1];
    let (mut socket, watching) = watcher.watch(EVENT, &tokens[&watcher.fan]).await;
    assert_eq!(watching["status"]["status"], "pre_queued", "{watching}");
    assert!(
        now_ms() < opens_at,
        "the setup took past the opening; the test cannot watch the draw"
    );

    // The sale opens by itself; the watcher hears its drawn position.
    let heard = socket
        .until(Duration::from_secs(20), |p| {
            p["push"] == "position" || p["push"] == "admitted"
        })
        .await
        .expect("the watcher hears its drawn place");
    let heard_position = heard["position"].as_u64().expect("a position");

    // Every pre-queued fan got exactly one of a run of positions.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut drawn = HashMap::new();
    while drawn.len() < FANS {
        assert!(Instant::now() < deadline, "not all drawn: {drawn:?}");
        for fan in &fans {
            if drawn.contains_key(&fan.fan) {
                continue;
            }
            if let Some(p) = position(&status(fan).await) {
                drawn.insert(fan.fan, p);
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        drawn[&watcher.fan], heard_position,
        "the push told the drawn place"
    );
    let positions: BTreeSet<u64> = drawn.values().copied().collect();
    assert_eq!(positions.len(), FANS, "no position twice: {drawn:?}");
    let first = *positions.first().unwrap();
    assert_eq!(
        positions,
        (first..first + FANS as u64).collect::<BTreeSet<u64>>(),
        "a contiguous run"
    );
    // Random, not arrival order (the chance of 12 fans drawn in the order
    // they joined is 1 in 479 million).
    let in_join_order: Vec<u64> = fans.iter().map(|f| drawn[&f.fan]).collect();
    assert!(
        !in_join_order.is_sorted(),
        "drawn in join order: {in_join_order:?}"
    );

    // A later arrival queues behind every drawn fan.
    let late = Fan::login(&addr, "late").await;
    let reply = late.call(EVENT, json!({"cmd": "join"})).await;
    let late_position = reply["joined"]["position"].as_u64().expect("a position");
    assert!(late_position > *positions.last().unwrap(), "{reply}");

    // kill -9 after the draw: every fan told a place still has it.
    node.kill9();
    node.restart().expect("restarts");
    for fan in &fans {
        let s = status(fan).await;
        if let Some(p) = position(&s) {
            assert_eq!(p, drawn[&fan.fan], "{} moved after a crash: {s}", fan.fan);
        } else {
            // Its turn came and went meanwhile (no show): never requeued.
            assert!(
                matches!(
                    s["status"].as_str(),
                    Some("expired" | "holding" | "purchased")
                ),
                "{s}"
            );
        }
        // A rejoin after the crash keeps the drawn place too.
        let rejoin = fan.call(EVENT, json!({"cmd": "join"})).await;
        if rejoin["reply"] == "joined" && rejoin["joined"]["position"] != 0 {
            assert_eq!(rejoin["joined"]["position"], drawn[&fan.fan], "{rejoin}");
        }
    }
}

/// Presale codes over HTTP: the operator issues codes for registered fans
/// (by login name or fan id); during the presale a join without one is
/// refused, another fan's code or a forged one is refused, the fan's own
/// makes one place in line, which kill -9 does not turn into a second;
/// after the presale anyone joins.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presale_codes_let_registered_fans_in_once() {
    const PRESALE: u64 = 62;
    let store = scratch_dir("presale").join("presale.db");
    let mut node = NodeProcess::start_http(&store, &[]).expect("node starts");
    let addr = node.addr.clone();
    let presale_until = now_ms() + 8_000;
    let venue: Value = serde_json::from_str(&venue_json(1, 4, 10)).unwrap();
    let created = ops(
        &addr,
        "POST",
        "/api/ops/events",
        &json!({"event": PRESALE, "name": "Verified", "city": "Testville",
                "starts_at": 1_900_000_000_000u64, "venue": venue,
                "config": {"presale_until": presale_until}}),
    )
    .await;
    assert_eq!(created.status, 200, "{created:?}");

    let vera = Fan::login(&addr, "vera").await;
    let walt = Fan::login(&addr, "walt").await;
    let codes = ops(
        &addr,
        "POST",
        &format!("/api/ops/events/{PRESALE}/presale-codes"),
        &json!({"names": ["vera"], "fans": [walt.fan]}),
    )
    .await;
    assert_eq!(codes.status, 200, "{codes:?}");
    let codes = codes.json();
    // Ids first, then names.
    assert_eq!(codes["codes"][0]["fan"], walt.fan, "{codes}");
    assert_eq!(codes["codes"][1]["fan"], vera.fan, "{codes}");
    assert_eq!(codes["codes"][1]["name"], "vera", "{codes}");
    let walt_code = codes["codes"][0]["code"].as_str().unwrap().to_owned();
    let vera_code = codes["codes"][1]["code"].as_str().unwrap().to_owned();
    let empty = ops(
        &addr,
        "POST",
        &format!("/api/ops/events/{PRESALE}/presale-codes"),
        &json!({}),
    )
    .await;
    assert_eq!(empty.status, 400, "{empty:?}");
    let unknown = ops(
        &addr,
        "POST",
        "/api/ops/events/9999/presale-codes",
        &json!({"fans": [1]}),
    )
    .await;
    assert_eq!(unknown.status, 404, "{unknown:?}");

    // No code, another fan's code, a forged code: refused.
    let plain = vera.call(PRESALE, json!({"cmd": "join"})).await;
    assert_eq!(plain["refused"], "code_required", "{plain}");
    let theirs = vera
        .send(PRESALE, json!({"cmd": "join_with_code", "code": walt_code}))
        .await;
    assert_eq!(theirs.status, 400, "{theirs:?}");
    assert_eq!(theirs.json()["code"], "invalid_presale_code");
    let mut forged = vera_code.clone();
    forged.replace_range(1..3, if &vera_code[1..3] == "00" { "11" } else { "00" });
    let forged = vera
        .send(PRESALE, json!({"cmd": "join_with_code", "code": forged}))
        .await;
    assert_eq!(forged.json()["code"], "invalid_presale_code", "{forged:?}");

    // Her own code: a place in line (the sale is not open: she waits).
    let joined = vera
        .call(PRESALE, json!({"cmd": "join_with_code", "code": vera_code}))
        .await;
    assert_eq!(joined["reply"], "joined", "{joined}");
    let position = joined["joined"]["position"].as_u64().unwrap();
    let token = joined["token"].as_str().unwrap().to_owned();

    // kill -9 forgets her while she waits; the code does not make a
    // second place, her queue token gives the first one back.
    node.kill9();
    node.restart().expect("restarts");
    let again = vera
        .call(PRESALE, json!({"cmd": "join_with_code", "code": vera_code}))
        .await;
    assert_eq!(again["refused"], "code_used", "{again}");
    let resumed = vera
        .call(PRESALE, json!({"cmd": "resume", "token": token}))
        .await;
    assert_eq!(resumed["joined"]["position"], position, "{resumed}");

    // After the presale, a fan without a code joins.
    let xena = Fan::login(&addr, "xena").await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let reply = xena.call(PRESALE, json!({"cmd": "join"})).await;
        if reply["reply"] == "joined" {
            assert!(
                now_ms() >= presale_until,
                "joined during the presale: {reply}"
            );
            break;
        }
        assert_eq!(reply["refused"], "code_required", "{reply}");
        assert!(Instant::now() < deadline, "the presale never ended");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Proof of work over HTTP: once an operator asks for it, a join without
/// a stamp is 428 `stamp_required`; the fan's challenge solved joins, a
/// replay, another fan's stamp and a forged one are refused before the
/// event hears of them; set back to 0, joins need none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joins_under_pressure_need_a_solved_stamp() {
    const EVENT_POW: u64 = 63;
    let store = scratch_dir("stamps").join("stamps.db");
    let node = NodeProcess::start_http(&store, &[]).expect("node starts");
    let addr = node.addr.clone();
    let venue: Value = serde_json::from_str(&venue_json(1, 4, 10)).unwrap();
    let created = ops(
        &addr,
        "POST",
        "/api/ops/events",
        &json!({"event": EVENT_POW, "name": "Stamped", "city": "Testville",
                "starts_at": 1_900_000_000_000u64, "venue": venue, "config": {}}),
    )
    .await;
    assert_eq!(created.status, 200, "{created:?}");
    let path = format!("/api/ops/events/{EVENT_POW}/stamp");
    let too_hard = ops(&addr, "POST", &path, &json!({"bits": 40})).await;
    assert_eq!(too_hard.status, 400, "{too_hard:?}");
    let set = ops(&addr, "POST", &path, &json!({"bits": 10})).await;
    assert_eq!(set.status, 200, "{set:?}");
    assert_eq!(set.json()["bits"], 10);

    let yan = Fan::login(&addr, "yan").await;
    let zoe = Fan::login(&addr, "zoe").await;
    let bare = yan.send(EVENT_POW, json!({"cmd": "join"})).await;
    assert_eq!(bare.status, 428, "{bare:?}");
    assert_eq!(bare.json()["code"], "stamp_required");

    let issued = yan.get(&format!("/api/events/{EVENT_POW}/challenge")).await;
    assert_eq!(issued["bits"], 10, "{issued}");
    assert_eq!(issued["header"], "x-onsale-stamp", "{issued}");
    let challenge = issued["challenge"].as_str().unwrap().to_owned();
    let counter = onsale_schema::stamp::solve(&challenge, 1 << 24).expect("solves");
    let stamp = format!("{challenge}.{counter}");
    let join = |fan: &Fan, stamp: String| {
        let fan = fan.clone();
        async move {
            fan.send_with(
                EVENT_POW,
                json!({"cmd": "join"}),
                &[("X-Onsale-Stamp", &stamp)],
            )
            .await
        }
    };
    // Zoe cannot use Yan's stamp; a tampered counter does too little work
    // (or is another stamp altogether); nonsense is malformed.
    let theirs = join(&zoe, stamp.clone()).await;
    assert_eq!(theirs.json()["code"], "stamp_wrong_fan", "{theirs:?}");
    let garbage = join(&yan, "not-a-stamp".into()).await;
    assert_eq!(garbage.json()["code"], "stamp_malformed", "{garbage:?}");
    let mut forged = challenge.clone();
    forged.replace_range(
        60..62,
        if &challenge[60..62] == "00" {
            "11"
        } else {
            "00"
        },
    );
    let forged = join(&yan, format!("{forged}.{counter}")).await;
    assert_eq!(forged.json()["code"], "stamp_forged", "{forged:?}");

    let joined = join(&yan, stamp.clone()).await;
    assert_eq!(joined.status, 200, "{joined:?}");
    assert_eq!(joined.json()["reply"], "joined");
    let replayed = join(&yan, stamp).await;
    assert_eq!(replayed.status, 403, "{replayed:?}");
    assert_eq!(replayed.json()["code"], "stamp_replayed");

    let off = ops(&addr, "POST", &path, &json!({"bits": 0})).await;
    assert_eq!(off.json()["bits"], 0, "{off:?}");
    let free = zoe.call(EVENT_POW, json!({"cmd": "join"})).await;
    assert_eq!(free["reply"], "joined", "{free}");
}
