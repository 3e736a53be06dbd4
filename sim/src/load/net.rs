//! The load driver's sockets: one HTTP/1.1 connection or one websocket,
//! bound to a chosen loopback source address.
//!
//! Every socket is bound to a source address (`127.0.0.x`) before it
//! connects, so that one target port can take more connections than one
//! source address has ephemeral ports (about 28,000 here). Sockets close
//! with a zero linger (a reset, no `TIME_WAIT`), so a run leaves no ports
//! behind for the next one.

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use anyhow::{Context, bail};
use fastwebsockets::{FragmentCollector, Frame, OpCode, Payload, WebSocket};
use http_body_util::{BodyExt, Empty, Full, Limited};
use hyper::body::Bytes;
use hyper::client::conn::http1;
use hyper::header::{AUTHORIZATION, CONNECTION, CONTENT_TYPE, HOST, RETRY_AFTER, UPGRADE};
use hyper::upgrade::Upgraded;
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{mpsc, oneshot};

/// Connecting (SYN to established) gives up after this long.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// One HTTP request (or the websocket handshake) gives up after this long.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// Response bodies above this are an error (the gateway's are a few KiB).
pub const RESPONSE_BYTES_MAX: usize = 1 << 20;
/// Websocket messages above this are an error (the gateway's frames are
/// at most 4 KiB; a section's seats could be more, so leave room).
pub const WS_MESSAGE_BYTES_MAX: usize = 256 << 10;

/// The gateway to drive: `http://<loopback address>:<port>` only.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub addr: SocketAddrV4,
}

impl Target {
    /// Parse `http://127.0.0.1:8080` (or `localhost`). Anything that is
    /// not a loopback address is refused: the driver floods what it aims
    /// at, so it only aims at this machine.
    pub fn parse(url: &str) -> anyhow::Result<Target> {
        let Some(rest) = url.strip_prefix("http://") else {
            bail!("target {url:?}: only http:// URLs are supported");
        };
        let authority = rest.trim_end_matches('/');
        if authority.contains('/') {
            bail!("target {url:?}: give the gateway's root URL, without a path");
        }
        let (host, port) = match authority.rsplit_once(':') {
            Some((host, port)) => (
                host,
                port.parse::<u16>()
                    .with_context(|| format!("target {url:?}: bad port"))?,
            ),
            None => (authority, 80),
        };
        let ip = if host.eq_ignore_ascii_case("localhost") {
            Ipv4Addr::LOCALHOST
        } else {
            host.parse::<Ipv4Addr>()
                .with_context(|| format!("target {url:?}: the host must be an IPv4 address"))?
        };
        if !ip.is_loopback() {
            bail!("target {url:?}: load mode only drives loopback addresses (127.0.0.0/8)");
        }
        Ok(Target {
            addr: SocketAddrV4::new(ip, port),
        })
    }

    /// The `Host` header.
    #[must_use]
    pub fn authority(&self) -> String {
        self.addr.to_string()
    }
}

/// Parse a list of source addresses, each in 127.0.0.0/8.
pub fn parse_sources(list: &str) -> anyhow::Result<Vec<Ipv4Addr>> {
    let mut sources = Vec::new();
    for part in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let ip: Ipv4Addr = part
            .parse()
            .with_context(|| format!("source address {part:?}: not an IPv4 address"))?;
        if !ip.is_loopback() {
            bail!("source address {ip}: must be a loopback address (127.0.0.0/8)");
        }
        if sources.contains(&ip) {
            bail!("source address {ip}: listed twice");
        }
        sources.push(ip);
    }
    if sources.is_empty() {
        bail!("--sources: no address given");
    }
    Ok(sources)
}

/// A TCP connection to `target` from `source` (any port), with no delay
/// and a zero linger.
pub async fn connect(target: &Target, source: Ipv4Addr) -> anyhow::Result<TcpStream> {
    let socket = TcpSocket::new_v4().context("socket")?;
    // Lets a source port be reused while an old connection from it is
    // still in TIME_WAIT toward some other destination.
    socket.set_reuseaddr(true).context("SO_REUSEADDR")?;
    socket.set_nodelay(true).context("TCP_NODELAY")?;
    socket.set_zero_linger().context("SO_LINGER")?;
    socket
        .bind(SocketAddr::V4(SocketAddrV4::new(source, 0)))
        .with_context(|| format!("bind {source}"))?;
    match tokio::time::timeout(CONNECT_TIMEOUT, socket.connect(SocketAddr::V4(target.addr))).await {
        Ok(stream) => stream.with_context(|| format!("connect {} from {source}", target.addr)),
        Err(_) => bail!("connect {} from {source}: timed out", target.addr),
    }
}

/// An HTTP answer: status, `Retry-After` (seconds) and body.
#[derive(Clone, Debug)]
pub struct HttpAnswer {
    pub status: u16,
    pub retry_after_s: Option<u64>,
    pub body: Bytes,
}

/// One keep-alive HTTP/1.1 connection; requests go one at a time.
#[derive(Debug)]
pub struct HttpConn {
    sender: http1::SendRequest<Full<Bytes>>,
    authority: String,
}

impl HttpConn {
    pub async fn open(target: &Target, source: Ipv4Addr) -> anyhow::Result<HttpConn> {
        let stream = connect(target, source).await?;
        let (sender, connection) = http1::handshake(TokioIo::new(stream))
            .await
            .context("HTTP handshake")?;
        // Ends when the sender is dropped or the server closes.
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(HttpConn {
            sender,
            authority: target.authority(),
        })
    }

    /// Whether the connection can still carry a request.
    #[must_use]
    pub fn is_open(&self) -> bool {
        !self.sender.is_closed()
    }

    /// Send one request with an optional JSON body and bearer token.
    pub async fn send(
        &mut self,
        method: Method,
        path: &str,
        bearer: Option<&str>,
        json: Option<Vec<u8>>,
    ) -> anyhow::Result<HttpAnswer> {
        self.send_with(method, path, bearer, json, None).await
    }

    /// [`HttpConn::send`], with one more header (a join's proof-of-work
    /// stamp: `x-onsale-stamp`).
    pub async fn send_with(
        &mut self,
        method: Method,
        path: &str,
        bearer: Option<&str>,
        json: Option<Vec<u8>>,
        header: Option<(&str, &str)>,
    ) -> anyhow::Result<HttpAnswer> {
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(HOST, &self.authority);
        if let Some(token) = bearer {
            request = request.header(AUTHORIZATION, format!("Bearer {token}"));
        }
        if let Some((name, value)) = header {
            request = request.header(name, value);
        }
        if json.is_some() {
            request = request.header(CONTENT_TYPE, "application/json");
        }
        let request = request
            .body(Full::new(Bytes::from(json.unwrap_or_default())))
            .context("build request")?;
        let exchange = async {
            self.sender.ready().await.context("connection closed")?;
            let response = self.sender.send_request(request).await.context("request")?;
            let status = response.status().as_u16();
            let retry_after_s = response
                .headers()
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse().ok());
            let body = Limited::new(response.into_body(), RESPONSE_BYTES_MAX)
                .collect()
                .await
                .map_err(|e| anyhow::anyhow!("response body: {e}"))?
                .to_bytes();
            anyhow::Ok(HttpAnswer {
                status,
                retry_after_s,
                body,
            })
        };
        match tokio::time::timeout(REQUEST_TIMEOUT, exchange).await {
            Ok(answer) => answer,
            Err(_) => bail!("{path}: no answer within {REQUEST_TIMEOUT:?}"),
        }
    }
}

/// Runs hyper's background connection tasks on tokio.
#[derive(Clone, Copy, Debug)]
struct SpawnExecutor;

impl<F> hyper::rt::Executor<F> for SpawnExecutor
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, future: F) {
        tokio::spawn(future);
    }
}

/// A fan's websocket (`GET /ws?session=`).
pub struct FanSocket {
    ws: FragmentCollector<TokioIo<Upgraded>>,
}

impl std::fmt::Debug for FanSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FanSocket")
    }
}

/// What the websocket gave.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WsRead {
    Text(String),
    /// The server closed the connection (close frame or end of stream).
    Closed,
    /// The connection broke (reset, cut off mid-frame): the gateway died,
    /// say. Like `Closed`, the fan may connect again.
    Broken(String),
}

impl FanSocket {
    pub async fn open(target: &Target, source: Ipv4Addr, session: &str) -> anyhow::Result<Self> {
        let stream = connect(target, source).await?;
        let request = Request::builder()
            .method(Method::GET)
            .uri(format!("/ws?session={}", percent_encode(session)))
            .header(HOST, target.authority())
            .header(UPGRADE, "websocket")
            .header(CONNECTION, "upgrade")
            .header(
                "Sec-WebSocket-Key",
                fastwebsockets::handshake::generate_key(),
            )
            .header("Sec-WebSocket-Version", "13")
            .body(Empty::<Bytes>::new())
            .context("build websocket request")?;
        let handshake = fastwebsockets::handshake::client(&SpawnExecutor, request, stream);
        let (mut ws, _response): (WebSocket<TokioIo<Upgraded>>, _) =
            match tokio::time::timeout(REQUEST_TIMEOUT, handshake).await {
                Ok(result) => result.context("websocket handshake")?,
                Err(_) => bail!("websocket handshake: no answer within {REQUEST_TIMEOUT:?}"),
            };
        ws.set_max_message_size(WS_MESSAGE_BYTES_MAX);
        ws.set_auto_close(true);
        ws.set_auto_pong(true);
        Ok(FanSocket {
            ws: FragmentCollector::new(ws),
        })
    }

    pub async fn send_text(&mut self, text: String) -> anyhow::Result<()> {
        let write = self
            .ws
            .write_frame(Frame::text(Payload::Owned(text.into_bytes())));
        match tokio::time::timeout(REQUEST_TIMEOUT, write).await {
            Ok(result) => result.context("websocket write"),
            Err(_) => bail!("websocket write: stuck for {REQUEST_TIMEOUT:?}"),
        }
    }

    /// Hand the socket to a reader task: from here on the fan only
    /// listens. Reading a frame is not cancel-safe (a read abandoned
    /// half-way loses the frame), so the task reads without deadlines and
    /// the fan waits on the channel, which is.
    #[must_use]
    pub fn into_pushes(self) -> Pushes {
        let (tx, rx) = mpsc::channel(PUSHES_QUEUED_MAX);
        let (close_tx, close_rx) = oneshot::channel();
        let task = tokio::spawn(read_pushes(self.ws, tx, close_rx));
        Pushes {
            rx,
            close: Some(close_tx),
            task,
        }
    }
}

/// Text messages read but not yet taken by the fan; when full, the reader
/// stops reading (TCP pushes back on the gateway).
pub const PUSHES_QUEUED_MAX: usize = 64;

async fn read_pushes(
    mut ws: FragmentCollector<TokioIo<Upgraded>>,
    tx: mpsc::Sender<anyhow::Result<WsRead>>,
    mut close: oneshot::Receiver<()>,
) {
    loop {
        let read = tokio::select! {
            _ = &mut close => {
                // Best effort: the frame being read (if any) is lost, which
                // no longer matters.
                let _ = tokio::time::timeout(
                    Duration::from_secs(1),
                    ws.write_frame(Frame::close(1000, b"")),
                )
                .await;
                return;
            }
            frame = ws.read_frame() => frame,
        };
        let item = match read {
            Ok(frame) => match frame.opcode {
                OpCode::Text => String::from_utf8(frame.payload.to_vec())
                    .map(WsRead::Text)
                    .context("websocket text frame is not UTF-8"),
                OpCode::Close => Ok(WsRead::Closed),
                OpCode::Binary => Err(anyhow::anyhow!("the gateway sent a binary frame")),
                OpCode::Ping | OpCode::Pong | OpCode::Continuation => continue,
            },
            Err(fastwebsockets::WebSocketError::ConnectionClosed) => Ok(WsRead::Closed),
            Err(
                e @ (fastwebsockets::WebSocketError::IoError(_)
                | fastwebsockets::WebSocketError::UnexpectedEOF),
            ) => Ok(WsRead::Broken(format!("websocket read: {e}"))),
            // A frame the protocol forbids: the gateway's fault, not the
            // network's.
            Err(e) => Err(anyhow::Error::new(e).context("websocket read")),
        };
        let last = !matches!(item, Ok(WsRead::Text(_)));
        if tx.send(item).await.is_err() || last {
            return;
        }
    }
}

/// The messages a fan's websocket receives, in order.
#[derive(Debug)]
pub struct Pushes {
    rx: mpsc::Receiver<anyhow::Result<WsRead>>,
    close: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Pushes {
    /// The next message; cancel-safe, so a deadline may be put around it.
    /// After `Closed`, `Broken` or an error, every call answers `Closed`.
    pub async fn next(&mut self) -> anyhow::Result<WsRead> {
        self.rx.recv().await.unwrap_or(Ok(WsRead::Closed))
    }

    /// Close the connection (a close frame, best effort) and wait for the
    /// reader to end, at most a second.
    pub async fn close(mut self) {
        if let Some(close) = self.close.take() {
            let _ = close.send(());
        }
        let abort = self.task.abort_handle();
        if tokio::time::timeout(Duration::from_secs(2), &mut self.task)
            .await
            .is_err()
        {
            abort.abort();
        }
    }
}

/// Percent-encode everything but RFC 3986 unreserved characters.
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_loopback_http_only() {
        assert_eq!(
            Target::parse("http://127.0.0.1:8080/").unwrap().addr,
            "127.0.0.1:8080".parse().unwrap()
        );
        assert_eq!(
            Target::parse("http://localhost:9").unwrap().addr,
            "127.0.0.1:9".parse().unwrap()
        );
        assert!(Target::parse("https://127.0.0.1:8080").is_err());
        assert!(Target::parse("http://10.0.0.1:8080").is_err());
        assert!(Target::parse("http://127.0.0.1:8080/api").is_err());
        assert!(Target::parse("http://example.com").is_err());
    }

    #[test]
    fn sources_are_distinct_loopback_addresses() {
        assert_eq!(
            parse_sources("127.0.0.2, 127.0.0.3").unwrap(),
            vec![Ipv4Addr::new(127, 0, 0, 2), Ipv4Addr::new(127, 0, 0, 3)]
        );
        assert!(parse_sources("127.0.0.2,127.0.0.2").is_err());
        assert!(parse_sources("192.168.1.1").is_err());
        assert!(parse_sources("").is_err());
    }

    #[test]
    fn sessions_are_escaped_in_the_query() {
        assert_eq!(percent_encode("s0a1b"), "s0a1b");
        assert_eq!(percent_encode("a+b/c="), "a%2Bb%2Fc%3D");
    }
}
