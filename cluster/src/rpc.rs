//! The node RPC over TCP (framing in `onsale_schema::rpc`): the server a
//! node runs, and the client that test drivers and tools use.
//!
//! Per connection: one reader task decodes frames and starts one task per
//! request (at most `INFLIGHT_PER_CONNECTION` at once, so a client can
//! pipeline); one writer task sends responses and subscribed pushes in the
//! order they are ready. A frame that is too large or does not decode gets
//! an `Error` frame and the connection is closed; nothing else is affected.
//!
//! A request for an event another node owns is answered like any other,
//! with the node's reply: `Reply::NotOwner` naming the owner and its lease
//! epoch (where a client, or later the mesh, should go instead).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use onsale_schema::message::{Command, Push, Reply};
use onsale_schema::rpc::{self, ClientFrame, FRAME_HEADER_BYTES, ServerFrame};
use onsale_schema::spec::EventSpec;
use onsale_schema::{ErrorCode, EventId};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufWriter};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Mutex, Semaphore, mpsc, oneshot};

use crate::node::Node;

/// Requests one connection may have in flight.
pub const INFLIGHT_PER_CONNECTION: usize = 1_024;
/// Frames queued for one connection's writer.
pub const OUTBOX_FRAMES: usize = 4_096;
/// Event subscriptions one connection may hold.
pub const SUBSCRIPTIONS_PER_CONNECTION: usize = 64;

/// Serve the node RPC on `listener` until the process ends.
pub async fn serve(listener: TcpListener, node: Node) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let node = node.clone();
                tokio::spawn(async move {
                    if let Err(e) = connection(stream, node).await {
                        tracing::debug!(%peer, error = %e, "rpc connection ended");
                    }
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}

async fn connection(stream: TcpStream, node: Node) -> std::io::Result<()> {
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
    let result = read_frames(&mut reader, &node, &out, &inflight, &mut subscriptions).await;
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

async fn read_frames(
    reader: &mut tokio::net::tcp::OwnedReadHalf,
    node: &Node,
    out: &mpsc::Sender<ServerFrame>,
    inflight: &Arc<Semaphore>,
    subscriptions: &mut Vec<tokio::task::JoinHandle<()>>,
) -> Result<(), (ErrorCode, String)> {
    let mut header = [0u8; FRAME_HEADER_BYTES];
    loop {
        if reader.read_exact(&mut header).await.is_err() {
            return Ok(()); // the peer closed
        }
        let len = rpc::frame_len(header).map_err(|code| (code, "frame too large".to_owned()))?;
        let mut body = vec![0u8; len];
        reader
            .read_exact(&mut body)
            .await
            .map_err(|_| (ErrorCode::Undecodable, "truncated frame".to_owned()))?;
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
    pub async fn connect(addr: &str) -> Result<Client, ClientError> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let (mut reader, writer) = stream.into_split();
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
