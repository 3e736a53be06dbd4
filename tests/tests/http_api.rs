//! The HTTP gateway with a real process on a real socket: `onsale --demo
//! --listen` serving the demo event, spoken to with plain HTTP/1.1 (one
//! request per connection) on loopback.

use std::time::{Duration, Instant};

use onsale_tests::{NodeProcess, scratch_dir};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const NODE: &str = env!("CARGO_BIN_EXE_onsale-node-under-test");

/// A response: status, raw header block, body.
#[derive(Debug)]
struct Response {
    status: u16,
    headers: String,
    body: String,
}

impl Response {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.trim()
                .eq_ignore_ascii_case(name)
                .then_some(value.trim())
        })
    }
}

async fn request(addr: &str, method: &str, path: &str, body: &[u8]) -> Response {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.expect("write head");
    // The server may answer (413) without reading an oversized body.
    let _ = stream.write_all(body).await;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.expect("read response");
    let text = String::from_utf8(raw).expect("UTF-8 response");
    let (head, body) = text.split_once("\r\n\r\n").expect("a header block");
    let (status_line, headers) = head.split_once("\r\n").unwrap_or((head, ""));
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    Response {
        status,
        headers: headers.to_owned(),
        body: body.to_owned(),
    }
}

async fn command(addr: &str, event: u64, command: Value) -> Response {
    let body = serde_json::to_vec(&command).expect("encode");
    request(
        addr,
        "POST",
        &format!("/api/events/{event}/commands"),
        &body,
    )
    .await
}

/// A command to the demo event, retried while it answers busy; 200 expected.
async fn call(addr: &str, cmd: Value) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let response = command(addr, 1, cmd.clone()).await;
        let busy = response.status == 503
            || (response.status == 200 && response.json()["refused"] == "busy");
        if !busy {
            assert_eq!(response.status, 200, "{cmd}: {response:?}");
            return response.json();
        }
        assert!(Instant::now() < deadline, "still busy after 10 s: {cmd}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn status(addr: &str, fan: u64) -> Value {
    let reply = call(addr, json!({"cmd": "status", "fan": fan})).await;
    assert_eq!(reply["reply"], "status", "{reply}");
    reply["status"].clone()
}

fn demo(name: &str) -> NodeProcess {
    let store = scratch_dir(name).join("demo.db");
    NodeProcess::start_http(NODE, &store, &["--demo"]).expect("the demo gateway starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_overview() {
    let node = demo("http-health");
    let health = request(&node.addr, "GET", "/healthz", b"").await;
    assert_eq!((health.status, health.body.as_str()), (200, "ok"));
    let ready = request(&node.addr, "GET", "/readyz", b"").await;
    assert_eq!(ready.status, 200);
    let overview = request(&node.addr, "GET", "/api/events/1", b"").await;
    assert_eq!(overview.status, 200, "{overview:?}");
    assert_eq!(
        overview.header("content-type"),
        Some("application/json"),
        "{overview:?}"
    );
    let overview = overview.json();
    assert_eq!(overview["reply"], "overview", "{overview}");
    assert_eq!(overview["overview"]["event"], 1);
    assert_eq!(overview["overview"]["sale"], "on_sale");
    assert_eq!(overview["overview"]["capacity"], 508);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fan_buys_two_seats_over_http() {
    let node = demo("http-journey");
    let addr = node.addr.as_str();
    let fan = 7;
    let joined = call(addr, json!({"cmd": "join", "fan": fan})).await;
    assert_eq!(joined["reply"], "joined", "{joined}");
    assert!(joined["token"].is_string(), "{joined}");

    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let status = status(addr, fan).await;
        if status["status"] == "admitted" {
            break;
        }
        assert_eq!(status["status"], "waiting", "{status}");
        assert!(Instant::now() < deadline, "not admitted within 10 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let held = call(
        addr,
        json!({"cmd": "hold", "fan": fan,
               "request": {"kind": "best", "count": 2, "area": {"in": "anywhere"}}}),
    )
    .await;
    assert_eq!(held["reply"], "hold_placed", "{held}");
    assert_eq!(held["placed"]["seats"].as_array().map(Vec::len), Some(2));
    let hold = held["placed"]["hold"].clone();

    // The simulated provider answers within ~2 s, and declines a few
    // payments: a declined fan may pay again while its hold lasts.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut pay = true;
    loop {
        if pay {
            let started = call(
                addr,
                json!({"cmd": "submit_payment", "fan": fan, "hold": hold}),
            )
            .await;
            assert_eq!(started["reply"], "payment_started", "{started}");
        }
        let status = status(addr, fan).await;
        if status["status"] == "purchased" {
            assert_eq!(status["tickets"], 2, "{status}");
            break;
        }
        assert_eq!(status["status"], "holding", "{status}");
        pay = status["paying"] == false;
        assert!(
            Instant::now() < deadline,
            "not purchased within 10 s: {status}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A refusal is a value, not an HTTP error.
    let again = call(
        addr,
        json!({"cmd": "submit_payment", "fan": fan, "hold": hold}),
    )
    .await;
    assert_eq!(again["reply"], "payment_refused", "{again}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_stable_error_codes() {
    let node = demo("http-errors");
    let addr = node.addr.as_str();
    let expect = |response: Response, status: u16, code: &str| {
        assert_eq!(response.status, status, "{response:?}");
        let body = response.json();
        assert_eq!(body["code"], code, "{body}");
        assert!(body["message"].is_string(), "{body}");
    };

    let path = "/api/events/1/commands";
    expect(
        request(addr, "POST", path, b"{\"cmd\":\"join\",").await,
        400,
        "malformed_json",
    );
    expect(
        request(addr, "POST", path, b"{\"cmd\":\"fly\",\"fan\":1}").await,
        400,
        "malformed_json",
    );

    let oversized = format!(
        "{{\"cmd\":\"join\",\"fan\":1,\"pad\":\"{}\"}}",
        "x".repeat(70 * 1024)
    );
    expect(
        request(addr, "POST", path, oversized.as_bytes()).await,
        413,
        "payload_too_large",
    );

    expect(
        command(addr, 99, json!({"cmd": "join", "fan": 1})).await,
        404,
        "unknown_event",
    );
    expect(
        request(addr, "GET", "/api/events/99", b"").await,
        404,
        "unknown_event",
    );
    expect(
        request(addr, "GET", "/api/events/nope", b"").await,
        400,
        "bad_request",
    );

    for operator in [
        json!({"cmd": "sale", "command": "close"}),
        json!({"cmd": "audit"}),
        json!({"cmd": "provider_answer", "payment": 1, "answer": "confirmed"}),
    ] {
        expect(command(addr, 1, operator).await, 403, "unauthorized");
    }
    // Still on sale: the refused close did nothing.
    let overview = request(addr, "GET", "/api/events/1", b"").await.json();
    assert_eq!(overview["overview"]["sale"], "on_sale", "{overview}");
}
