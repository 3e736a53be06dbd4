//! The node RPC over TCP (framing in `onsale_schema::rpc`): the server a
//! node runs, and the client that test drivers and tools use.
//!
//! Per connection: the node sends a challenge and the client's first
//! frame must prove the cluster secret (`onsale_schema::rpc`); then one
//! reader task decodes frames and starts one task per
//! request (at most `INFLIGHT_PER_CONNECTION` at once, so a client can
//! pipeline); one writer task sends responses and subscribed pushes in the
//! order they are ready. A frame that is too large or does not decode gets
//! an `Error` frame and the connection is closed; nothing else is affected.
//!
//! Bounds (`schema::limits`): at most `RPC_CONNECTIONS_MAX` connections
//! (past it, new ones are closed at once); the hello within
//! `RPC_HELLO_TIMEOUT_MS` and `RPC_HELLO_BYTES_MAX`; a whole frame within
//! `RPC_FRAME_READ_TIMEOUT_MS` of its first byte; a connection idle for
//! `RPC_IDLE_TIMEOUT_MS` with nothing in flight and no subscription is
//! closed.
//!
//! A request for an event another node owns is answered like any other,
//! with the node's reply: `Reply::NotOwner` naming the owner and its lease
//! epoch (where a client, or later the mesh, should go instead).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use onsale_schema::message::{Command, Push, Reply};
use onsale_schema::rpc::{self, ClientFrame, FRAME_HEADER_BYTES, NONCE_BYTES, ServerFrame};
use onsale_schema::spec::EventSpec;
use onsale_schema::{ErrorCode, EventId, limits};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufWriter};
use tokio::net::tcp::OwnedReadHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Mutex, Semaphore, mpsc, oneshot};

use crate::node::Node;

/// Requests one connection may have in flight.
pub const INFLIGHT_PER_CONNECTION: usize = 1_024;
/// Frames queued for one connection's writer.
pub const OUTBOX_FRAMES: usize = 4_096;
/// Event subscriptions one connection may hold.
pub const SUBSCRIPTIONS_PER_CONNECTION: usize = 64;

/// Serve the node RPC on `listener` until the process ends. Clients must
/// prove they hold `secret` (the operators' token) first; at most
/// `RPC_CONNECTIONS_MAX` connections are open at once (past it, new ones
/// are closed at once).
pub async fn serve(listener: TcpListener, node: Node, secret: Arc<[u8]>) {
    let open = Arc::new(AtomicUsize::new(0));
    let accepted = AtomicU64::new(0);
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                if open.load(Ordering::Relaxed) >= limits::RPC_CONNECTIONS_MAX {
                    tracing::debug!(%peer, "rpc connection refused: at the connection bound");
                    drop(stream);
                    continue;
                }
                let guard = OpenGuard::new(&open);
                let nonce = nonce(&secret, accepted.fetch_add(1, Ordering::Relaxed));
                let (node, secret) = (node.clone(), Arc::clone(&secret));
                tokio::spawn(async move {
                    if let Err(e) = connection(stream, node, &secret, nonce).await {
                        tracing::debug!(%peer, error = %e, "rpc connection ended");
                    }
                    drop(guard);
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}

/// A fresh challenge nonce: the connection's number, the wall clock and
/// the process id, under the secret (see `rpc::challenge_nonce`).
fn nonce(secret: &[u8], accepted: u64) -> [u8; NONCE_BYTES] {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let mut unique = Vec::with_capacity(28);
    unique.extend_from_slice(&accepted.to_le_bytes());
    unique.extend_from_slice(&nanos.to_le_bytes());
    unique.extend_from_slice(&std::process::id().to_le_bytes());
    rpc::challenge_nonce(secret, &unique)
}

/// Counts an RPC connection open while it lives.
struct OpenGuard(Arc<AtomicUsize>);

impl OpenGuard {
    fn new(open: &Arc<AtomicUsize>) -> OpenGuard {
        open.fetch_add(1, Ordering::Relaxed);
        OpenGuard(Arc::clone(open))
    }
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

type Refusal = (ErrorCode, String);

async fn connection(
    stream: TcpStream,
    node: Node,
    secret: &[u8],
    nonce: [u8; NONCE_BYTES],
) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let (mut reader, writer) = stream.into_split();
    let (out, mut outbox) = mpsc::channel::<ServerFrame>(OUTBOX_FRAMES);
    let writer_task = tokio::spawn(async move {
        let mut writer = BufWriter::new(writer);
        while let Some(frame) = outbox.recv().await {
            let closing = matches!(frame, ServerFrame::Error { .. });
            let bytes = match rpc::encode_frame(&frame) {
                Ok(bytes) => bytes,
                // Too large to send (an audit of a huge event, say): the
                // caller still gets an answer.
                Err(e) => match frame {
                    ServerFrame::Response { id, .. } => {
                        let reply = Reply::error(ErrorCode::PayloadTooLarge, e.to_string());
                        match rpc::encode_frame(&ServerFrame::Response { id, reply }) {
                            Ok(bytes) => bytes,
                            Err(_) => continue,
                        }
                    }
                    _ => continue,
                },
            };
            writer.write_all(&bytes).await?;
            if outbox.is_empty() || closing {
                writer.flush().await?;
            }
            if closing {
                break;
            }
        }
        writer.shutdown().await
    });
    let inflight = Arc::new(Semaphore::new(INFLIGHT_PER_CONNECTION));
    let mut subscriptions = Vec::new();
    let _ = out.send(ServerFrame::Challenge { nonce }).await;
    let result = match hello(&mut reader, secret, &nonce).await {
        Ok(()) => read_frames(&mut reader, &node, &out, &inflight, &mut subscriptions).await,
        Err(refusal) => {
            tracing::debug!(why = refusal.1, "rpc hello refused");
            Err(refusal)
        }
    };
    if let Err((code, message)) = result {
        let _ = out.send(ServerFrame::Error { code, message }).await;
    }
    // The peer is gone (or was cut off): its subscriptions end with it, so
    // the connection's tasks and socket do not outlive it.
    for subscription in subscriptions {
        subscription.abort();
    }
    drop(out);
    let _ = writer_task.await;
    Ok(())
}

/// The connection's first frame, which must prove the secret, within
/// `RPC_HELLO_TIMEOUT_MS` and `RPC_HELLO_BYTES_MAX`.
async fn hello(
    reader: &mut OwnedReadHalf,
    secret: &[u8],
    nonce: &[u8; NONCE_BYTES],
) -> Result<(), Refusal> {
    let refuse = |why: &str| (ErrorCode::Unauthorized, format!("rpc refused: {why}"));
    let first = tokio::time::timeout(
        Duration::from_millis(limits::RPC_HELLO_TIMEOUT_MS),
        read_frame(reader, limits::RPC_HELLO_BYTES_MAX),
    )
    .await
    .map_err(|_| refuse("no hello in time"))?;
    let body = match first {
        Ok(Some(body)) => body,
        Ok(None) => return Err(refuse("closed before the hello")),
        Err(refusal) => return Err(refusal),
    };
    match rpc::decode_frame::<ClientFrame>(&body) {
        Ok(ClientFrame::Hello { proof }) if rpc::hello_holds(secret, nonce, &proof) => Ok(()),
        Ok(ClientFrame::Hello { .. }) => Err(refuse("the proof does not hold")),
        _ => Err(refuse("the first frame must be a hello")),
    }
}

/// One frame's body, at most `max` bytes: `None` if the peer closed
/// between frames. The whole frame must arrive within
/// `RPC_FRAME_READ_TIMEOUT_MS` of this call (callers first wait for its
/// first byte); the buffer grows with what arrives, not with what the
/// length claims.
async fn read_frame(reader: &mut OwnedReadHalf, max: usize) -> Result<Option<Vec<u8>>, Refusal> {
    let within = Duration::from_millis(limits::RPC_FRAME_READ_TIMEOUT_MS);
    match tokio::time::timeout(within, read_frame_now(reader, max)).await {
        Ok(read) => read,
        Err(_) => Err((
            ErrorCode::RequestTimeout,
            "the frame took too long".to_owned(),
        )),
    }
}

async fn read_frame_now(
    reader: &mut OwnedReadHalf,
    max: usize,
) -> Result<Option<Vec<u8>>, Refusal> {
    let mut header = [0u8; FRAME_HEADER_BYTES];
    if reader.read_exact(&mut header).await.is_err() {
        return Ok(None);
    }
    let len = rpc::frame_len(header).map_err(|code| (code, "frame too large".to_owned()))?;
    if len > max {
        return Err((ErrorCode::PayloadTooLarge, "frame too large".to_owned()));
    }
    let mut body = Vec::with_capacity(len.min(64 * 1024));
    let mut limited = (&mut *reader).take(len as u64);
    match limited.read_to_end(&mut body).await {
        Ok(n) if n == len => Ok(Some(body)),
        _ => Err((ErrorCode::Undecodable, "truncated frame".to_owned())),
    }
}

async fn read_frames(
    reader: &mut OwnedReadHalf,
    node: &Node,
    out: &mpsc::Sender<ServerFrame>,
    inflight: &Arc<Semaphore>,
    subscriptions: &mut Vec<tokio::task::JoinHandle<()>>,
) -> Result<(), Refusal> {
    let idle = Duration::from_millis(limits::RPC_IDLE_TIMEOUT_MS);
    loop {
        // Wait for a frame's first byte without taking it (`peek` is
        // cancel-safe, so the idle bound never cuts a frame in half).
        match tokio::time::timeout(idle, reader.peek(&mut [0u8; 1])).await {
            Ok(Ok(0) | Err(_)) => return Ok(()), // the peer closed
            Ok(Ok(_)) => {}
            // Idle: kept while it waits for answers or pushes.
            Err(_) if !subscriptions.is_empty() => continue,
            Err(_) if inflight.available_permits() < INFLIGHT_PER_CONNECTION => continue,
            Err(_) => return Err((ErrorCode::RequestTimeout, "idle".to_owned())),
        }
        let Some(body) = read_frame(reader, limits::RPC_FRAME_BYTES_MAX).await? else {
            return Ok(()); // the peer closed
        };
        let frame: ClientFrame = rpc::decode_frame(&body)
            .map_err(|e| (ErrorCode::Undecodable, format!("undecodable frame: {e}")))?;
        if let ClientFrame::Subscribe { event } = frame {
            if subscriptions.len() >= SUBSCRIPTIONS_PER_CONNECTION {
                return Err((ErrorCode::BadRequest, "too many subscriptions".to_owned()));
            }
            let (node, out) = (node.clone(), out.clone());
            subscriptions.push(tokio::spawn(
                async move { subscribe(event, &node, &out).await },
            ));
            continue;
        }
        let permit = Arc::clone(inflight)
            .acquire_owned()
            .await
            .map_err(|_| (ErrorCode::Internal, "closing".to_owned()))?;
        let (node, out) = (node.clone(), out.clone());
        tokio::spawn(async move {
            handle(frame, &node, &out).await;
            drop(permit);
        });
    }
}

async fn handle(frame: ClientFrame, node: &Node, out: &mpsc::Sender<ServerFrame>) {
    match frame {
        ClientFrame::Request { id, event, command } => {
            let reply = node.call(event, command).await;
            let _ = out.send(ServerFrame::Response { id, reply }).await;
        }
        ClientFrame::CreateEvent { id, spec } => {
            let reply = node.create_event(*spec).await;
            let _ = out.send(ServerFrame::Response { id, reply }).await;
        }
        ClientFrame::Subscribe { event } => subscribe(event, node, out).await,
        // Only the first frame may be a hello; a later one is ignored.
        ClientFrame::Hello { .. } => {}
    }
}

/// Forward `event`'s pushes to the connection until it closes (the task
/// is aborted when the peer goes away).
async fn subscribe(event: EventId, node: &Node, out: &mpsc::Sender<ServerFrame>) {
    let mut pushes = node.subscribe();
    loop {
        match pushes.recv().await {
            Ok((e, push)) if e == event => {
                if out.send(ServerFrame::Push { event, push }).await.is_err() {
                    return;
                }
            }
            Ok(_) => {}
            Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                tracing::warn!(%event, lost = n, "subscriber lagged; pushes dropped");
            }
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
        }
    }
}

/// Calls waiting for their response; `None` once the connection is gone.
type Waiting = Arc<std::sync::Mutex<Option<HashMap<u64, oneshot::Sender<Reply>>>>>;

/// A node RPC client: many requests in flight over one connection.
#[derive(Debug)]
pub struct Client {
    writer: Mutex<tokio::net::tcp::OwnedWriteHalf>,
    next_id: AtomicU64,
    waiting: Waiting,
    pushes: Mutex<mpsc::UnboundedReceiver<(EventId, Push)>>,
}

/// Why a client call failed (the node is down, or closed the connection).
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("connection failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("the node closed the connection")]
    Closed,
    #[error("frame could not be encoded: {0}")]
    Encode(String),
}

impl Client {
    /// Connect to the node at `addr` and prove the cluster `secret` (the
    /// operators' token). A wrong secret is refused by the node: the
    /// connection closes and every call fails with `Closed`.
    pub async fn connect(addr: &str, secret: &[u8]) -> Result<Client, ClientError> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let (mut reader, mut writer) = stream.into_split();
        let mut header = [0u8; FRAME_HEADER_BYTES];
        reader.read_exact(&mut header).await?;
        let len = rpc::frame_len(header).map_err(|_| ClientError::Closed)?;
        let mut body = vec![0u8; len];
        reader.read_exact(&mut body).await?;
        let Ok(ServerFrame::Challenge { nonce }) = rpc::decode_frame::<ServerFrame>(&body) else {
            return Err(ClientError::Closed);
        };
        let proof = rpc::hello_proof(secret, &nonce);
        let hello = rpc::encode_frame(&ClientFrame::Hello { proof })
            .map_err(|e| ClientError::Encode(e.to_string()))?;
        writer.write_all(&hello).await?;
        let waiting: Waiting = Arc::new(std::sync::Mutex::new(Some(HashMap::new())));
        let (push_tx, push_rx) = mpsc::unbounded_channel();
        let waiting_reader = Arc::clone(&waiting);
        tokio::spawn(async move {
            let mut header = [0u8; FRAME_HEADER_BYTES];
            while reader.read_exact(&mut header).await.is_ok() {
                let Ok(len) = rpc::frame_len(header) else {
                    break;
                };
                let mut body = vec![0u8; len];
                if reader.read_exact(&mut body).await.is_err() {
                    break;
                }
                match rpc::decode_frame::<ServerFrame>(&body) {
                    Ok(ServerFrame::Response { id, reply }) => {
                        let port = waiting_reader
                            .lock()
                            .expect("not poisoned")
                            .as_mut()
                            .and_then(|w| w.remove(&id));
                        if let Some(port) = port {
                            let _ = port.send(reply);
                        }
                    }
                    Ok(ServerFrame::Push { event, push }) => {
                        let _ = push_tx.send((event, push));
                    }
                    Ok(ServerFrame::Error { code, message }) => {
                        tracing::warn!(%code, message, "node closed the connection");
                        break;
                    }
                    Ok(ServerFrame::Challenge { .. }) => {}
                    Err(_) => break,
                }
            }
            // Fail every waiting call, and every later one: the connection
            // is gone.
            waiting_reader.lock().expect("not poisoned").take();
        });
        Ok(Client {
            writer: Mutex::new(writer),
            next_id: AtomicU64::new(1),
            waiting,
            pushes: Mutex::new(push_rx),
        })
    }

    async fn send(
        &self,
        id: u64,
        frame: &ClientFrame,
    ) -> Result<oneshot::Receiver<Reply>, ClientError> {
        let (tx, rx) = oneshot::channel();
        self.waiting
            .lock()
            .expect("not poisoned")
            .as_mut()
            .ok_or(ClientError::Closed)?
            .insert(id, tx);
        let bytes = rpc::encode_frame(frame).map_err(|e| ClientError::Encode(e.to_string()))?;
        self.writer.lock().await.write_all(&bytes).await?;
        Ok(rx)
    }

    /// Send a command to an event and wait for its reply.
    pub async fn call(&self, event: EventId, command: Command) -> Result<Reply, ClientError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let rx = self
            .send(id, &ClientFrame::Request { id, event, command })
            .await?;
        rx.await.map_err(|_| ClientError::Closed)
    }

    pub async fn create_event(&self, spec: EventSpec) -> Result<Reply, ClientError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let rx = self
            .send(
                id,
                &ClientFrame::CreateEvent {
                    id,
                    spec: Box::new(spec),
                },
            )
            .await?;
        rx.await.map_err(|_| ClientError::Closed)
    }

    /// Ask for `event`'s pushes on this connection; read them with `next_push`.
    pub async fn subscribe(&self, event: EventId) -> Result<(), ClientError> {
        let bytes = rpc::encode_frame(&ClientFrame::Subscribe { event })
            .map_err(|e| ClientError::Encode(e.to_string()))?;
        self.writer.lock().await.write_all(&bytes).await?;
        Ok(())
    }

    pub async fn next_push(&self) -> Option<(EventId, Push)> {
        self.pushes.lock().await.recv().await
    }
}
