//! The mesh: every `onsale` process is a ractor_cluster node, and the only
//! transport between processes.
//!
//! **One remote-facing actor per process.** ractor_cluster announces every
//! actor whose message type is a cluster message to every peer, so exactly
//! one is: the [`MeshActor`], whose single message carries a batch of
//! [`wire::Frame`]s. Event and checkout actors stay local. Each process's
//! mesh actor joins the process group `onsale.node.<name>` (how a peer
//! finds it) and, when it serves fans, `onsale.gateways` (who receives
//! pushes).
//!
//! **Calls.** A call to an event another node owns becomes a `Frame::Call`
//! on that peer's *link*: a bounded queue drained by one task that sends
//! whatever has accumulated as one batch (batching across the link under
//! load, no added latency when idle). At most [`INFLIGHT_PER_PEER`] calls
//! per peer are in flight; past it the caller is answered `busy` at once
//! (ractor_cluster has no backpressure of its own). A call is answered by
//! the matching `Frame::Answer`, or `busy` when the session drops or
//! [`ROUTER_CALL_TIMEOUT_MS`] passes.
//!
//! **Pushes** of the events a node owns cross the mesh once per gateway
//! process, in batches; each gateway fans them out locally.
//!
//! **Liveness.** A session that closes (a killed process's socket is
//! closed by its kernel at once) triggers a probe: a TCP connect to the
//! peer's cluster address. *Refused* proves nothing listens there: the
//! process is gone, and the node is reported dead, so the next node in
//! hash order takes its events over without waiting for the leases to
//! expire (the takeover bumps the epoch, fencing the dead owner for good).
//! A connect that succeeds or times out (a stopped process, a partition)
//! proves nothing, and the lease decides. Each peer is pinged every
//! [`PING_EVERY_MS`]; a peer silent for [`SILENT_PINGS_MAX`] pings has its
//! session closed (ractor_cluster's own pings close nothing).
//!
//! **Reconnects.** Nothing reconnects by itself in ractor_cluster: every
//! [`DIAL_EVERY_MS`] the mesh dials each seed and each live node in the
//! store that it has no session with.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant};

use onsale_schema::limits::ROUTER_CALL_TIMEOUT_MS;
use onsale_schema::message::{Push, Reply};
use onsale_schema::{ErrorCode, EventId};
use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef};
use ractor_cluster::{NodeServer, NodeServerMessage, NodeSessionMessage, RactorClusterMessage};
use rustc_hash::FxHashMap;
use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::node::Node;
use crate::store::NodeId;

pub mod placement;
pub mod tls;
pub mod wire;

use wire::{BatchWriter, Frame, Request};

/// How many nodes may forward one call (the first, then one correction
/// from a stale route): a call never loops.
pub const HOPS_MAX: u8 = 2;
/// Calls to one peer in flight at once.
pub const INFLIGHT_PER_PEER: usize = 8_192;
/// Encoded frames queued for one peer.
pub const LINK_QUEUE_FRAMES: usize = 65_536;
/// How often each peer is pinged.
pub const PING_EVERY_MS: u64 = 250;
/// Pings a peer may leave unanswered before its session is closed.
pub const SILENT_PINGS_MAX: u64 = 8;
/// How long the probe of a dropped peer waits for a TCP connect.
pub const PROBE_TIMEOUT_MS: u64 = 300;
/// Pause between the probe's connects.
pub const PROBE_RETRY_MS: u64 = 20;
/// How often missing sessions are dialed.
pub const DIAL_EVERY_MS: u64 = 250;

/// Tries, 10 ms apart, to find a connected peer's mesh actor.
const ACTOR_WAIT_TRIES: u32 = 50;

/// The process group of every process serving fans.
pub const GATEWAYS_GROUP: &str = "onsale.gateways";

/// The process group holding `node`'s mesh actor.
#[must_use]
pub fn node_group(node: &NodeId) -> String {
    format!("onsale.node.{node}")
}

/// How a process joins the mesh.
#[derive(Clone)]
pub struct MeshConfig {
    /// Where this node's cluster port listens; peers dial this address.
    pub listen: SocketAddr,
    /// Cluster addresses (`host:port`) to dial at start and whenever no
    /// session with them is open.
    pub seeds: Vec<String>,
    /// The shared secret; authenticates peers (it does not encrypt).
    pub cookie: String,
    /// Whether this process serves fans (and so receives pushes).
    pub gateway: bool,
    /// Mutual TLS on every session, if given (see [`tls`]).
    pub tls: Option<tls::MeshTls>,
}

impl std::fmt::Debug for MeshConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MeshConfig")
            .field("listen", &self.listen)
            .field("seeds", &self.seeds)
            .field("cookie", &"<secret>")
            .field("gateway", &self.gateway)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

/// Why a call could not cross the mesh.
#[derive(Debug, thiserror::Error)]
pub enum MeshError {
    #[error("no session with node {0}")]
    Unreachable(NodeId),
    #[error("too many calls in flight to node {0}")]
    Busy(NodeId),
    #[error("node {0} did not answer within {ROUTER_CALL_TIMEOUT_MS} ms")]
    Timeout(NodeId),
    #[error("the session with node {0} closed before it answered")]
    Closed(NodeId),
    #[error("the call could not be encoded: {0}")]
    Encode(String),
}

impl From<MeshError> for Reply {
    fn from(error: MeshError) -> Reply {
        let code = match error {
            MeshError::Encode(_) => ErrorCode::Internal,
            _ => ErrorCode::Busy,
        };
        Reply::error(code, error.to_string())
    }
}

/// The one message type that crosses processes.
#[derive(RactorClusterMessage)]
pub enum MeshMsg {
    /// A batch of frames (see [`wire`]); decoded by the receiver, which
    /// drops what does not decode.
    Frames(Vec<u8>),
}

impl std::fmt::Debug for MeshMsg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MeshMsg::Frames(bytes) => write!(f, "Frames({} bytes)", bytes.len()),
        }
    }
}

/// A running mesh (cheap to clone).
#[derive(Clone, Debug)]
pub struct Mesh {
    inner: Arc<Inner>,
}

struct Inner {
    me: NodeId,
    listen: SocketAddr,
    server: ActorRef<NodeServerMessage>,
    peers: RwLock<FxHashMap<NodeId, Peer>>,
    links: Mutex<FxHashMap<NodeId, Link>>,
    pending: Mutex<FxHashMap<u64, Pending>>,
    next_id: AtomicU64,
    started: Instant,
    tls: Option<tls::MeshTls>,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mesh")
            .field("me", &self.me)
            .finish_non_exhaustive()
    }
}

/// A peer with a ready session.
struct Peer {
    /// Its ready sessions: usually one; two while ractor_cluster settles
    /// a simultaneous dial (it then closes one as a duplicate).
    sessions: Vec<ActorRef<NodeSessionMessage>>,
    /// Its cluster address as it announced it (`host:port`).
    addr: String,
    /// Milliseconds since the mesh started when a batch last came from it.
    heard: Arc<AtomicU64>,
}

struct Link {
    frames: mpsc::Sender<Vec<u8>>,
    inflight: Arc<Semaphore>,
}

struct Pending {
    peer: NodeId,
    answer: oneshot::Sender<Reply>,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

/// What the node server tells the mesh about sessions.
enum SessionEvent {
    Ready(ractor_cluster::node::NodeServerSessionInformation),
    Down(ractor_cluster::node::NodeServerSessionInformation),
}

struct Subscription(mpsc::UnboundedSender<SessionEvent>);

impl ractor_cluster::NodeEventSubscription for Subscription {
    fn node_session_opened(&self, _: ractor_cluster::node::NodeServerSessionInformation) {}
    fn node_session_authenticated(&self, _: ractor_cluster::node::NodeServerSessionInformation) {}
    fn node_session_ready(&self, ses: ractor_cluster::node::NodeServerSessionInformation) {
        let _ = self.0.send(SessionEvent::Ready(ses));
    }
    fn node_session_disconnected(&self, ses: ractor_cluster::node::NodeServerSessionInformation) {
        let _ = self.0.send(SessionEvent::Down(ses));
    }
}

/// The node name inside a ractor_cluster peer name (`name@host`).
fn peer_node(ses: &ractor_cluster::node::NodeServerSessionInformation) -> Option<(NodeId, String)> {
    let name = ses.peer_name.as_ref()?;
    let node = name
        .name
        .rsplit_once('@')
        .map_or(name.name.as_str(), |(node, _)| node);
    Some((NodeId(node.to_owned()), name.connection_string.clone()))
}

impl Mesh {
    /// Join the mesh: listen, dial the seeds, and serve `node`'s calls and
    /// pushes. `node` learns of the mesh through [`Node::attach_mesh`].
    pub async fn start(config: MeshConfig, node: Node) -> Result<Mesh, ActorProcessingErr> {
        let me = node.name().clone();
        let server = NodeServer::new(
            config.listen.port(),
            config.cookie.clone(),
            me.0.clone(),
            config.listen.ip().to_string(),
            config
                .tls
                .as_ref()
                .map(|tls| ractor_cluster::IncomingEncryptionMode::Tls(tls.acceptor.clone())),
            Some(ractor_cluster::node::NodeConnectionMode::Transitive),
        )
        .with_listen_addr(config.listen.ip())
        .with_max_inbound_frame_size(
            (onsale_schema::limits::RPC_FRAME_BYTES_MAX as u64) * 2 + wire::BATCH_BYTES as u64,
        );
        let (server, _) = Actor::spawn(None, server, ()).await?;
        let inner = Arc::new(Inner {
            me: me.clone(),
            listen: config.listen,
            server: server.clone(),
            peers: RwLock::default(),
            links: Mutex::default(),
            pending: Mutex::default(),
            next_id: AtomicU64::new(1),
            started: Instant::now(),
            tls: config.tls.clone(),
        });
        let mesh = Mesh { inner };
        let (actor, _) = Actor::spawn(
            None,
            MeshActor,
            MeshArgs {
                mesh: mesh.clone(),
                node: node.clone(),
            },
        )
        .await?;
        ractor::pg::join(node_group(&me), vec![actor.get_cell()]);
        if config.gateway {
            ractor::pg::join(GATEWAYS_GROUP.to_owned(), vec![actor.get_cell()]);
        }
        let (events, sessions) = mpsc::unbounded_channel();
        server.cast(NodeServerMessage::SubscribeToEvents {
            id: "onsale.mesh".into(),
            subscription: Box::new(Subscription(events)),
        })?;
        tokio::spawn(control(mesh.clone(), node.clone(), config.seeds, sessions));
        if node.owns_events() {
            tokio::spawn(relay_pushes(mesh.clone(), node.clone()));
        }
        tracing::info!(node = %me, listen = %config.listen, "mesh listening");
        Ok(mesh)
    }

    /// This process's node name.
    #[must_use]
    pub fn me(&self) -> &NodeId {
        &self.inner.me
    }

    /// Nodes with a ready session now, sorted.
    #[must_use]
    pub fn peers(&self) -> Vec<NodeId> {
        let mut peers: Vec<NodeId> = self
            .inner
            .peers
            .read()
            .expect("not poisoned")
            .keys()
            .cloned()
            .collect();
        peers.sort_unstable();
        peers
    }

    /// Whether a session with `node` is ready.
    #[must_use]
    pub fn is_connected(&self, node: &NodeId) -> bool {
        self.inner
            .peers
            .read()
            .expect("not poisoned")
            .contains_key(node)
    }

    /// Ask `peer` to serve `request`, forwarded `hops` times so far.
    pub async fn call(
        &self,
        peer: &NodeId,
        request: Request,
        hops: u8,
    ) -> Result<Reply, MeshError> {
        if !self.is_connected(peer) {
            return Err(MeshError::Unreachable(peer.clone()));
        }
        let (frames, inflight) = self.link(peer);
        let permit = inflight
            .try_acquire_owned()
            .map_err(|_| MeshError::Busy(peer.clone()))?;
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let bytes = wire::encode(&Frame::Call { id, hops, request })
            .map_err(|e| MeshError::Encode(e.to_string()))?;
        let (answer, answered) = oneshot::channel();
        self.inner.pending.lock().expect("not poisoned").insert(
            id,
            Pending {
                peer: peer.clone(),
                answer,
                _permit: permit,
            },
        );
        if frames.try_send(bytes).is_err() {
            self.inner.pending.lock().expect("not poisoned").remove(&id);
            return Err(MeshError::Busy(peer.clone()));
        }
        let limit = Duration::from_millis(ROUTER_CALL_TIMEOUT_MS);
        match tokio::time::timeout(limit, answered).await {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(_)) => Err(MeshError::Closed(peer.clone())),
            Err(_) => {
                self.inner.pending.lock().expect("not poisoned").remove(&id);
                tracing::warn!(%peer, id, "a mesh call timed out");
                metrics::counter!("onsale_mesh_call_timeouts_total").increment(1);
                Err(MeshError::Timeout(peer.clone()))
            }
        }
    }

    /// Queue a frame for `peer` (dropped if its queue is full or no
    /// session is open at all: answers are then lost to a caller that
    /// times out or hears the session close).
    fn send(&self, peer: &NodeId, frame: &Frame) {
        if !self.is_connected(peer) {
            // A session this side has not seen ready yet (the peer's side
            // may be ready first, and call at once), or one just closed:
            // sent directly if the peer's mesh actor is known, no link.
            if let (Some(actor), Ok(bytes)) = (remote_actor(peer), wire::encode(frame)) {
                let mut batch = BatchWriter::new(&self.inner.me.0);
                batch.push_encoded(&bytes);
                let _ = actor.cast(MeshMsg::Frames(batch.finish()));
            }
            return;
        }
        match wire::encode(frame) {
            Ok(bytes) => {
                let (frames, _) = self.link(peer);
                if frames.try_send(bytes).is_err() {
                    tracing::warn!(%peer, "mesh link queue full: a frame was dropped");
                    metrics::counter!("onsale_mesh_frames_dropped_total").increment(1);
                }
            }
            Err(e) => tracing::error!(%peer, error = %e, "a mesh frame could not be encoded"),
        }
    }

    /// The link to `peer`, started on first use.
    fn link(&self, peer: &NodeId) -> (mpsc::Sender<Vec<u8>>, Arc<Semaphore>) {
        let mut links = self.inner.links.lock().expect("not poisoned");
        let link = links.entry(peer.clone()).or_insert_with(|| {
            let (frames, queue) = mpsc::channel(LINK_QUEUE_FRAMES);
            tokio::spawn(drain_link(self.clone(), peer.clone(), queue));
            Link {
                frames,
                inflight: Arc::new(Semaphore::new(INFLIGHT_PER_PEER)),
            }
        });
        (link.frames.clone(), Arc::clone(&link.inflight))
    }

    fn now_ms(&self) -> u64 {
        self.inner.started.elapsed().as_millis() as u64
    }

    /// A session with `peer` is gone: its link stops, its callers hear it.
    fn forget(&self, peer: &NodeId) {
        self.inner.peers.write().expect("not poisoned").remove(peer);
        self.inner.links.lock().expect("not poisoned").remove(peer);
        let mut pending = self.inner.pending.lock().expect("not poisoned");
        // Dropping a pending answer tells its caller the session closed.
        pending.retain(|_, call| call.peer != *peer);
    }
}

/// `peer`'s mesh actor, found through its process group.
fn remote_actor(peer: &NodeId) -> Option<ActorRef<MeshMsg>> {
    ractor::pg::get_members(&node_group(peer))
        .into_iter()
        .find(|cell| !cell.get_id().is_local())
        .map(ActorRef::from)
}

/// Send whatever is queued for `peer`, batched, until the link is dropped.
async fn drain_link(mesh: Mesh, peer: NodeId, mut queue: mpsc::Receiver<Vec<u8>>) {
    while let Some(first) = queue.recv().await {
        let mut batch = BatchWriter::new(&mesh.inner.me.0);
        batch.push_encoded(&first);
        while !batch.is_full() {
            match queue.try_recv() {
                Ok(frame) => batch.push_encoded(&frame),
                Err(_) => break,
            }
        }
        let frames = batch.frames();
        // A session is ready a moment before the peer's process groups
        // have arrived: wait for its mesh actor briefly before dropping.
        let mut actor = remote_actor(&peer);
        for _ in 0..ACTOR_WAIT_TRIES {
            if actor.is_some() || !mesh.is_connected(&peer) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
            actor = remote_actor(&peer);
        }
        match actor {
            Some(actor) => {
                if let Err(e) = actor.cast(MeshMsg::Frames(batch.finish())) {
                    tracing::debug!(%peer, error = %e, frames, "mesh batch not sent");
                }
            }
            None => tracing::debug!(%peer, frames, "no mesh actor for the peer: batch dropped"),
        }
    }
}

/// Sessions coming and going, pings, and dialing.
async fn control(
    mesh: Mesh,
    node: Node,
    seeds: Vec<String>,
    mut sessions: mpsc::UnboundedReceiver<SessionEvent>,
) {
    let mut tick = tokio::time::interval(Duration::from_millis(PING_EVERY_MS.min(DIAL_EVERY_MS)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut dialing: HashMap<String, Instant> = HashMap::new();
    let mut nonce = 0u64;
    loop {
        tokio::select! {
            event = sessions.recv() => match event {
                Some(SessionEvent::Ready(ses)) => {
                    let Some((peer, addr)) = peer_node(&ses) else { continue };
                    if peer == mesh.inner.me {
                        continue;
                    }
                    tracing::info!(%peer, %addr, "mesh session ready");
                    let now = mesh.now_ms();
                    mesh.inner
                        .peers
                        .write()
                        .expect("not poisoned")
                        .entry(peer.clone())
                        .or_insert_with(|| Peer {
                            sessions: Vec::new(),
                            addr,
                            heard: Arc::new(AtomicU64::new(now)),
                        })
                        .sessions
                        .push(ses.actor.clone());
                    node.peer_alive(peer);
                }
                Some(SessionEvent::Down(ses)) => {
                    let Some((peer, addr)) = peer_node(&ses) else { continue };
                    let gone = {
                        let mut peers = mesh.inner.peers.write().expect("not poisoned");
                        match peers.get_mut(&peer) {
                            Some(known) => {
                                known.sessions.retain(|s| s.get_id() != ses.actor.get_id());
                                known.sessions.is_empty()
                            }
                            None => false,
                        }
                    };
                    if !gone {
                        // A duplicate session closing; the peer is still connected.
                        tracing::debug!(%peer, "a duplicate mesh session closed");
                        continue;
                    }
                    tracing::warn!(%peer, %addr, "mesh session closed");
                    mesh.forget(&peer);
                    let (mesh, node) = (mesh.clone(), node.clone());
                    tokio::spawn(async move {
                        if probe_refused(&addr).await {
                            tracing::warn!(%peer, %addr, "nothing listens at the peer's cluster port: it is dead");
                            metrics::counter!("onsale_mesh_peer_deaths_total").increment(1);
                            node.peer_dead(peer);
                        } else if !mesh.is_connected(&peer) {
                            tracing::info!(%peer, "peer unreachable but not proven dead: its leases decide");
                        }
                    });
                }
                None => return,
            },
            _ = tick.tick() => {
                nonce += 1;
                let now = mesh.now_ms();
                let silent: Vec<(NodeId, Vec<ActorRef<NodeSessionMessage>>)> = {
                    let peers = mesh.inner.peers.read().expect("not poisoned");
                    peers
                        .iter()
                        .filter(|(_, p)| now.saturating_sub(p.heard.load(Ordering::Relaxed)) > PING_EVERY_MS * SILENT_PINGS_MAX)
                        .map(|(n, p)| (n.clone(), p.sessions.clone()))
                        .collect()
                };
                for (peer, sessions) in silent {
                    tracing::warn!(%peer, "peer silent for {SILENT_PINGS_MAX} pings: closing its session");
                    for session in sessions {
                        session.stop(Some("silent peer".into()));
                    }
                    mesh.forget(&peer);
                }
                for peer in mesh.peers() {
                    mesh.send(&peer, &Frame::Ping { nonce });
                }
                dial_missing(&mesh, &node, &seeds, &mut dialing).await;
            }
        }
    }
}

/// Dial every seed and live node in the store with no session.
async fn dial_missing(
    mesh: &Mesh,
    node: &Node,
    seeds: &[String],
    dialing: &mut HashMap<String, Instant>,
) {
    let connected: Vec<String> = mesh
        .inner
        .peers
        .read()
        .expect("not poisoned")
        .values()
        .map(|p| p.addr.clone())
        .collect();
    let own = mesh.inner.listen.to_string();
    let mut targets: Vec<String> = seeds.to_vec();
    targets.extend(node.known_node_addrs());
    targets.sort_unstable();
    targets.dedup();
    let now = Instant::now();
    for addr in targets {
        if addr == own || connected.contains(&addr) {
            continue;
        }
        // One dial per address at a time: a handshake takes a moment.
        if dialing
            .get(&addr)
            .is_some_and(|at| now.duration_since(*at) < Duration::from_millis(DIAL_EVERY_MS * 4))
        {
            continue;
        }
        dialing.insert(addr.clone(), now);
        let server = mesh.inner.server.clone();
        let tls = mesh.inner.tls.clone();
        tokio::spawn(async move {
            let connect = async {
                match tls {
                    Some(tls) => {
                        ractor_cluster::client_connect_enc(
                            &server,
                            addr.as_str(),
                            tls.connector,
                            tls.server_name,
                        )
                        .await
                    }
                    None => ractor_cluster::client_connect(&server, addr.as_str()).await,
                }
            };
            let dial = tokio::time::timeout(Duration::from_millis(PROBE_TIMEOUT_MS * 3), connect);
            match dial.await {
                Ok(Ok(())) => tracing::debug!(%addr, "mesh dial connected"),
                Ok(Err(e)) => tracing::debug!(%addr, error = %e, "mesh dial failed"),
                Err(_) => tracing::debug!(%addr, "mesh dial timed out"),
            }
        });
    }
}

/// Whether TCP connects to `addr` are refused (nothing listens: the
/// process is gone), trying for [`PROBE_TIMEOUT_MS`]: a killed process's
/// sockets close one by one as it exits, so its listener may still accept
/// for a moment after its sessions closed. A connect that keeps
/// succeeding (a stopped process's kernel still accepts) or times out (a
/// partition) proves nothing.
async fn probe_refused(addr: &str) -> bool {
    let deadline = Instant::now() + Duration::from_millis(PROBE_TIMEOUT_MS);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        match tokio::time::timeout(left, tokio::net::TcpStream::connect(addr)).await {
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => return true,
            Ok(_) => tokio::time::sleep(Duration::from_millis(PROBE_RETRY_MS)).await,
            Err(_) => return false,
        }
    }
}

/// Pushes this node's events publish, batched, to every other gateway.
async fn relay_pushes(mesh: Mesh, node: Node) {
    let mut pushes = node.subscribe();
    loop {
        let first = match pushes.recv().await {
            Ok(push) => push,
            Err(tokio::sync::broadcast::error::RecvError::Lagged(missed)) => {
                tracing::warn!(
                    missed,
                    "the push relay fell behind: remote gateways missed pushes"
                );
                metrics::counter!("onsale_mesh_pushes_missed_total").increment(missed);
                continue;
            }
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
        };
        let mut batch = vec![first];
        while batch.len() < 4_096 {
            match pushes.try_recv() {
                Ok(push) => batch.push(push),
                Err(_) => break,
            }
        }
        batch.retain(|(event, _)| node.serves(*event));
        if batch.is_empty() {
            continue;
        }
        let gateways: Vec<ActorCell> = ractor::pg::get_members(&GATEWAYS_GROUP.to_owned())
            .into_iter()
            .filter(|cell| !cell.get_id().is_local())
            .collect();
        if gateways.is_empty() {
            continue;
        }
        let mut writer = BatchWriter::new(&mesh.inner.me.0);
        for chunk in batch.chunks(512) {
            match wire::encode(&Frame::Pushes {
                pushes: chunk.to_vec(),
            }) {
                Ok(bytes) => writer.push_encoded(&bytes),
                Err(e) => tracing::error!(error = %e, "pushes could not be encoded"),
            }
        }
        let bytes = writer.finish();
        for gateway in gateways {
            let gateway: ActorRef<MeshMsg> = gateway.into();
            if let Err(e) = gateway.cast(MeshMsg::Frames(bytes.clone())) {
                tracing::debug!(error = %e, "pushes not sent to a gateway");
            }
        }
        metrics::counter!("onsale_mesh_pushes_relayed_total").increment(batch.len() as u64);
    }
}

/// The process's one remote-facing actor.
#[derive(Debug)]
pub struct MeshActor;

#[derive(Debug)]
pub struct MeshArgs {
    mesh: Mesh,
    node: Node,
}

impl Actor for MeshActor {
    type Msg = MeshMsg;
    type State = MeshArgs;
    type Arguments = MeshArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<MeshMsg>,
        args: MeshArgs,
    ) -> Result<MeshArgs, ActorProcessingErr> {
        Ok(args)
    }

    async fn handle(
        &self,
        _myself: ActorRef<MeshMsg>,
        message: MeshMsg,
        state: &mut MeshArgs,
    ) -> Result<(), ActorProcessingErr> {
        let MeshMsg::Frames(bytes) = message;
        let (sender, frames) = match wire::decode(&bytes) {
            Ok(decoded) => decoded,
            Err(e) => {
                tracing::warn!(error = %e, "a mesh batch does not decode: dropped");
                metrics::counter!("onsale_mesh_bad_batches_total").increment(1);
                return Ok(());
            }
        };
        let sender = NodeId(sender);
        let mesh = &state.mesh;
        if let Some(peer) = mesh.inner.peers.read().expect("not poisoned").get(&sender) {
            peer.heard.store(mesh.now_ms(), Ordering::Relaxed);
        }
        for frame in frames {
            let frame = match frame {
                Ok(frame) => frame,
                Err(e) => {
                    tracing::warn!(%sender, error = %e, "a mesh frame does not decode: dropped");
                    metrics::counter!("onsale_mesh_bad_frames_total").increment(1);
                    continue;
                }
            };
            match frame {
                Frame::Call { id, hops, request } => {
                    let (mesh, node, sender) = (mesh.clone(), state.node.clone(), sender.clone());
                    tokio::spawn(async move {
                        let reply = node.serve(request, hops).await;
                        mesh.send(&sender, &Frame::Answer { id, reply });
                    });
                }
                Frame::Answer { id, reply } => {
                    let pending = mesh.inner.pending.lock().expect("not poisoned").remove(&id);
                    match pending {
                        Some(pending) => {
                            let _ = pending.answer.send(reply);
                        }
                        None => tracing::debug!(%sender, id, "a late mesh answer was dropped"),
                    }
                }
                Frame::Pushes { pushes } => state.node.publish_remote(pushes),
                Frame::Ping { nonce } => mesh.send(&sender, &Frame::Pong { nonce }),
                Frame::Pong { .. } => {}
            }
        }
        Ok(())
    }
}

/// Where the node keeps its mesh, once started.
pub(crate) type MeshSlot = Arc<OnceLock<Mesh>>;

/// Pushes of another node's events, for this process's fans.
pub(crate) type RemotePushes = Vec<(EventId, Push)>;
