//! Fan websockets (fastwebsockets' handshake over axum's HTTP/1.1
//! upgrade, then frames by `ws_frame` on the bare TCP socket).
//!
//! One task per connection. It reads the fan's requests (`watch`, `view`)
//! and writes the frames the hub queues in the connection's [`Outbox`],
//! all that is queued in one write. The socket is split so that a pending
//! read is never cancelled halfway through a frame: reads come from one
//! long-lived stream, writes go to the other half.
//!
//! Bad input: a frame over [`limits::WS_FRAME_BYTES_MAX`] closes the
//! connection with 1009; garbage (not JSON, an unknown op, a binary or
//! fragmented frame) gets an `error` push, and the [`GARBAGE_MAX`]-th
//! closes the connection with 1008. Nothing a fan sends can panic the task.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Query, Request, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use fastwebsockets::{OpCode, WebSocket};
use futures::StreamExt;
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use onsale_actors::clock::wall_now;
use onsale_schema::api::{WsPush, WsRequest};
use onsale_schema::message::{Command, FanStatus, JoinRefused, Reply};
use onsale_schema::{ErrorCode, EventId, FanId, SaleState, limits};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

use crate::Gateway;
use crate::auth;
use crate::hub::{HubMsg, Outbox};
use crate::reply::ApiError;
use crate::ws_frame::{self, ClientFrame, FrameError, read_frame};

/// Bad frames tolerated on one connection before it is closed.
pub const GARBAGE_MAX: u32 = 3;

/// How long a `watch` waits out an event that answers `busy` (a move or
/// a failover takes milliseconds) before answering the fan with the error.
pub const WATCH_BUSY_WAIT: Duration = Duration::from_secs(2);

/// The gateway pings an idle fan this often (keeps NATs open, and finds
/// fans that vanished without closing).
pub const PING_EVERY: Duration = Duration::from_secs(30);

/// Websockets one fan may hold at once (tabs, devices).
pub const FAN_SOCKETS_MAX: u16 = 8;

/// A write to a fan that takes longer than this ends the connection.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// A fan silent this long (not even a pong) is disconnected.
pub const SILENCE_MAX: Duration = Duration::from_secs(75);

/// Largest frame read (and thrown away, never buffered) before it is
/// refused; one over [`limits::WS_FRAME_BYTES_MAX`] but within this is
/// refused after it, so the fan gets a clean close.
pub const READ_BYTES_MAX: usize = limits::MESSAGE_BYTES_MAX;

#[derive(Debug, serde::Deserialize)]
pub struct WsQuery {
    session: Option<String>,
}

/// `GET /ws?session=...`: upgrade to a fan websocket.
pub async fn upgrade(
    State(gw): State<Gateway>,
    Query(query): Query<WsQuery>,
    mut request: Request,
) -> Response {
    let fan = match query.session.as_deref() {
        Some(session) => match auth::session_fan(&gw.key, session, wall_now()) {
            Ok(fan) => fan,
            Err(e) => return e.into_response(),
        },
        None => {
            return ApiError::new(
                ErrorCode::Unauthorized,
                "a session is required: /ws?session=<session>",
            )
            .into_response();
        }
    };
    if !fastwebsockets::upgrade::is_upgrade_request(&request) {
        return ApiError::new(ErrorCode::BadRequest, "this is a websocket endpoint")
            .into_response();
    }
    let sockets = gw
        .fan_sockets
        .lock()
        .expect("not poisoned")
        .get(&fan)
        .copied()
        .unwrap_or(0);
    if sockets >= FAN_SOCKETS_MAX {
        return ApiError::new(
            ErrorCode::RateLimited,
            format!("a fan may hold at most {FAN_SOCKETS_MAX} websockets"),
        )
        .retry_after(5)
        .into_response();
    }
    // The upgrading HTTP connection counts until it hands over.
    let open = gw.open_connections();
    if open > gw.conn_capacity {
        return ApiError::new(
            ErrorCode::Busy,
            format!("this gateway holds its maximum of {open} fan connections"),
        )
        .retry_after(5)
        .into_response();
    }
    let (response, upgraded) = match fastwebsockets::upgrade::upgrade(&mut request) {
        Ok(parts) => parts,
        Err(e) => {
            return ApiError::new(ErrorCode::BadRequest, format!("websocket upgrade: {e}"))
                .into_response();
        }
    };
    tokio::spawn(async move {
        match upgraded.await {
            // Boxed: the task then holds a pointer, not the upgrade's
            // state and the connection's side by side.
            Ok(ws) => Box::pin(serve(ws, fan, gw)).await,
            Err(e) => tracing::debug!(error = %e, "websocket upgrade did not complete"),
        }
    });
    response.map(Body::new)
}

/// Counts the connection open (in all and for its fan) while it lives.
struct OpenGuard(Gateway, FanId);

impl OpenGuard {
    fn new(gw: &Gateway, fan: FanId) -> OpenGuard {
        let open = gw.ws_open.fetch_add(1, Ordering::Relaxed) + 1;
        metrics::gauge!("onsale_ws_connections").set(open as f64);
        *gw.fan_sockets
            .lock()
            .expect("not poisoned")
            .entry(fan)
            .or_default() += 1;
        OpenGuard(gw.clone(), fan)
    }
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        let open = self.0.ws_open.fetch_sub(1, Ordering::Relaxed) - 1;
        metrics::gauge!("onsale_ws_connections").set(open as f64);
        let mut sockets = self.0.fan_sockets.lock().expect("not poisoned");
        if let Some(n) = sockets.get_mut(&self.1) {
            *n -= 1;
            if *n == 0 {
                sockets.remove(&self.1);
            }
        }
    }
}

type Ws = WebSocket<TokioIo<Upgraded>>;
/// A frame as read.
type Read = Result<ClientFrame, FrameError>;
/// The fan's side of the socket: bytes hyper read past the handshake
/// (a client may send its first frame at once), then the socket.
type Reader = tokio::io::Chain<std::io::Cursor<Bytes>, OwnedReadHalf>;

/// Take the upgraded connection back to its TCP socket, split in owned
/// halves: no lock between reader and writer, no boxed I/O in between.
fn into_socket(ws: Ws) -> Option<(Reader, OwnedWriteHalf)> {
    let parts = ws
        .into_inner()
        .into_inner()
        .downcast::<TokioIo<crate::http::ShapedIo<TcpStream>>>()
        .ok()?;
    let (read, write) = parts.io.into_inner().into_inner().into_split();
    // A copy: `read_buf` is a view of hyper's whole read buffer (8 KiB and
    // more), which would otherwise live as long as the connection.
    let early = Bytes::copy_from_slice(&parts.read_buf);
    Some((std::io::Cursor::new(early).chain(read), write))
}

async fn serve(ws: Ws, fan: FanId, gw: Gateway) {
    let Some((read, mut write)) = into_socket(ws) else {
        tracing::error!("a websocket upgrade did not come from a TCP socket");
        return;
    };
    let _guard = OpenGuard::new(&gw, fan);
    // Reads and writes go through `ws_frame`: no standing buffer, and
    // every frame queued goes out in one write.
    // Frames up to READ_BYTES_MAX are read whole and then refused by size,
    // so the fan gets a clean close; bigger ones are cut off at the header.
    let frames = futures::stream::unfold(read, |mut read| async move {
        let frame = read_frame(&mut read, limits::WS_FRAME_BYTES_MAX, READ_BYTES_MAX).await;
        Some((frame, read))
    });
    let mut frames = std::pin::pin!(frames);
    let outbox = Arc::new(Outbox::default());
    let conn = gw.hub.conn_id();
    let mut session = Session {
        gw: gw.clone(),
        fan,
        conn,
        outbox: Arc::clone(&outbox),
        event: None,
        pre_queued: false,
        garbage: 0,
    };
    let mut heard = tokio::time::Instant::now();
    let mut ping = tokio::time::interval_at(heard + PING_EVERY, PING_EVERY);
    let close = loop {
        tokio::select! {
            frame = frames.next() => {
                let Some(frame) = frame else { break None };
                heard = tokio::time::Instant::now();
                // Boxed: frames are rare, and an idle connection should not
                // carry the state of a call to the event inline.
                match Box::pin(session.on_frame(frame)).await {
                    Step::Go => {}
                    Step::Reply(bytes) => {
                        outbox.push(bytes);
                    }
                    Step::Pong(payload) => {
                        outbox.push(ws_frame::frame(OpCode::Pong, &payload));
                    }
                    Step::Close(code, reason) => break Some((code, reason)),
                }
            }
            () = outbox.ready() => {}
            _ = ping.tick() => {
                if heard.elapsed() > SILENCE_MAX {
                    break Some((1001, "silent too long"));
                }
                outbox.push(ws_frame::frame(OpCode::Ping, &[]));
            }
        }
        if outbox.is_closed() {
            break Some((1008, "too slow: reconnect to resynchronise"));
        }
        if session.recheck_due() {
            Box::pin(session.recheck()).await;
        }
        if !timed(flush_outbox(&outbox, &mut write)).await {
            break None;
        }
    };
    if let Some((code, reason)) = close {
        let mut payload = code.to_be_bytes().to_vec();
        payload.extend_from_slice(reason.as_bytes());
        // Whatever is queued, then the close, in one write.
        let mut frames: Vec<Bytes> = outbox.take().into();
        frames.push(ws_frame::frame(OpCode::Close, &payload));
        timed(ws_frame::write_frames(&mut write, &frames)).await;
    }
    outbox.close();
    gw.hub.send(HubMsg::Gone { conn }).await;
}

/// A write that succeeded within [`WRITE_TIMEOUT`]. A fan that stops
/// reading must not pin its connection task (and its hub entry) forever.
/// Most writes finish on their first poll (the socket has room): those
/// never touch the timer wheel, which matters when 19,000 fans are told
/// at once.
async fn timed(write: impl std::future::Future<Output = std::io::Result<()>>) -> bool {
    let mut write = std::pin::pin!(write);
    let first = std::future::poll_fn(|cx| std::task::Poll::Ready(write.as_mut().poll(cx))).await;
    match first {
        std::task::Poll::Ready(result) => result.is_ok(),
        std::task::Poll::Pending => {
            matches!(tokio::time::timeout(WRITE_TIMEOUT, write).await, Ok(Ok(())))
        }
    }
}

/// Write every frame queued, in one write.
async fn flush_outbox(outbox: &Outbox, write: &mut OwnedWriteHalf) -> std::io::Result<()> {
    let frames = outbox.take();
    if frames.is_empty() {
        return Ok(());
    }
    let sent = frames.len() as u64;
    let frames: Vec<Bytes> = frames.into();
    ws_frame::write_frames(write, &frames).await?;
    metrics::counter!("onsale_ws_frames_sent_total").increment(sent);
    Ok(())
}

enum Step {
    Go,
    Reply(Bytes),
    Pong(Vec<u8>),
    Close(u16, &'static str),
}

struct Session {
    gw: Gateway,
    fan: FanId,
    conn: u64,
    outbox: Arc<Outbox>,
    event: Option<EventId>,
    /// The last status announced was "pre-queued": a recheck that finds
    /// the fan waiting (drawn) must announce its place.
    pre_queued: bool,
    garbage: u32,
}

fn encode(push: &WsPush) -> Bytes {
    ws_frame::json_frame(push)
}

impl Session {
    async fn on_frame(&mut self, frame: Read) -> Step {
        let ClientFrame {
            opcode,
            fin,
            payload,
        } = match frame {
            Ok(frame) => frame,
            Err(FrameError::TooLarge { .. }) => return self.too_large(),
            Err(FrameError::Closed(_)) => return Step::Close(1000, ""),
            Err(e @ FrameError::Protocol(_)) => {
                metrics::counter!("onsale_ws_bad_frames_total").increment(1);
                tracing::debug!(error = %e, "a fan sent a malformed websocket frame");
                return Step::Close(1002, "protocol error");
            }
        };
        if payload.len() > limits::WS_FRAME_BYTES_MAX {
            return self.too_large();
        }
        match opcode {
            OpCode::Close => Step::Close(1000, ""),
            OpCode::Ping => Step::Pong(payload),
            OpCode::Pong => Step::Go,
            OpCode::Text if fin => match serde_json::from_slice::<WsRequest>(&payload) {
                Ok(request) => self.on_request(request).await,
                Err(e) => self.garbage(ErrorCode::MalformedJson, format!("not a request: {e}")),
            },
            OpCode::Text | OpCode::Binary | OpCode::Continuation => self.garbage(
                ErrorCode::BadRequest,
                "only unfragmented JSON text frames are accepted".into(),
            ),
        }
    }

    fn too_large(&mut self) -> Step {
        metrics::counter!("onsale_ws_bad_frames_total").increment(1);
        self.outbox.push(encode(&WsPush::Error {
            code: ErrorCode::PayloadTooLarge,
            message: format!("frames are at most {} bytes", limits::WS_FRAME_BYTES_MAX),
        }));
        Step::Close(1009, "frame too large")
    }

    fn garbage(&mut self, code: ErrorCode, message: String) -> Step {
        metrics::counter!("onsale_ws_bad_frames_total").increment(1);
        self.garbage += 1;
        self.outbox.push(encode(&WsPush::Error { code, message }));
        if self.garbage >= GARBAGE_MAX {
            Step::Close(1008, "too many bad frames")
        } else {
            Step::Go
        }
    }

    async fn on_request(&mut self, request: WsRequest) -> Step {
        match request {
            WsRequest::Watch { event, token } => {
                if let Err(e) = self.gw.limits.check_fan(self.fan) {
                    return Step::Reply(encode(&WsPush::Error {
                        code: e.code,
                        message: e.message,
                    }));
                }
                if self.gw.catalog.get(event).await.is_none() {
                    return Step::Reply(encode(&WsPush::Error {
                        code: ErrorCode::UnknownEvent,
                        message: format!("no event {}", event.0),
                    }));
                }
                let command = match token {
                    Some(token) => Command::Resume {
                        fan: self.fan,
                        token,
                    },
                    None => Command::Status { fan: self.fan },
                };
                let reply = self.call_through_busy(event, command).await;
                let status = match reply {
                    Reply::Joined { joined, .. } => Some(joined.status),
                    Reply::Status { status } => status,
                    Reply::JoinRefused { refused } => {
                        return Step::Reply(encode(&match refused {
                            JoinRefused::Full => WsPush::Full { event, full: true },
                            JoinRefused::SoldOut => WsPush::SoldOut { event },
                            JoinRefused::Closed => WsPush::Sale {
                                event,
                                state: SaleState::Closed,
                            },
                            other => WsPush::Error {
                                code: other.code(),
                                message: format!("cannot resume: {other:?}"),
                            },
                        }));
                    }
                    Reply::Error { code, message } => {
                        return Step::Reply(encode(&WsPush::Error { code, message }));
                    }
                    Reply::NotOwner { owner } => {
                        let ApiError { code, message, .. } = ApiError::not_owner(owner);
                        return Step::Reply(encode(&WsPush::Error { code, message }));
                    }
                    other => {
                        tracing::error!(?other, "unexpected reply to a status or resume");
                        return Step::Reply(encode(&WsPush::Error {
                            code: ErrorCode::Internal,
                            message: "unexpected reply".into(),
                        }));
                    }
                };
                let sale = match self.gw.sale_state(event).await {
                    Ok(sale) => sale,
                    Err(e) => {
                        return Step::Reply(encode(&WsPush::Error {
                            code: e.code,
                            message: e.message,
                        }));
                    }
                };
                self.event = Some(event);
                self.announce(event, status, sale).await;
                Step::Go
            }
            WsRequest::View { section } => {
                if self.event.is_none() {
                    return self.garbage(ErrorCode::BadRequest, "send watch before view".into());
                }
                self.gw
                    .hub
                    .send(HubMsg::View {
                        conn: self.conn,
                        section,
                    })
                    .await;
                Step::Go
            }
        }
    }

    /// A watch's `resume` or `status`, asked again while the event answers
    /// `busy` (it is moving, or failing over to another node), for up to
    /// [`WATCH_BUSY_WAIT`]: the fan then hears where it stands rather than
    /// an error it would have to retry. Both commands are idempotent.
    async fn call_through_busy(&self, event: EventId, command: Command) -> Reply {
        let deadline = tokio::time::Instant::now() + WATCH_BUSY_WAIT;
        let mut pause = Duration::from_millis(25);
        loop {
            let reply = self.gw.node.call(event, command.clone()).await;
            let busy = matches!(
                reply,
                Reply::Error {
                    code: ErrorCode::Busy,
                    ..
                }
            );
            if !busy || tokio::time::Instant::now() + pause > deadline {
                return reply;
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(400));
        }
    }

    fn recheck_due(&self) -> bool {
        self.outbox.take_recheck()
    }

    /// The hub saw this fan waiting at or below the admission frontier:
    /// ask the event where it stands now, and tell the fan and the hub.
    async fn recheck(&mut self) {
        let Some(event) = self.event else { return };
        let reply = self
            .gw
            .node
            .call(event, Command::Status { fan: self.fan })
            .await;
        let Reply::Status { status } = reply else {
            return;
        };
        // Still waiting below the frontier: the admission push will come.
        // A fan last heard of in the pre-queue was drawn meanwhile: the hub
        // must learn its place (a draw it did not see, or raced).
        if matches!(status, Some(FanStatus::Waiting { .. })) && !self.pre_queued {
            return;
        }
        let sale = self.gw.sale_state(event).await.unwrap_or(SaleState::OnSale);
        self.announce(event, status, sale).await;
    }

    /// Tell the fan where it stands, and the hub which fan this
    /// connection follows (and whether it waits, and where).
    async fn announce(&mut self, event: EventId, status: Option<FanStatus>, sale: SaleState) {
        self.pre_queued = matches!(status, Some(FanStatus::PreQueued { .. }));
        self.outbox.push(encode(&WsPush::Watching {
            event,
            status: status.clone(),
            sale,
        }));
        self.gw
            .hub
            .send(HubMsg::Watch {
                conn: self.conn,
                fan: self.fan,
                event,
                status,
                outbox: Arc::clone(&self.outbox),
            })
            .await;
    }
}
