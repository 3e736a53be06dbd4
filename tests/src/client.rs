//! A fan's and an operator's view of a gateway, over real sockets: plain
//! HTTP/1.1 (one request per connection, so every request is independent)
//! and a websocket client (fastwebsockets).

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use fastwebsockets::{FragmentCollector, Frame, OpCode, Payload};
use http_body_util::Empty;
use hyper::header::{CONNECTION, UPGRADE};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::OPERATOR_TOKEN;

/// A response: status, raw header block, body.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: String,
    pub body: String,
}

impl Response {
    /// The body as JSON (panics with the body if it is not).
    #[must_use]
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }

    #[must_use]
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.trim()
                .eq_ignore_ascii_case(name)
                .then_some(value.trim())
        })
    }
}

/// One HTTP/1.1 request on a fresh connection.
pub async fn request(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response {
    let stream = TcpStream::connect(addr).await.expect("connect");
    exchange(stream, addr, method, path, headers, body).await
}

/// As [`request`], from the local address `from` (a loopback address
/// such as 127.0.0.2: a client, or a proxy, of its own).
pub async fn request_from(
    from: &str,
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind(format!("{from}:0").parse().expect("a source address"))
        .expect("bind the source address");
    let stream = socket
        .connect(addr.parse().expect("an address"))
        .await
        .expect("connect");
    exchange(stream, addr, method, path, headers, body).await
}

async fn exchange(
    mut stream: TcpStream,
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response {
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await.expect("write head");
    // The server may answer (413) without reading an oversized body.
    let _ = stream.write_all(body).await;
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw).await;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no header block in {text:?}"));
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

/// An operator request with the test operator token.
pub async fn ops(addr: &str, method: &str, path: &str, body: &Value) -> Response {
    let auth = format!("Bearer {OPERATOR_TOKEN}");
    let body = if body.is_null() {
        Vec::new()
    } else {
        serde_json::to_vec(body).expect("encode")
    };
    request(addr, method, path, &[("Authorization", &auth)], &body).await
}

/// The payment provider answers `payment` of `event` (`"confirmed"` or
/// `"declined"`) through the gateway's webhook, signed now with `secret`;
/// the gateway must take it.
pub async fn answer_payment(
    addr: &str,
    secret: &str,
    event: u64,
    payment: u64,
    answer: &str,
) -> Value {
    let body = json!({"event": event, "payment": payment, "answer": answer}).to_string();
    let signature = onsale_gateway::auth::sign_webhook(
        secret.as_bytes(),
        onsale_schema::Millis(crate::now_ms()),
        body.as_bytes(),
    );
    let headers = [("Onsale-Signature", signature.as_str())];
    let response = request(
        addr,
        "POST",
        "/api/webhooks/payments",
        &headers,
        body.as_bytes(),
    )
    .await;
    assert_eq!(response.status, 200, "{response:?}");
    response.json()
}

/// Create an event through the operator API and open its sale.
pub async fn create_open_event(addr: &str, event: u64, venue_json: &str, config: Value) {
    let venue: Value = serde_json::from_str(venue_json).expect("venue JSON");
    let created = ops(
        addr,
        "POST",
        "/api/ops/events",
        &json!({"event": event, "name": format!("Test event {event}"), "city": "Testville",
                "starts_at": 1_900_000_000_000u64, "venue": venue, "config": config}),
    )
    .await;
    assert_eq!(created.status, 200, "create: {created:?}");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let opened = ops(
            addr,
            "POST",
            &format!("/api/ops/events/{event}/sale"),
            &json!({"command": "open"}),
        )
        .await;
        if opened.status == 200 {
            return;
        }
        assert!(
            opened.status == 503 && Instant::now() < deadline,
            "open: {opened:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A logged-in fan.
#[derive(Clone, Debug)]
pub struct Fan {
    pub addr: String,
    pub fan: u64,
    pub session: String,
}

impl Fan {
    /// The demo login.
    pub async fn login(addr: &str, name: &str) -> Fan {
        let response = request(
            addr,
            "POST",
            "/api/session",
            &[],
            json!({ "name": name }).to_string().as_bytes(),
        )
        .await;
        assert_eq!(response.status, 200, "login: {response:?}");
        let body = response.json();
        Fan {
            addr: addr.to_owned(),
            fan: body["fan"].as_u64().expect("fan id"),
            session: body["session"].as_str().expect("session").to_owned(),
        }
    }

    /// One command to an event, with this fan's session; `command` gets
    /// this fan's id.
    pub async fn send(&self, event: u64, command: Value) -> Response {
        self.send_with(event, command, &[]).await
    }

    /// [`Fan::send`] with more headers (a proof-of-work stamp, say).
    pub async fn send_with(
        &self,
        event: u64,
        mut command: Value,
        headers: &[(&str, &str)],
    ) -> Response {
        command["fan"] = json!(self.fan);
        let auth = format!("Bearer {}", self.session);
        let mut all = vec![("Authorization", auth.as_str())];
        all.extend_from_slice(headers);
        request(
            &self.addr,
            "POST",
            &format!("/api/events/{event}/commands"),
            &all,
            command.to_string().as_bytes(),
        )
        .await
    }

    /// A GET with this fan's session: the JSON of a 200 answer.
    pub async fn get(&self, path: &str) -> Value {
        let auth = format!("Bearer {}", self.session);
        let response = request(&self.addr, "GET", path, &[("Authorization", &auth)], b"").await;
        assert_eq!(response.status, 200, "GET {path}: {response:?}");
        response.json()
    }

    /// A command retried while the event (or a limit) says to wait; the
    /// 200 reply.
    pub async fn call(&self, event: u64, command: Value) -> Value {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let response = self.send(event, command.clone()).await;
            let wait = matches!(response.status, 429 | 503)
                || (response.status == 200 && response.json()["refused"] == "busy");
            if !wait {
                assert_eq!(response.status, 200, "{command}: {response:?}");
                return response.json();
            }
            assert!(
                Instant::now() < deadline,
                "still refused after 15 s: {command}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Watch `event` with the fan's queue token on a new websocket, as the
    /// fan page does: a `busy` answer (the event is moving or failing
    /// over) is retried for up to 20 s. The socket and the `watching`
    /// answer.
    pub async fn watch(&self, event: u64, token: &str) -> (FanSocket, Value) {
        let wait = Duration::from_secs(20);
        let deadline = Instant::now() + wait;
        loop {
            let mut socket = self.websocket().await.expect("websocket");
            socket
                .send(&json!({"op": "watch", "event": event, "token": token}))
                .await
                .expect("watch");
            let answer = socket
                .until(wait, |p| p["push"] == "watching" || p["push"] == "error")
                .await
                .expect("an answer to watch");
            if answer["push"] == "watching" {
                return (socket, answer);
            }
            assert!(
                answer["code"] == "busy" && Instant::now() < deadline,
                "watch refused: {answer}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Open this fan's websocket.
    pub async fn websocket(&self) -> anyhow::Result<FanSocket> {
        FanSocket::connect(&self.addr, &format!("/ws?session={}", self.session)).await
    }
}

struct SpawnExecutor;

impl<F> hyper::rt::Executor<F> for SpawnExecutor
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, fut: F) {
        tokio::spawn(fut);
    }
}

/// A websocket to the gateway.
pub struct FanSocket {
    ws: FragmentCollector<TokioIo<Upgraded>>,
}

impl FanSocket {
    /// Connect to `path` (with its query) on `addr`.
    pub async fn connect(addr: &str, path: &str) -> anyhow::Result<FanSocket> {
        let stream = TcpStream::connect(addr).await.context("connect")?;
        let request = hyper::Request::builder()
            .method("GET")
            .uri(format!("http://{addr}{path}"))
            .header("Host", addr)
            .header(UPGRADE, "websocket")
            .header(CONNECTION, "upgrade")
            .header(
                "Sec-WebSocket-Key",
                fastwebsockets::handshake::generate_key(),
            )
            .header("Sec-WebSocket-Version", "13")
            .body(Empty::<Bytes>::new())
            .context("request")?;
        let (ws, _) = fastwebsockets::handshake::client(&SpawnExecutor, request, stream)
            .await
            .context("websocket handshake")?;
        Ok(FanSocket {
            ws: FragmentCollector::new(ws),
        })
    }

    /// Send a JSON text frame.
    pub async fn send(&mut self, value: &Value) -> anyhow::Result<()> {
        self.send_raw(OpCode::Text, value.to_string().into_bytes())
            .await
    }

    /// Send any frame.
    pub async fn send_raw(&mut self, opcode: OpCode, payload: Vec<u8>) -> anyhow::Result<()> {
        self.ws
            .write_frame(Frame::new(true, opcode, None, Payload::Owned(payload)))
            .await
            .context("write frame")
    }

    /// The next frame: `Ok(Some(json))` for a text frame, `Ok(None)` for a
    /// close (its code is in the error otherwise), within `within`.
    pub async fn next(&mut self, within: Duration) -> anyhow::Result<Incoming> {
        let frame = tokio::time::timeout(within, self.ws.read_frame())
            .await
            .context("no frame in time")?
            .context("read frame")?;
        match frame.opcode {
            OpCode::Text => Ok(Incoming::Push(
                serde_json::from_slice(&frame.payload).context("push is not JSON")?,
            )),
            OpCode::Close => {
                let code = frame
                    .payload
                    .get(..2)
                    .map_or(1005, |b| u16::from_be_bytes([b[0], b[1]]));
                Ok(Incoming::Closed(code))
            }
            other => bail!("unexpected frame {other:?}"),
        }
    }

    /// Read pushes until one satisfies `want`, within `within`.
    pub async fn until(
        &mut self,
        within: Duration,
        mut want: impl FnMut(&Value) -> bool,
    ) -> anyhow::Result<Value> {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next(left).await? {
                Incoming::Push(push) if want(&push) => return Ok(push),
                Incoming::Push(_) => {}
                Incoming::Closed(code) => bail!("closed ({code}) while waiting"),
            }
        }
    }
}

impl std::fmt::Debug for FanSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FanSocket")
    }
}

/// What arrived on a websocket.
#[derive(Debug)]
pub enum Incoming {
    Push(Value),
    Closed(u16),
}
