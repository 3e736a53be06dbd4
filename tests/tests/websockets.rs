//! Fan websockets against a real gateway process: admission fan-out,
//! section-only seat changes, per-fan pushes, reconnecting with the queue
//! token (also after a kill -9 of the whole node), and garbage on the wire.

use std::time::{Duration, Instant};

use fastwebsockets::OpCode;
use onsale_tests::client::{Fan, FanSocket, Incoming, answer_payment, create_open_event, ops};
use onsale_tests::{NodeProcess, scratch_dir, venue_json};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(15);

fn gateway(name: &str) -> NodeProcess {
    let store = scratch_dir(name).join("ws.db");
    NodeProcess::start_http(&store, &["--demo"]).expect("the gateway starts")
}

async fn watch(fan: &Fan, event: u64, token: Option<&str>) -> (FanSocket, Value) {
    let mut socket = fan.websocket().await.expect("websocket");
    let mut request = json!({"op": "watch", "event": event});
    if let Some(token) = token {
        request["token"] = json!(token);
    }
    socket.send(&request).await.expect("watch");
    let watching = socket
        .until(WAIT, |p| p["push"] == "watching")
        .await
        .expect("watching");
    (socket, watching)
}

/// Twelve fans wait while the sale is scheduled; when it opens, the
/// gateway tells each of them exactly once, in position order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_fans_hear_admitted_from_one_push_per_gateway() {
    let node = gateway("ws-admit");
    let addr = node.addr.as_str();
    // An event that is not open yet: fans queue.
    let venue: Value = serde_json::from_str(&venue_json(2, 4, 10)).unwrap();
    let created = ops(
        addr,
        "POST",
        "/api/ops/events",
        &json!({"event": 3, "name": "Queue night", "city": "Testville", "starts_at": 1_900_000_000_000u64,
                "venue": venue, "config": {"shoppers_max": 100}}),
    )
    .await;
    assert_eq!(created.status, 200, "{created:?}");
    let mut fans = Vec::new();
    for i in 0..12 {
        let fan = Fan::login(addr, &format!("queued-{i}")).await;
        let joined = fan.call(3, json!({"cmd": "join"})).await;
        assert_eq!(joined["joined"]["status"]["status"], "waiting", "{joined}");
        let position = joined["joined"]["position"].as_u64().unwrap();
        let token = joined["token"].as_str().unwrap().to_owned();
        let (socket, watching) = watch(&fan, 3, Some(&token)).await;
        assert_eq!(watching["status"]["status"], "waiting", "{watching}");
        assert_eq!(watching["sale"], "scheduled", "{watching}");
        fans.push((fan, position, socket));
    }
    let opened = ops(
        addr,
        "POST",
        "/api/ops/events/3/sale",
        &json!({"command": "open"}),
    )
    .await;
    assert_eq!(opened.status, 200, "{opened:?}");
    for (_, position, socket) in &mut fans {
        let admitted = socket
            .until(WAIT, |p| p["push"] == "admitted")
            .await
            .expect("admitted");
        assert_eq!(admitted["position"], *position, "{admitted}");
        assert!(admitted["decided_at"].as_u64().unwrap() > 0, "{admitted}");
    }
    // The admission was one push for the gateway, twelve frames for fans.
    let metrics = onsale_tests::client::request(addr, "GET", "/metrics", &[], b"")
        .await
        .body;
    assert!(
        metrics.contains("onsale_admissions_pushed_total 12"),
        "{metrics}"
    );
}

/// A fan viewing section 0 sees seats change there, and nothing from
/// section 1; its own purchase arrives as a push.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seat_changes_go_to_viewers_of_that_section_only() {
    let node = gateway("ws-seats");
    let addr = node.addr.as_str();
    create_open_event(
        addr,
        4,
        &venue_json(2, 2, 6),
        // The event warns halfway through a window this short (a minute
        // before the deadline otherwise): at 4 s, 4 s before the deadline.
        json!({"checkout_window_ms": 8_000}),
    )
    .await;
    let viewer = Fan::login(addr, "viewer").await;
    viewer.call(4, json!({"cmd": "join"})).await;
    let (mut eyes, _) = watch(&viewer, 4, None).await;
    eyes.send(&json!({"op": "view", "section": 0}))
        .await
        .unwrap();
    let buyer = Fan::login(addr, "buyer").await;
    buyer.call(4, json!({"cmd": "join"})).await;
    let (mut own, _) = watch(&buyer, 4, None).await;
    // Let the view register before seats change.
    tokio::time::sleep(Duration::from_millis(200)).await;

    // Section 1 first: the viewer must not hear of it.
    let held = buyer
        .call(4, json!({"cmd": "hold", "request": {"kind": "best", "count": 1, "area": {"in": "section", "section": 1}}}))
        .await;
    assert_eq!(held["reply"], "hold_placed", "{held}");
    let hold = held["placed"]["hold"].clone();
    buyer.call(4, json!({"cmd": "release", "hold": hold})).await;
    let held = buyer
        .call(4, json!({"cmd": "hold", "request": {"kind": "best", "count": 2, "area": {"in": "section", "section": 0}}}))
        .await;
    assert_eq!(held["reply"], "hold_placed", "{held}");
    let seats = held["placed"]["seats"].clone();
    let change = eyes
        .until(WAIT, |p| p["push"] == "seats_changed")
        .await
        .expect("a seat change");
    assert_eq!(change["section"], 0, "section 1's change leaked: {change}");
    assert_eq!(change["seats"], seats, "{change}");
    assert_eq!(change["available"], false);

    let hold = held["placed"]["hold"].clone();
    // (The released first hold may have been warned about before its
    // release reached the hub: wait for this hold's warning.)
    let warning = own
        .until(WAIT, |p| p["push"] == "hold_expiring" && p["hold"] == hold)
        .await
        .expect("the hold's expiry warning, said by the event");
    assert_eq!(warning["hold"], hold, "{warning}");
    buyer
        .call(4, json!({"cmd": "submit_payment", "hold": hold}))
        .await;
    let deadline = Instant::now() + WAIT;
    let purchased = loop {
        match own.next(Duration::from_secs(5)).await.expect("a push") {
            Incoming::Push(p) if p["push"] == "purchased" => break p,
            Incoming::Push(_) => {}
            Incoming::Closed(code) => panic!("closed {code}"),
        }
        // The simulated provider may decline: pay again.
        let status = buyer.call(4, json!({"cmd": "status"})).await;
        if status["status"]["paying"] == false {
            buyer
                .call(4, json!({"cmd": "submit_payment", "hold": hold}))
                .await;
        }
        assert!(Instant::now() < deadline, "no purchase push");
    };
    assert_eq!(purchased["seats"], seats, "{purchased}");
}

/// The provider declines (through the signed webhook, so the test decides):
/// the fan hears it on its socket at once, with until when it may pay
/// again, instead of polling.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declined_payment_is_pushed_to_the_fan() {
    let secret = "websocket webhook secret";
    let store = scratch_dir("ws-declined").join("ws.db");
    let node = NodeProcess::start_http(
        &store,
        &[
            "--demo",
            "--provider",
            "webhook",
            "--webhook-secret",
            secret,
        ],
    )
    .expect("the gateway starts");
    let addr = node.addr.as_str();
    create_open_event(addr, 6, &venue_json(1, 2, 4), json!({})).await;
    let fan = Fan::login(addr, "declined").await;
    let (mut socket, _) = watch(&fan, 6, None).await;
    let (hold, payment) = hold_and_pay(&fan, 6).await;
    answer_payment(addr, secret, 6, payment, "declined").await;
    let declined = socket
        .until(WAIT, |p| p["push"] == "payment_declined")
        .await
        .expect("a payment_declined push");
    assert_eq!(declined["hold"], hold, "{declined}");
    assert!(declined["retry_until"].as_u64().is_some(), "{declined}");
    let status = fan.call(6, json!({"cmd": "status"})).await;
    assert_eq!(status["status"]["paying"], false, "{status}");
}

/// Holds and pays on event `event`, returning the hold and the payment.
async fn hold_and_pay(fan: &Fan, event: u64) -> (Value, u64) {
    fan.call(event, json!({"cmd": "join"})).await;
    let held = fan
        .call(event, json!({"cmd": "hold", "request": {"kind": "best", "count": 2, "area": {"in": "anywhere"}}}))
        .await;
    assert_eq!(held["reply"], "hold_placed", "{held}");
    let hold = held["placed"]["hold"].clone();
    let started = fan
        .call(event, json!({"cmd": "submit_payment", "hold": hold}))
        .await;
    assert_eq!(started["reply"], "payment_started", "{started}");
    let payment = started["started"]["payment"]
        .as_u64()
        .expect("a payment id");
    (hold, payment)
}

/// A provider that loses its answer used to stall the sale until the
/// provider timeout (30 minutes by default): the event now asks the
/// provider what became of the payment, and the answer settles it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payment_whose_answer_is_lost_is_settled_by_asking_the_provider() {
    let store = scratch_dir("ws-lost-answer").join("ws.db");
    let node = NodeProcess::start_http(
        &store,
        &[
            "--demo",
            "--fault-provider-silent-per-mille",
            "1000",
            "--payment-query-after-ms",
            "300",
        ],
    )
    .expect("the gateway starts");
    let addr = node.addr.as_str();
    create_open_event(addr, 6, &venue_json(1, 2, 4), json!({})).await;
    let fan = Fan::login(addr, "lost answer").await;
    let (mut socket, _) = watch(&fan, 6, None).await;
    let (hold, _) = hold_and_pay(&fan, 6).await;
    let settled = socket
        .until(WAIT, |p| {
            p["push"] == "purchased" || (p["push"] == "payment_declined" && p["hold"] == hold)
        })
        .await
        .expect("the payment is settled long before the provider timeout");
    if settled["push"] == "payment_declined" {
        assert_eq!(settled["reason"], "declined", "{settled}");
    }
}

/// A provider that never answers, not even when asked: at the provider
/// timeout the payment is voided and the fan is told why, not only that
/// its hold is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payment_never_answered_is_voided_and_the_fan_told_why() {
    let secret = "websocket webhook secret";
    let store = scratch_dir("ws-voided").join("ws.db");
    let node = NodeProcess::start_http(
        &store,
        &[
            "--demo",
            "--provider",
            "webhook",
            "--webhook-secret",
            secret,
            "--payment-query-after-ms",
            "200",
        ],
    )
    .expect("the gateway starts");
    let addr = node.addr.as_str();
    let config = json!({"provider_timeout_ms": 1_500});
    create_open_event(addr, 6, &venue_json(1, 2, 4), config).await;
    let fan = Fan::login(addr, "never answered").await;
    let (mut socket, _) = watch(&fan, 6, None).await;
    let (hold, payment) = hold_and_pay(&fan, 6).await;
    let voided = socket
        .until(WAIT, |p| {
            p["push"] == "payment_declined" && p["hold"] == hold
        })
        .await
        .expect("a payment_declined push at the provider timeout");
    assert_eq!(voided["reason"], "no_answer", "{voided}");
    assert!(voided["retry_until"].is_null(), "{voided}");
    socket
        .until(WAIT, |p| p["push"] == "hold_expired" && p["hold"] == hold)
        .await
        .expect("then the hold is released");
    // The provider confirms after all, twice: one refund, then nothing.
    let first = answer_payment(addr, secret, 6, payment, "confirmed").await;
    assert_eq!(first["settled"]["result"], "refund", "{first}");
    let again = answer_payment(addr, secret, 6, payment, "confirmed").await;
    assert_eq!(again["settled"]["result"], "ignored", "{again}");
}

/// A fan who reconnects with its queue token keeps its place: in a new
/// tab, and after the whole node was killed and restarted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnecting_fan_keeps_its_place_even_after_a_restart() {
    let mut node = gateway("ws-resume");
    let addr = node.addr.clone();
    let venue: Value = serde_json::from_str(&venue_json(1, 2, 5)).unwrap();
    let created = ops(
        &addr,
        "POST",
        "/api/ops/events",
        &json!({"event": 6, "name": "Later", "city": "Testville", "starts_at": 1_900_000_000_000u64,
                "venue": venue}),
    )
    .await;
    assert_eq!(created.status, 200, "{created:?}");
    let fan = Fan::login(&addr, "loyal").await;
    for i in 0..3 {
        Fan::login(&addr, &format!("ahead-{i}"))
            .await
            .call(6, json!({"cmd": "join"}))
            .await;
    }
    let joined = fan.call(6, json!({"cmd": "join"})).await;
    let position = joined["joined"]["position"].clone();
    let token = joined["token"].as_str().unwrap().to_owned();
    let (first_tab, watching) = watch(&fan, 6, Some(&token)).await;
    assert_eq!(watching["status"]["position"], position, "{watching}");
    let (_second_tab, watching) = watch(&fan, 6, Some(&token)).await;
    assert_eq!(watching["status"]["position"], position, "{watching}");
    drop(first_tab);

    node.restart().expect("restart");
    let (mut socket, watching) = watch(&fan, 6, Some(&token)).await;
    assert_eq!(watching["status"]["status"], "waiting", "{watching}");
    assert_eq!(watching["status"]["position"], position, "{watching}");
    // And it is admitted when the sale opens.
    ops(
        &addr,
        "POST",
        "/api/ops/events/6/sale",
        &json!({"command": "open"}),
    )
    .await;
    let admitted = socket
        .until(WAIT, |p| p["push"] == "admitted")
        .await
        .expect("admitted after the restart");
    assert_eq!(admitted["position"], position);
}

/// Garbage, binary frames, oversized frames and forged sessions: clear
/// errors, the connection closed where it must be, the gateway unharmed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_garbage_is_answered_and_bounded() {
    let node = gateway("ws-garbage");
    let addr = node.addr.as_str();
    // No session, a forged one: no upgrade.
    assert!(FanSocket::connect(addr, "/ws").await.is_err());
    assert!(
        FanSocket::connect(addr, "/ws?session=sdeadbeef")
            .await
            .is_err()
    );

    let fan = Fan::login(addr, "noisy").await;
    let mut socket = fan.websocket().await.unwrap();
    socket
        .send_raw(OpCode::Text, b"{not json".to_vec())
        .await
        .unwrap();
    let error = socket.until(WAIT, |p| p["push"] == "error").await.unwrap();
    assert_eq!(error["code"], "malformed_json", "{error}");
    socket
        .send(&json!({"op": "view", "section": 1}))
        .await
        .unwrap();
    let error = socket.until(WAIT, |p| p["push"] == "error").await.unwrap();
    assert_eq!(error["code"], "bad_request", "{error}");
    socket
        .send_raw(OpCode::Binary, vec![0, 1, 2])
        .await
        .unwrap();
    let error = socket.until(WAIT, |p| p["push"] == "error").await.unwrap();
    assert_eq!(error["code"], "bad_request", "{error}");
    // The third bad frame closes the connection (policy violation).
    let closed = loop {
        match socket.next(WAIT).await {
            Ok(Incoming::Closed(code)) => break code,
            Ok(Incoming::Push(_)) => {}
            Err(e) => panic!("no close frame: {e:#}"),
        }
    };
    assert_eq!(closed, 1008);

    // An oversized frame: error push, close 1009.
    let mut socket = fan.websocket().await.unwrap();
    socket
        .send_raw(OpCode::Text, vec![b' '; 16 * 1024])
        .await
        .unwrap();
    let error = socket.until(WAIT, |p| p["push"] == "error").await.unwrap();
    assert_eq!(error["code"], "payload_too_large", "{error}");
    let closed = loop {
        match socket.next(WAIT).await {
            Ok(Incoming::Closed(code)) => break code,
            Ok(Incoming::Push(_)) => {}
            Err(e) => panic!("no close frame: {e:#}"),
        }
    };
    assert_eq!(closed, 1009);

    // A huge frame is cut off after its header: the error push, then the
    // connection ends (a close frame, or a reset if the fan is still
    // sending).
    let mut socket = fan.websocket().await.unwrap();
    let _ = socket.send_raw(OpCode::Text, vec![b' '; 1 << 20]).await;
    let error = socket.until(WAIT, |p| p["push"] == "error").await.unwrap();
    assert_eq!(error["code"], "payload_too_large", "{error}");
    assert!(!matches!(socket.next(WAIT).await, Ok(Incoming::Push(_))));

    // An unknown event and a forged queue token: error pushes.
    let mut socket = fan.websocket().await.unwrap();
    socket
        .send(&json!({"op": "watch", "event": 77}))
        .await
        .unwrap();
    let error = socket.until(WAIT, |p| p["push"] == "error").await.unwrap();
    assert_eq!(error["code"], "unknown_event", "{error}");
    socket
        .send(&json!({"op": "watch", "event": 1, "token": "00".repeat(48)}))
        .await
        .unwrap();
    let error = socket.until(WAIT, |p| p["push"] == "error").await.unwrap();
    assert_eq!(error["code"], "invalid_token", "{error}");

    // Still serving.
    let fresh = Fan::login(addr, "calm").await;
    let joined = fresh.call(1, json!({"cmd": "join"})).await;
    assert_eq!(joined["reply"], "joined", "{joined}");
}

/// Frames a browser never sends, written by hand on a raw socket: an
/// unmasked frame is a protocol error (close 1002); a ping gets its pong.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_frames_follow_the_rfc() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let node = gateway("ws-raw");
    let fan = Fan::login(&node.addr, "raw").await;
    let open = || async {
        let mut stream = tokio::net::TcpStream::connect(&node.addr).await.unwrap();
        let head = format!(
            "GET /ws?session={} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
            fan.session
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        let mut seen = Vec::new();
        while !seen.ends_with(b"\r\n\r\n") {
            seen.push(stream.read_u8().await.unwrap());
        }
        assert!(String::from_utf8_lossy(&seen).contains(" 101 "), "{seen:?}");
        stream
    };
    let read_frame = |mut stream: tokio::net::TcpStream| async move {
        let mut head = [0u8; 2];
        tokio::time::timeout(WAIT, stream.read_exact(&mut head))
            .await
            .expect("a frame in time")
            .unwrap();
        let mut payload = vec![0u8; usize::from(head[1] & 0x7f)];
        stream.read_exact(&mut payload).await.unwrap();
        (head[0] & 0x0f, payload, stream)
    };

    // A ping (masked, as a client must) gets a pong with its payload.
    let mut stream = open().await;
    let mask = [1u8, 2, 3, 4];
    let mut ping = vec![0x89, 0x80 | 4];
    ping.extend_from_slice(&mask);
    ping.extend(b"beat".iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    stream.write_all(&ping).await.unwrap();
    let (opcode, payload, _) = read_frame(stream).await;
    assert_eq!((opcode, payload.as_slice()), (0xA, &b"beat"[..]));

    // An unmasked text frame: close 1002.
    let mut stream = open().await;
    stream.write_all(&[0x81, 0x02, b'{', b'}']).await.unwrap();
    let (opcode, payload, _) = read_frame(stream).await;
    assert_eq!(opcode, 0x8, "a close frame");
    assert_eq!(u16::from_be_bytes([payload[0], payload[1]]), 1002);
}
