//! A node: the event actors it owns, the leases that let it own them, and
//! the router actor through which everything reaches them.
//!
//! **Router actor.** The only actor type meant to face other nodes. It
//! serialises what must not race: activating an event (acquire its lease,
//! load snapshot + journal, restore, spawn the event actor), creating
//! events, renewing leases, and noticing an event actor that stopped.
//! Commands themselves do not pass through it: callers look the event's
//! handle up in a shared map and call the event actor directly, so the
//! router is never on the hot path.
//!
//! Every call to the router is bounded by
//! [`ROUTER_CALL_TIMEOUT_MS`](onsale_schema::limits::ROUTER_CALL_TIMEOUT_MS):
//! past it the caller answers `busy` and the router, which carries on,
//! drops the late answer. The router's mailbox is ractor's, unbounded:
//! callers reach it only for an event this node neither serves nor knows
//! another node to own (unknown events included), and none waits longer
//! than the limit.
//!
//! **Leases.** Every owned event's lease is renewed each `ttl / 3`, in
//! batches of [`RENEW_BATCH`] per store transaction (per node, not per
//! event). A
//! renewal that is fenced (another node took the event) or that keeps
//! failing past the lease's expiry stops the event actor: a node never
//! serves an event it cannot prove it owns. Writes are fenced by epoch in
//! the store regardless, so even a node that has not noticed yet cannot
//! write.
//!
//! **Not owned here.** An event another node holds is answered
//! `Reply::NotOwner` naming that node and its lease epoch, from
//! [`owners::Owners`]: the leases of other nodes' events as last seen (by
//! an acquire that found the event held, or by the orphan scan each
//! `ttl / 3`, which sees the owner's renewals before the old expiry),
//! believed until they expire. A request reaches the router and the store
//! only when no live lease of another node is remembered for its event.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use onsale_actors::clock::wall_now;
use onsale_actors::event_actor::{EventActor, EventArgs, EventHandle};
use onsale_actors::provider::Provider;
use onsale_schema::limits::ROUTER_CALL_TIMEOUT_MS;
use onsale_schema::message::{Command, EventOwner, Push, Reply};
use onsale_schema::spec::{EventSpec, SpecError};
use onsale_schema::token::TokenKey;
use onsale_schema::{ErrorCode, EventId, Millis};
use ractor::rpc::CallResult;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use rustc_hash::FxHashMap;
use tokio::sync::broadcast;

use crate::event_log::StoreLog;
use crate::mesh::wire::Request;
use crate::mesh::{HOPS_MAX, Mesh, MeshError, MeshSlot, RemotePushes, placement};
use crate::store::{Acquisition, EventLease, NodeFlags, NodeId, Store, StoreError};

mod error;
mod ops;
pub mod owners;
mod restore;

pub use error::{ActivateError, CreateError, NodeError, RouterError};
pub use owners::Owners;
pub use restore::{RestoreError, restore};

/// How long a node on a mesh may have no session with anyone, while other
/// nodes live, before it gives its events up (see `RouterState::isolated`).
pub const ISOLATION_GRACE_MS: u64 = 500;

/// Leases renewed in one store transaction (a node renews every event it
/// serves each ttl/3, in batches of this many).
pub const RENEW_BATCH: usize = 1_000;

/// How long a move waits for the event to settle, and then to stop.
pub const MOVE_FREEZE_MS: u64 = 5_000;

/// Pushes buffered per subscriber before a slow one starts losing them
/// (it then resynchronises from an overview).
pub const PUSH_BUFFER: usize = 65_536;

/// How a node runs.
#[derive(Clone)]
pub struct NodeConfig {
    pub node: NodeId,
    /// Where this node can be reached (registered with its node lease):
    /// its cluster address when it is on a mesh, which peers dial.
    pub addr: String,
    /// Whether this node owns events (role `node`). A gateway-only node
    /// owns nothing and writes nothing to the store: it routes every
    /// call over the mesh.
    pub owns_events: bool,
    pub store: Arc<dyn Store>,
    pub key: TokenKey,
    pub provider: Provider,
    pub lease_ttl_ms: u64,
    /// Journal records between an event's snapshots.
    pub snapshot_every_records: u64,
    /// The provider is first asked about a silent payment this long after
    /// it was submitted.
    pub payment_query_after_ms: u64,
}

impl std::fmt::Debug for NodeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeConfig")
            .field("node", &self.node)
            .field("addr", &self.addr)
            .field("store", &self.store.backend())
            .finish_non_exhaustive()
    }
}

type Events = Arc<RwLock<FxHashMap<EventId, EventHandle>>>;

/// Shared by the node's callers (who read it) and its router (who learns).
type SharedOwners = Arc<RwLock<Owners>>;

/// The cluster as this node sees it, kept by its router.
#[derive(Debug, Default)]
struct View {
    /// Live nodes that may own events (store heartbeats, minus nodes the
    /// mesh proved dead and nodes operators cordoned), sorted.
    placeable: Vec<NodeId>,
    /// Their registered addresses (cluster addresses on a mesh).
    addrs: Vec<String>,
}

/// A running node.
#[derive(Clone, Debug)]
pub struct Node {
    me: NodeId,
    owns_events: bool,
    router: ActorRef<RouterMsg>,
    events: Events,
    owners: SharedOwners,
    pushes: broadcast::Sender<(EventId, Push)>,
    store: StoreRef,
    mesh: MeshSlot,
    view: Arc<RwLock<View>>,
    /// Fan websockets open on this process (kept by its gateway).
    fans: Arc<std::sync::atomic::AtomicUsize>,
    lease_ttl_ms: u64,
}

/// Where a call for an event goes.
#[derive(Debug)]
enum Target {
    /// This node serves it (or activates it).
    Here,
    Peer(NodeId),
    /// No node can take it now.
    Nobody,
}

/// The store, shared (Debug without the backend's internals).
#[derive(Clone)]
struct StoreRef(Arc<dyn Store>);

impl std::fmt::Debug for StoreRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0.backend())
    }
}

impl Node {
    /// Start a node: register it, then activate every event it may own.
    pub async fn start(config: NodeConfig) -> Result<Node, ActorProcessingErr> {
        let events: Events = Arc::default();
        let owners: SharedOwners = Arc::new(RwLock::new(Owners::new(config.node.clone())));
        let (pushes, _) = broadcast::channel(PUSH_BUFFER);
        let store = StoreRef(Arc::clone(&config.store));
        let view: Arc<RwLock<View>> = Arc::default();
        let mesh = MeshSlot::default();
        let (me, owns_events, lease_ttl_ms) =
            (config.node.clone(), config.owns_events, config.lease_ttl_ms);
        let args = RouterArgs {
            config,
            events: Arc::clone(&events),
            owners: Arc::clone(&owners),
            pushes: pushes.clone(),
            view: Arc::clone(&view),
            mesh: Arc::clone(&mesh),
        };
        let (router, _) = Actor::spawn(None, RouterActor, args).await?;
        Ok(Node {
            me,
            owns_events,
            router,
            events,
            owners,
            pushes,
            store,
            mesh,
            view,
            fans: Arc::default(),
            lease_ttl_ms,
        })
    }

    /// This node's name.
    #[must_use]
    pub fn name(&self) -> &NodeId {
        &self.me
    }

    /// Whether this node owns events (role `node`).
    #[must_use]
    pub fn owns_events(&self) -> bool {
        self.owns_events
    }

    /// From now on, calls for events other nodes own cross `mesh`.
    pub fn attach_mesh(&self, mesh: Mesh) {
        let _ = self.mesh.set(mesh);
    }

    /// The mesh this node is on, if any.
    #[must_use]
    pub fn mesh(&self) -> Option<&Mesh> {
        self.mesh.get()
    }

    /// Send a command to an event wherever it lives. Without a mesh, an
    /// event another node owns is answered `Reply::NotOwner`; on a mesh
    /// the call goes to the owner (or, for an event nobody owns, to the
    /// node placement names) and comes back with its answer.
    pub async fn call(&self, event: EventId, command: Command) -> Reply {
        self.route(event, command, 0).await
    }

    /// A call that `hops` nodes have forwarded so far.
    async fn route(&self, event: EventId, command: Command, hops: u8) -> Reply {
        if let Some(handle) = self.local(event) {
            return handle.call(command).await;
        }
        let Some(mesh) = self.mesh.get() else {
            return match self.handle(event).await {
                Ok(handle) => handle.call(command).await,
                Err(error) => error.into(),
            };
        };
        let target = self.target(mesh, event, hops).await;
        tracing::debug!(%event, hops, target = ?target, "routing a call");
        match target {
            Target::Here => match self.handle(event).await {
                Ok(handle) => handle.call(command).await,
                Err(NodeError::Activate(ActivateError::NotOwner(lease)))
                    if hops < HOPS_MAX && mesh.is_connected(&lease.node) =>
                {
                    self.forward(mesh, &lease.node, event, command, hops).await
                }
                Err(error) => error.into(),
            },
            Target::Peer(peer) => self.forward(mesh, &peer, event, command, hops).await,
            Target::Nobody => Reply::error(
                ErrorCode::Busy,
                format!("no node can serve event {event} now; retry shortly"),
            ),
        }
    }

    /// Where a call for `event` (not served here) should go.
    async fn target(&self, mesh: &Mesh, event: EventId, hops: u8) -> Target {
        let now = wall_now();
        let known = self
            .owners
            .read()
            .expect("not poisoned")
            .owner(event, now)
            .cloned();
        if let Some(lease) = known {
            if hops >= HOPS_MAX {
                // Forwarded enough: this node's answer says who owns it.
                return if self.owns_events {
                    Target::Here
                } else {
                    Target::Nobody
                };
            }
            if mesh.is_connected(&lease.node) {
                return Target::Peer(lease.node);
            }
            // Its owner is out of reach: the event may have moved since.
            self.owners.write().expect("not poisoned").forget(event);
        }
        if !self.owns_events {
            // A gateway reads the lease itself (it never takes one).
            let store = Arc::clone(&self.store.0);
            let lease = tokio::task::spawn_blocking(move || store.event_lease(event)).await;
            if let Ok(Ok(Some(lease))) = lease
                && lease.expires > now
            {
                self.owners
                    .write()
                    .expect("not poisoned")
                    .learn(&lease, now);
                if mesh.is_connected(&lease.node) {
                    return Target::Peer(lease.node);
                }
            }
        }
        // Nobody is known to own it: the placement decides.
        let placeable_here = self.owns_events && self.placeable().contains(&self.me);
        match self.desired_owner(mesh, event) {
            Some(node) if node == self.me => Target::Here,
            // A forwarded call is served where it lands (views may
            // differ), unless this node is cordoned: a node that has not
            // seen the cordon yet must not make it take a new event, so
            // the call goes on to the node this view names, within the
            // hop limit (past it: busy, and the caller retries).
            Some(_) if hops > 0 && placeable_here => Target::Here,
            Some(_) if hops >= HOPS_MAX => Target::Nobody,
            Some(node) => Target::Peer(node),
            None if self.owns_events => Target::Here,
            None => Target::Nobody,
        }
    }

    /// The node placement names for `event` among the placeable nodes this
    /// node can reach: itself (if it owns events) and its mesh peers.
    fn desired_owner(&self, mesh: &Mesh, event: EventId) -> Option<NodeId> {
        let view = self.view.read().expect("not poisoned");
        let reachable = view
            .placeable
            .iter()
            .filter(|n| (**n == self.me && self.owns_events) || mesh.is_connected(n));
        placement::owner_of(event, reachable).cloned()
    }

    /// Ask `peer` to serve the call; a `not_owner` answer naming a third
    /// node is followed once.
    async fn forward(
        &self,
        mesh: &Mesh,
        peer: &NodeId,
        event: EventId,
        command: Command,
        hops: u8,
    ) -> Reply {
        let request = Request::Command {
            event,
            command: command.clone(),
        };
        let reply = match mesh.call(peer, request, hops + 1).await {
            Ok(reply) => reply,
            Err(error) => {
                if matches!(error, MeshError::Unreachable(_) | MeshError::Closed(_)) {
                    self.owners.write().expect("not poisoned").forget(event);
                }
                return error.into();
            }
        };
        if let Reply::NotOwner { owner } = &reply {
            let lease = EventLease {
                event,
                node: NodeId(owner.node.clone()),
                epoch: owner.epoch,
                expires: owner.lease_expires,
            };
            self.owners
                .write()
                .expect("not poisoned")
                .learn(&lease, wall_now());
            if hops + 1 < HOPS_MAX && lease.node != *peer && lease.node != self.me {
                return Box::pin(self.route(event, command, hops + 1)).await;
            }
        }
        reply
    }

    /// A call another node forwarded here.
    pub(crate) async fn serve(&self, request: Request, hops: u8) -> Reply {
        match request {
            Request::Status { events } => Reply::NodeStatus {
                status: self.status(events),
            },
            Request::Command { event, command } => self.route(event, command, hops).await,
            Request::Create { spec } => self.create_here(*spec).await,
            Request::Move { event, to } => match self.move_here(event, NodeId(to)).await {
                Ok(owner) => Reply::NotOwner { owner },
                Err(reply) => reply,
            },
            Request::Adopt { event, over } => {
                let over = EventLease {
                    event,
                    node: NodeId(over.node),
                    epoch: over.epoch,
                    expires: over.lease_expires,
                };
                let adopted = self
                    .ask_router(|reply| RouterMsg::Adopt { event, over, reply })
                    .await;
                match adopted {
                    Ok(Ok(handle)) => handle.call(Command::Overview).await,
                    Ok(Err(error)) => NodeError::from(error).into(),
                    Err(error) => NodeError::from(error).into(),
                }
            }
        }
    }

    /// Move `event` online to node `to`: the owner freezes it (new
    /// commands answer `busy`), lets everything in flight become durable,
    /// stops it and hands its lease to `to`, which takes it with epoch + 1
    /// (fencing this owner) and restores it; if that fails, the owner
    /// takes it back. Answers the new owner, or why not.
    pub async fn move_event(&self, event: EventId, to: NodeId) -> Result<EventOwner, Reply> {
        if self.serves(event) {
            return self.move_here(event, to).await;
        }
        let Some(mesh) = self.mesh.get() else {
            return Err(Reply::error(
                ErrorCode::BadRequest,
                "this node is on no mesh",
            ));
        };
        let store = Arc::clone(&self.store.0);
        let lease = tokio::task::spawn_blocking(move || store.event_lease(event))
            .await
            .map_err(|e| Reply::error(ErrorCode::Internal, e.to_string()))?
            .map_err(|e| Reply::error(ErrorCode::Internal, e.to_string()))?;
        let Some(lease) = lease.filter(|l| l.expires > wall_now()) else {
            return Err(Reply::error(
                ErrorCode::Busy,
                format!("nobody serves event {event} now"),
            ));
        };
        let request = Request::Move {
            event,
            to: to.0.clone(),
        };
        match mesh.call(&lease.node, request, 1).await {
            Ok(Reply::NotOwner { owner }) => Ok(owner),
            Ok(other) => Err(other),
            Err(error) => Err(error.into()),
        }
    }

    async fn move_here(&self, event: EventId, to: NodeId) -> Result<EventOwner, Reply> {
        let limit = Duration::from_millis(ROUTER_CALL_TIMEOUT_MS * 2);
        match self
            .router
            .call(|reply| RouterMsg::Move { event, to, reply }, Some(limit))
            .await
        {
            Ok(CallResult::Success(Ok(lease))) => Ok(owners::owner_of(&lease)),
            Ok(CallResult::Success(Err(error))) => Err(error),
            Ok(_) => Err(Reply::error(
                ErrorCode::Busy,
                "the move did not finish in time",
            )),
            Err(e) => Err(Reply::error(ErrorCode::Internal, e.to_string())),
        }
    }

    /// The event's handle if this node serves it now.
    fn local(&self, event: EventId) -> Option<EventHandle> {
        self.events
            .read()
            .expect("not poisoned")
            .get(&event)
            .cloned()
    }

    /// Whether this node serves `event` now.
    #[must_use]
    pub fn serves(&self, event: EventId) -> bool {
        self.events
            .read()
            .expect("not poisoned")
            .contains_key(&event)
    }

    /// Pushes of events another node owns, for this process's fans.
    pub(crate) fn publish_remote(&self, pushes: RemotePushes) {
        for push in pushes {
            let _ = self.pushes.send(push);
        }
    }

    /// The mesh proved `peer` dead: take over what placement gives this
    /// node of its events, at once.
    pub(crate) fn peer_dead(&self, peer: NodeId) {
        let _ = self.router.cast(RouterMsg::PeerDead(peer));
    }

    /// A session with `peer` is ready.
    pub(crate) fn peer_alive(&self, peer: NodeId) {
        let _ = self.router.cast(RouterMsg::PeerAlive(peer));
    }

    /// Registered addresses of the live nodes (other than this one).
    pub(crate) fn known_node_addrs(&self) -> Vec<String> {
        self.view.read().expect("not poisoned").addrs.clone()
    }

    /// Live nodes that may own events, as this node sees them.
    #[must_use]
    pub fn placeable(&self) -> Vec<NodeId> {
        self.view.read().expect("not poisoned").placeable.clone()
    }

    /// The event's handle if this node serves it; else, if another node is
    /// known to own it, `NotOwner` without asking anyone; else whatever
    /// the router makes of activating it here.
    async fn handle(&self, event: EventId) -> Result<EventHandle, NodeError> {
        if let Some(handle) = self.events.read().expect("not poisoned").get(&event) {
            return Ok(handle.clone());
        }
        let owner = self
            .owners
            .read()
            .expect("not poisoned")
            .owner(event, wall_now())
            .cloned();
        if let Some(lease) = owner {
            return Err(ActivateError::NotOwner(lease).into());
        }
        Ok(self
            .ask_router(|reply| RouterMsg::Activate { event, reply })
            .await??)
    }

    /// Create an event (refused if it exists) on the node placement names
    /// for it, and activate it there.
    pub async fn create_event(&self, spec: EventSpec) -> Reply {
        if let Some(mesh) = self.mesh.get() {
            match self.desired_owner(mesh, spec.event) {
                Some(node) if node != self.me => {
                    let request = Request::Create {
                        spec: Box::new(spec),
                    };
                    return match mesh.call(&node, request, 1).await {
                        Ok(reply) => reply,
                        Err(error) => error.into(),
                    };
                }
                None if !self.owns_events => {
                    return Reply::error(ErrorCode::Busy, "no node can take a new event now");
                }
                _ => {}
            }
        }
        self.create_here(spec).await
    }

    /// Create an event on this node.
    async fn create_here(&self, spec: EventSpec) -> Reply {
        if !self.owns_events {
            return Reply::error(ErrorCode::Busy, "a gateway-only node creates no events");
        }
        let event = spec.event;
        let created = self
            .ask_router(|reply| RouterMsg::Create { spec, reply })
            .await;
        match created {
            // Wherever it is served (created again, it may live elsewhere).
            Ok(Ok(())) => self.call(event, Command::Overview).await,
            Ok(Err(error)) => NodeError::from(error).into(),
            Err(error) => NodeError::from(error).into(),
        }
    }

    /// One call to the router, bounded by [`ROUTER_CALL_TIMEOUT_MS`].
    async fn ask_router<T: Send + 'static>(
        &self,
        message: impl FnOnce(RpcReplyPort<T>) -> RouterMsg,
    ) -> Result<T, RouterError> {
        let limit = Duration::from_millis(ROUTER_CALL_TIMEOUT_MS);
        match self.router.call(message, Some(limit)).await {
            Ok(CallResult::Success(answer)) => Ok(answer),
            Ok(CallResult::Timeout) => Err(RouterError::Timeout),
            Ok(CallResult::SenderError) => Err(RouterError::Gone("it dropped the call".into())),
            Err(e) => Err(RouterError::Gone(e.to_string())),
        }
    }

    /// Every event spec in the store (the operators' desired state), for
    /// catalogues. Specs that are damaged or do not decode are logged at
    /// ERROR and skipped (their events cannot be served).
    pub async fn specs(&self) -> Result<Vec<EventSpec>, StoreError> {
        let store = Arc::clone(&self.store.0);
        let stored = tokio::task::spawn_blocking(move || store.event_specs())
            .await
            .map_err(|e| StoreError::Unavailable(format!("spec read panicked: {e}")))??;
        Ok(stored
            .into_iter()
            .filter_map(|(event, bytes)| {
                // A damaged spec was logged at ERROR and counted when read.
                match EventSpec::decode(&bytes.ok()?) {
                    Ok(spec) => Some(spec),
                    Err(e) => {
                        tracing::error!(%event, error = %e, "a stored event spec does not decode: the event cannot be served");
                        None
                    }
                }
            })
            .collect())
    }

    /// Every push of every event this node owns.
    #[must_use]
    pub fn subscribe(&self) -> broadcast::Receiver<(EventId, Push)> {
        self.pushes.subscribe()
    }

    /// Events this node serves now.
    #[must_use]
    pub fn owned(&self) -> Vec<EventId> {
        let mut owned: Vec<EventId> = self
            .events
            .read()
            .expect("not poisoned")
            .keys()
            .copied()
            .collect();
        owned.sort_unstable();
        owned
    }

    pub fn stop(&self) {
        self.router.stop(None);
    }
}

#[derive(Debug)]
pub enum RouterMsg {
    Activate {
        event: EventId,
        reply: RpcReplyPort<Result<EventHandle, ActivateError>>,
    },
    Create {
        spec: EventSpec,
        reply: RpcReplyPort<Result<(), CreateError>>,
    },
    Renew,
    /// The mesh proved this node dead.
    PeerDead(NodeId),
    /// Move an event served here to another node (see `Node::move_event`).
    Move {
        event: EventId,
        to: NodeId,
        reply: RpcReplyPort<Result<EventLease, Reply>>,
    },
    /// Take an event over from the owner handing it over.
    Adopt {
        event: EventId,
        over: EventLease,
        reply: RpcReplyPort<Result<EventHandle, ActivateError>>,
    },
    /// A mesh session with this node is ready.
    PeerAlive(NodeId),
    /// Operators changed a node's flags: read the view again now.
    Refresh,
}

impl ractor::Message for RouterMsg {}

#[derive(Debug)]
pub struct RouterActor;

#[derive(Debug)]
pub struct RouterArgs {
    config: NodeConfig,
    events: Events,
    owners: SharedOwners,
    pushes: broadcast::Sender<(EventId, Push)>,
    view: Arc<RwLock<View>>,
    mesh: MeshSlot,
}

#[derive(Debug)]
pub struct RouterState {
    config: NodeConfig,
    events: Events,
    owners: SharedOwners,
    pushes: broadcast::Sender<(EventId, Push)>,
    leases: FxHashMap<EventId, EventLease>,
    /// Events whose stored state failed to restore here: not adopted again
    /// automatically (a request still retries, and reports the error).
    unrestorable: rustc_hash::FxHashSet<EventId>,
    view: Arc<RwLock<View>>,
    /// Nodes the mesh proved dead, until a session with them is ready again.
    dead: rustc_hash::FxHashSet<NodeId>,
    /// Live nodes as the store last listed them.
    live: Vec<crate::store::NodeRecord>,
    /// When each event nobody owns was first seen so.
    orphaned_since: FxHashMap<EventId, Millis>,
    mesh: MeshSlot,
    /// Since when this node has had no mesh session at all while other
    /// nodes are live in the store.
    alone_since: Option<std::time::Instant>,
    /// Operators' flags on nodes, as the store last listed them.
    flags: FxHashMap<NodeId, NodeFlags>,
    /// The placeable nodes changed since events not yet on sale were last
    /// moved to their desired owners (see `relocate`).
    rebalance: bool,
}

impl Actor for RouterActor {
    type Msg = RouterMsg;
    type State = RouterState;
    type Arguments = RouterArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<Self::Msg>,
        args: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        let mut state = RouterState {
            config: args.config,
            events: args.events,
            owners: args.owners,
            pushes: args.pushes,
            leases: FxHashMap::default(),
            unrestorable: rustc_hash::FxHashSet::default(),
            view: args.view,
            dead: rustc_hash::FxHashSet::default(),
            live: Vec::new(),
            orphaned_since: FxHashMap::default(),
            mesh: args.mesh,
            alone_since: None,
            flags: FxHashMap::default(),
            rebalance: false,
        };
        if state.config.owns_events {
            state.heartbeat().await?;
        }
        state.refresh_view().await;
        if state.config.owns_events {
            // Recovery: take up the events this node held, and those
            // nobody holds that placement gives this node.
            let specs = state.blocking(|store| store.event_specs()).await?;
            for (event, _) in specs {
                let lease = state.blocking(move |s| s.event_lease(event)).await;
                let mine = match lease {
                    Ok(Some(lease)) if lease.node == state.config.node => true,
                    Ok(Some(lease)) if lease.expires > wall_now() => false,
                    Ok(_) => state.desired_here(event, None),
                    Err(_) => false,
                };
                if mine && let Err(error) = state.activate(&myself, event, None).await {
                    tracing::info!(%event, %error, "event not activated here");
                }
            }
        }
        let period = Duration::from_millis((state.config.lease_ttl_ms / 3).max(50));
        myself.send_interval(period, || RouterMsg::Renew);
        Ok(state)
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            RouterMsg::Activate { event, reply } => {
                let result = if state.config.owns_events {
                    state.activate(&myself, event, None).await
                } else {
                    Err(ActivateError::Store(StoreError::Unavailable(
                        "a gateway-only node owns no events".into(),
                    )))
                };
                let _ = reply.send(result);
            }
            RouterMsg::Create { spec, reply } => {
                let _ = reply.send(state.create(spec).await);
            }
            RouterMsg::Renew => {
                if state.config.owns_events {
                    state.renew().await;
                }
                state.refresh_view().await;
                if state.config.owns_events && !state.isolated().await {
                    state.adopt_orphans(&myself).await;
                    state.relocate(&myself).await;
                }
            }
            RouterMsg::PeerDead(peer) => {
                state.dead.insert(peer.clone());
                state
                    .owners
                    .write()
                    .expect("not poisoned")
                    .forget_node(&peer);
                state.publish_view();
                if state.config.owns_events {
                    state.take_over(&myself, &peer).await;
                }
            }
            RouterMsg::Move { event, to, reply } => {
                let moved = state.move_event(&myself, event, to).await;
                let _ = reply.send(moved);
            }
            RouterMsg::Adopt { event, over, reply } => {
                let adopted = if state.config.owns_events {
                    state.activate(&myself, event, Some(over)).await
                } else {
                    Err(ActivateError::Store(StoreError::Unavailable(
                        "a gateway-only node owns no events".into(),
                    )))
                };
                let _ = reply.send(adopted);
            }
            RouterMsg::PeerAlive(peer) => {
                if state.dead.remove(&peer) {
                    state.publish_view();
                }
            }
            RouterMsg::Refresh => state.refresh_view().await,
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        _myself: ActorRef<Self::Msg>,
        message: SupervisionEvent,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let dead = match &message {
            SupervisionEvent::ActorTerminated(cell, _, reason) => {
                Some((cell.get_id(), reason.clone()))
            }
            SupervisionEvent::ActorFailed(cell, e) => Some((cell.get_id(), Some(e.to_string()))),
            _ => None,
        };
        if let Some((id, reason)) = dead {
            let mut events = state.events.write().expect("not poisoned");
            let gone: Vec<EventId> = events
                .iter()
                .filter(|(_, h)| h.actor_id() == id)
                .map(|(e, _)| *e)
                .collect();
            for event in gone {
                tracing::warn!(%event, ?reason, "event actor stopped; it will be activated again on demand");
                events.remove(&event);
                state.leases.remove(&event);
            }
        }
        Ok(())
    }
}

impl RouterState {
    /// Run a store call off the async threads.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&dyn Store) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let store = Arc::clone(&self.config.store);
        tokio::task::spawn_blocking(move || f(store.as_ref()))
            .await
            .map_err(|e| StoreError::Unavailable(format!("store task failed: {e}")))?
    }

    async fn heartbeat(&self) -> Result<(), StoreError> {
        let (node, addr, ttl) = (
            self.config.node.clone(),
            self.config.addr.clone(),
            self.config.lease_ttl_ms,
        );
        self.blocking(move |s| s.heartbeat_node(&node, &addr, ttl, wall_now()))
            .await
    }

    async fn create(&mut self, spec: EventSpec) -> Result<(), CreateError> {
        spec.venue()?;
        let bytes = spec.encode().map_err(SpecError::from)?;
        let event = spec.event;
        // An event's spec never changes once it exists: its journal and
        // snapshots index seats of that venue under that config, and a
        // replay over another venue could resell a sold seat.
        // Creating it again with the very same spec is not an error: an
        // operator's retry (or a tool's `create`) is idempotent by id.
        let stored = self
            .blocking(move |s| {
                let spec = s.event_specs()?.into_iter().find(|(e, _)| *e == event);
                Ok((spec, s.event_lease(event)?.is_some()))
            })
            .await?;
        match stored {
            (Some((_, Ok(stored))), _) if stored == bytes => Ok(()),
            (Some(_), _) | (None, true) => Err(CreateError::Exists(event)),
            (None, false) => Ok(self
                .blocking(move |s| s.put_event_spec(event, &bytes))
                .await?),
        }
    }

    /// Serve `event` here: take its lease (over `over`, a lease of a node
    /// proven dead, if given), restore it and start its actor.
    async fn activate(
        &mut self,
        myself: &ActorRef<RouterMsg>,
        event: EventId,
        over: Option<EventLease>,
    ) -> Result<EventHandle, ActivateError> {
        if let Some(handle) = self.events.read().expect("not poisoned").get(&event) {
            return Ok(handle.clone());
        }
        // Calls queued behind the one that found the event held.
        if over.is_none()
            && let Some(lease) = self.known_owner(event, wall_now())
        {
            return Err(ActivateError::NotOwner(lease));
        }
        let specs = self.blocking(|s| s.event_specs()).await?;
        let Some((_, spec)) = specs.into_iter().find(|(e, _)| *e == event) else {
            return Err(ActivateError::UnknownEvent);
        };
        let spec = spec.map_err(|damage| ActivateError::Store(StoreError::Damaged(damage)))?;
        let (node, ttl) = (self.config.node.clone(), self.config.lease_ttl_ms);
        let now = wall_now();
        let acquired = self
            .blocking(move |s| s.acquire_event_over(event, &node, ttl, now, over.as_ref()))
            .await?;
        let lease = match acquired {
            Acquisition::Acquired(lease) => lease,
            Acquisition::HeldBy(held) => {
                self.owners.write().expect("not poisoned").learn(&held, now);
                return Err(ActivateError::NotOwner(held));
            }
        };
        self.owners.write().expect("not poisoned").forget(event);
        let started = std::time::Instant::now();
        let core = match self.blocking(move |s| s.load_event(event)).await {
            Ok(stored) => restore(&spec, &stored, wall_now()).map_err(ActivateError::from),
            // Not retried: damaged or lost data needs an operator.
            Err(e @ (StoreError::Damaged(_) | StoreError::Lost(_))) => Err(e.into()),
            Err(e) => return Err(e.into()),
        };
        let core = match core {
            Ok(core) => core,
            Err(e) => {
                tracing::error!(%event, error = %e, "event state cannot be restored");
                // Give the lease back and stop adopting this event: it
                // needs an operator, not a retry every tick.
                let failed = lease.clone();
                let _ = self.blocking(move |s| s.release_event(&failed)).await;
                self.unrestorable.insert(event);
                return Err(e);
            }
        };
        self.orphaned_since.remove(&event);
        tracing::info!(
            %event,
            epoch = lease.epoch,
            seq = core.journal_seq(),
            restore_ms = started.elapsed().as_millis() as u64,
            "event activated"
        );
        let args = EventArgs {
            core,
            log: Box::new(StoreLog::new(Arc::clone(&self.config.store), lease.clone())),
            key: self.config.key.clone(),
            provider: self.config.provider.clone(),
            pushes: self.pushes.clone(),
            snapshot_every_records: self.config.snapshot_every_records,
            payment_query_after_ms: self.config.payment_query_after_ms,
        };
        let handle = EventActor::start(args, Some(myself.get_cell()))
            .await
            .map_err(|e| ActivateError::ActorStart(e.to_string()))?;
        self.leases.insert(event, lease);
        self.events
            .write()
            .expect("not poisoned")
            .insert(event, handle.clone());
        Ok(handle)
    }

    /// Another node's live lease on `event`, if this node knows of one.
    fn known_owner(&self, event: EventId, now: Millis) -> Option<EventLease> {
        let owners = self.owners.read().expect("not poisoned");
        owners.owner(event, now).cloned()
    }

    async fn renew(&mut self) {
        if let Err(e) = self.heartbeat().await {
            tracing::warn!(error = %e, "node heartbeat failed");
        }
        let ttl = self.config.lease_ttl_ms;
        let leases: Vec<EventLease> = self.leases.values().cloned().collect();
        for batch in leases.chunks(RENEW_BATCH) {
            let batch = batch.to_vec();
            let asked = batch.clone();
            let renewed = self
                .blocking(move |s| s.renew_events(&asked, ttl, wall_now()))
                .await;
            match renewed {
                Ok(results) => {
                    for (lease, result) in batch.iter().zip(results) {
                        match result {
                            Ok(renewed) => {
                                self.leases.insert(lease.event, renewed);
                            }
                            Err(_) => self.give_up(lease.event, "fenced by a newer owner"),
                        }
                    }
                }
                Err(e) => {
                    for lease in &batch {
                        // Stop serving a renewal period before the lease
                        // could expire: by then another node may be
                        // taking it.
                        if wall_now().0 + ttl / 3 >= lease.expires.0 {
                            self.give_up(
                                lease.event,
                                &format!("lease about to expire while the store fails: {e}"),
                            );
                        }
                    }
                    tracing::warn!(error = %e, events = batch.len(), "lease renewal failed; retrying");
                }
            }
        }
    }

    /// Take up events whose owner's lease expired (failover).
    async fn adopt_orphans(&mut self, myself: &ActorRef<RouterMsg>) {
        let Ok(specs) = self.blocking(|s| s.event_specs()).await else {
            return;
        };
        for (event, _) in specs {
            if self.leases.contains_key(&event) || self.unrestorable.contains(&event) {
                continue;
            }
            let lease = self.blocking(move |s| s.event_lease(event)).await;
            let now = wall_now();
            let (orphaned, last_holder) = match lease {
                Ok(None) => (true, None),
                Ok(Some(lease)) => {
                    // Keeps what this node knows of other owners fresh:
                    // their renewals are seen here before the old expiry.
                    self.owners
                        .write()
                        .expect("not poisoned")
                        .learn(&lease, now);
                    let orphaned = lease.expires <= now || lease.node == self.config.node;
                    (orphaned, Some(lease.node))
                }
                Err(_) => (false, None),
            };
            if !orphaned {
                self.orphaned_since.remove(&event);
                continue;
            }
            // The node placement names adopts it (the holder that let its
            // lease lapse is passed over); past two lease times, any node.
            let since = *self.orphaned_since.entry(event).or_insert(now);
            let overdue = now.0.saturating_sub(since.0) >= 2 * self.config.lease_ttl_ms;
            if !overdue && !self.desired_here(event, last_holder.as_ref()) {
                continue;
            }
            if let Err(error) = self.activate(myself, event, None).await {
                tracing::debug!(%event, %error, "orphaned event not adopted");
            }
        }
    }

    /// Whether this node is cut off: on a mesh, with no session with
    /// anyone (no node, no gateway) for [`ISOLATION_GRACE_MS`], while other
    /// nodes are live in the store. Its fans cannot reach it, yet it could
    /// go on renewing its leases (the store may still be reachable), so it
    /// stops serving and releases its events for a reachable node to take
    /// at once. It adopts nothing while cut off.
    async fn isolated(&mut self) -> bool {
        let Some(mesh) = self.mesh.get().cloned() else {
            return false;
        };
        let others_live = self
            .live
            .iter()
            .any(|r| r.node != self.config.node && !self.dead.contains(&r.node));
        if !others_live || !mesh.peers().is_empty() {
            self.alone_since = None;
            return false;
        }
        let since = *self.alone_since.get_or_insert_with(std::time::Instant::now);
        if since.elapsed() < Duration::from_millis(ISOLATION_GRACE_MS) {
            return false;
        }
        let leases: Vec<EventLease> = self.leases.values().cloned().collect();
        for lease in leases {
            let event = lease.event;
            self.give_up(event, "cut off from every peer of the mesh");
            if let Err(e) = self.blocking(move |s| s.release_event(&lease)).await {
                tracing::warn!(%event, error = %e, "could not release the event's lease; it will expire");
            }
        }
        true
    }

    /// Re-read the live nodes and the nodes' flags from the store and
    /// publish the view.
    async fn refresh_view(&mut self) {
        match self
            .blocking(|s| Ok((s.live_nodes(wall_now())?, s.node_flags()?)))
            .await
        {
            Ok((live, flags)) => {
                self.live = live;
                self.flags = flags.into_iter().collect();
                self.publish_view();
            }
            Err(e) => tracing::warn!(error = %e, "live nodes could not be read"),
        }
    }

    fn flags_of(&self, node: &NodeId) -> NodeFlags {
        self.flags.get(node).copied().unwrap_or_default()
    }

    fn publish_view(&mut self) {
        let mut placeable: Vec<NodeId> = self
            .live
            .iter()
            .map(|record| record.node.clone())
            .filter(|node| !self.dead.contains(node))
            .collect();
        if self.config.owns_events && !placeable.contains(&self.config.node) {
            placeable.push(self.config.node.clone());
        }
        placeable.retain(|node| !self.flags_of(node).cordoned);
        placeable.sort_unstable();
        if self.view.read().expect("not poisoned").placeable != placeable {
            self.rebalance = true;
        }
        let addrs = self
            .live
            .iter()
            .filter(|record| record.node != self.config.node && !self.dead.contains(&record.node))
            .map(|record| record.addr.clone())
            .collect();
        *self.view.write().expect("not poisoned") = View { placeable, addrs };
    }

    /// Whether placement names this node for `event`, among the placeable
    /// nodes other than `passed_over`.
    fn desired_here(&self, event: EventId, passed_over: Option<&NodeId>) -> bool {
        let view = self.view.read().expect("not poisoned");
        let candidates = view
            .placeable
            .iter()
            .filter(|node| Some(*node) != passed_over);
        placement::owner_of(event, candidates) == Some(&self.config.node)
    }

    /// `dead` was proven dead: take over, at once, each of its events that
    /// placement now gives this node (the takeover fences it for good).
    async fn take_over(&mut self, myself: &ActorRef<RouterMsg>, dead: &NodeId) {
        let Ok(specs) = self.blocking(|s| s.event_specs()).await else {
            return;
        };
        for (event, _) in specs {
            if self.leases.contains_key(&event) || self.unrestorable.contains(&event) {
                continue;
            }
            let Ok(Some(lease)) = self.blocking(move |s| s.event_lease(event)).await else {
                continue;
            };
            if lease.node != *dead || !self.desired_here(event, Some(dead)) {
                continue;
            }
            let started = std::time::Instant::now();
            match self.activate(myself, event, Some(lease)).await {
                Ok(_) => tracing::warn!(
                    %event,
                    %dead,
                    takeover_ms = started.elapsed().as_millis() as u64,
                    "took over the event of a dead node"
                ),
                Err(error) => tracing::warn!(%event, %dead, %error, "takeover failed"),
            }
        }
    }

    /// Freeze, flush, stop, hand over; take the event back if the handover
    /// fails (a new acquire: this node may, as the lease's holder).
    async fn move_event(
        &mut self,
        myself: &ActorRef<RouterMsg>,
        event: EventId,
        to: NodeId,
    ) -> Result<EventLease, Reply> {
        let (Some(lease), Some(handle)) = (
            self.leases.get(&event).cloned(),
            self.events
                .read()
                .expect("not poisoned")
                .get(&event)
                .cloned(),
        ) else {
            return Err(Reply::error(
                ErrorCode::Busy,
                format!("event {event} is not served here"),
            ));
        };
        if to == self.config.node {
            return Ok(lease);
        }
        let Some(mesh) = self.mesh.get().cloned() else {
            return Err(Reply::error(
                ErrorCode::BadRequest,
                "this node is on no mesh",
            ));
        };
        if !mesh.is_connected(&to) {
            return Err(Reply::error(
                ErrorCode::BadRequest,
                format!("no mesh session with node {to}: cannot move event {event} there"),
            ));
        }
        let started = std::time::Instant::now();
        if !handle.freeze(Duration::from_millis(MOVE_FREEZE_MS)).await {
            tracing::warn!(%event, "move: the event did not settle in time; stopping it anyway");
        }
        // From here calls find no handle: they queue behind this move in
        // the router, then go to the new owner.
        self.events.write().expect("not poisoned").remove(&event);
        handle
            .stop_and_wait(
                "moving to another node",
                Duration::from_millis(MOVE_FREEZE_MS),
            )
            .await;
        self.leases.remove(&event);
        let frozen_ms = started.elapsed().as_millis() as u64;
        let request = Request::Adopt {
            event,
            over: owners::owner_of(&lease),
        };
        let answer = mesh.call(&to, request, 1).await;
        let now = wall_now();
        let new_lease = self.blocking(move |s| s.event_lease(event)).await;
        match (answer, new_lease) {
            (Ok(Reply::Overview { .. }), Ok(Some(new))) if new.node == to => {
                self.owners.write().expect("not poisoned").learn(&new, now);
                tracing::warn!(
                    %event,
                    %to,
                    epoch = new.epoch,
                    frozen_ms,
                    moved_ms = started.elapsed().as_millis() as u64,
                    "event moved"
                );
                Ok(new)
            }
            (answer, _) => {
                tracing::error!(%event, %to, ?answer, "move failed: taking the event back");
                match self.activate(myself, event, None).await {
                    Ok(_) => Err(Reply::error(
                        ErrorCode::Busy,
                        format!("the move to {to} failed; event {event} stays here"),
                    )),
                    // The target did take it: the move happened after all.
                    Err(ActivateError::NotOwner(held)) if held.node == to => Ok(held),
                    Err(error) => Err(NodeError::from(error).into()),
                }
            }
        }
    }

    /// Move events to their desired owners, within a time budget per tick
    /// (the rest waits for the next one): every event while this node
    /// drains; otherwise, after the placeable nodes changed, only events
    /// not yet on sale (an event on sale never moves by itself). A move
    /// that fails leaves the event here, to be tried again next tick.
    async fn relocate(&mut self, myself: &ActorRef<RouterMsg>) {
        let draining = self.flags_of(&self.config.node).draining;
        if !draining && !self.rebalance {
            return;
        }
        let Some(mesh) = self.mesh.get().cloned() else {
            self.rebalance = false;
            return;
        };
        let started = std::time::Instant::now();
        let budget = Duration::from_millis((self.config.lease_ttl_ms / 6).max(50));
        let mut events: Vec<EventId> = self.leases.keys().copied().collect();
        events.sort_unstable();
        let mut finished = true;
        for event in events {
            if started.elapsed() >= budget {
                finished = false;
                break;
            }
            let desired = {
                let view = self.view.read().expect("not poisoned");
                placement::owner_of(event, &view.placeable).cloned()
            };
            let Some(to) = desired.filter(|to| *to != self.config.node) else {
                continue;
            };
            if !mesh.is_connected(&to) || (!draining && !self.scheduled(event).await) {
                continue;
            }
            match self.move_event(myself, event, to.clone()).await {
                Ok(lease) => tracing::info!(%event, to = %lease.node, draining, "event relocated"),
                Err(reply) => {
                    tracing::warn!(%event, %to, ?reply, "relocation failed; retrying next tick")
                }
            }
        }
        if finished {
            self.rebalance = false;
        }
    }

    /// Whether an event served here is still scheduled (not yet on sale).
    async fn scheduled(&self, event: EventId) -> bool {
        let handle = self
            .events
            .read()
            .expect("not poisoned")
            .get(&event)
            .cloned();
        let Some(handle) = handle else {
            return false;
        };
        matches!(
            handle.call(Command::Overview).await,
            Reply::Overview { overview } if overview.sale == onsale_schema::SaleState::Scheduled
        )
    }

    fn give_up(&mut self, event: EventId, why: &str) {
        tracing::error!(%event, why, "stopping the event: this node no longer owns it");
        self.leases.remove(&event);
        if let Some(handle) = self.events.write().expect("not poisoned").remove(&event) {
            handle.stop(why);
        }
    }
}
