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
//! **Leases.** Every owned event's lease is renewed each `ttl / 3`. A
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
use onsale_schema::message::{Command, Push, Reply};
use onsale_schema::spec::{EventSpec, SpecError};
use onsale_schema::token::TokenKey;
use onsale_schema::{EventId, Millis};
use ractor::rpc::CallResult;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use rustc_hash::FxHashMap;
use tokio::sync::broadcast;

use crate::event_log::StoreLog;
use crate::store::{Acquisition, EventLease, NodeId, Store, StoreError};

mod error;
pub mod owners;
mod restore;

pub use error::{ActivateError, CreateError, NodeError, RouterError};
pub use owners::Owners;
pub use restore::{RestoreError, restore};

/// Pushes buffered per subscriber before a slow one starts losing them
/// (it then resynchronises from an overview).
pub const PUSH_BUFFER: usize = 65_536;

/// How a node runs.
#[derive(Clone)]
pub struct NodeConfig {
    pub node: NodeId,
    /// Where this node's RPC listens (registered with its node lease).
    pub addr: String,
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

/// A running node.
#[derive(Clone, Debug)]
pub struct Node {
    router: ActorRef<RouterMsg>,
    events: Events,
    owners: SharedOwners,
    pushes: broadcast::Sender<(EventId, Push)>,
    store: StoreRef,
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
        let args = RouterArgs {
            config,
            events: Arc::clone(&events),
            owners: Arc::clone(&owners),
            pushes: pushes.clone(),
        };
        let (router, _) = Actor::spawn(None, RouterActor, args).await?;
        Ok(Node {
            router,
            events,
            owners,
            pushes,
            store,
        })
    }

    /// Send a command to an event, activating it here if nobody owns it.
    /// An event another node owns is answered `Reply::NotOwner`.
    pub async fn call(&self, event: EventId, command: Command) -> Reply {
        match self.handle(event).await {
            Ok(handle) => handle.call(command).await,
            Err(error) => error.into(),
        }
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

    /// Create an event (refused if it exists), and activate it.
    pub async fn create_event(&self, spec: EventSpec) -> Reply {
        let event = spec.event;
        let created = async {
            self.ask_router(|reply| RouterMsg::Create { spec, reply })
                .await??;
            self.handle(event).await
        };
        match created.await {
            Ok(handle) => handle.call(Command::Overview).await,
            Err(error) => error.into(),
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
        };
        state.heartbeat().await?;
        // Recovery: take up every event nobody else holds.
        let specs = state.blocking(|store| store.event_specs()).await?;
        for (event, _) in specs {
            if let Err(error) = state.activate(&myself, event).await {
                tracing::info!(%event, %error, "event not activated here");
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
                let result = state.activate(&myself, event).await;
                let _ = reply.send(result);
            }
            RouterMsg::Create { spec, reply } => {
                let _ = reply.send(state.create(spec).await);
            }
            RouterMsg::Renew => {
                state.renew().await;
                state.adopt_orphans(&myself).await;
            }
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
        let exists = self
            .blocking(move |s| {
                let known = s.event_specs()?.iter().any(|(e, _)| *e == event);
                Ok(known || s.event_lease(event)?.is_some())
            })
            .await?;
        if exists {
            return Err(CreateError::Exists(event));
        }
        Ok(self
            .blocking(move |s| s.put_event_spec(event, &bytes))
            .await?)
    }

    async fn activate(
        &mut self,
        myself: &ActorRef<RouterMsg>,
        event: EventId,
    ) -> Result<EventHandle, ActivateError> {
        if let Some(handle) = self.events.read().expect("not poisoned").get(&event) {
            return Ok(handle.clone());
        }
        // Calls queued behind the one that found the event held.
        if let Some(lease) = self.known_owner(event, wall_now()) {
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
            .blocking(move |s| s.acquire_event_or_holder(event, &node, ttl, now))
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
        for lease in leases {
            let event = lease.event;
            let current = lease.clone();
            let result = self
                .blocking(move |s| s.renew_event(&current, ttl, wall_now()))
                .await;
            match result {
                Ok(renewed) => {
                    self.leases.insert(event, renewed);
                }
                Err(StoreError::Fenced { .. }) => self.give_up(event, "fenced by a newer owner"),
                Err(e) if wall_now() >= lease.expires => {
                    self.give_up(event, &format!("lease expired while the store failed: {e}"));
                }
                Err(e) => tracing::warn!(%event, error = %e, "lease renewal failed; retrying"),
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
            let orphaned = match lease {
                Ok(None) => true,
                Ok(Some(lease)) => {
                    // Keeps what this node knows of other owners fresh:
                    // their renewals are seen here before the old expiry.
                    self.owners
                        .write()
                        .expect("not poisoned")
                        .learn(&lease, now);
                    lease.expires <= now || lease.node == self.config.node
                }
                Err(_) => false,
            };
            if orphaned && let Err(error) = self.activate(myself, event).await {
                tracing::debug!(%event, %error, "orphaned event not adopted");
            }
        }
    }

    fn give_up(&mut self, event: EventId, why: &str) {
        tracing::error!(%event, why, "stopping the event: this node no longer owns it");
        self.leases.remove(&event);
        if let Some(handle) = self.events.write().expect("not poisoned").remove(&event) {
            handle.stop(why);
        }
    }
}
