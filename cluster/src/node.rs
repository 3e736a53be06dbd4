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
//! **Leases.** Every owned event's lease is renewed each `ttl / 3`. A
//! renewal that is fenced (another node took the event) or that keeps
//! failing past the lease's expiry stops the event actor: a node never
//! serves an event it cannot prove it owns. Writes are fenced by epoch in
//! the store regardless, so even a node that has not noticed yet cannot
//! write.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use onsale_actors::EventCore;
use onsale_actors::clock::wall_now;
use onsale_actors::event_actor::{EventActor, EventArgs, EventHandle};
use onsale_actors::provider::Provider;
use onsale_schema::message::{Command, Push, Reply};
use onsale_schema::snapshot::{EventSnapshot, JournalRecord};
use onsale_schema::spec::EventSpec;
use onsale_schema::token::TokenKey;
use onsale_schema::{ErrorCode, EventId, Position};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use rustc_hash::FxHashMap;
use tokio::sync::broadcast;

use crate::event_log::StoreLog;
use crate::store::{EventLease, NodeId, Store, StoreError};

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

/// A running node.
#[derive(Clone, Debug)]
pub struct Node {
    router: ActorRef<RouterMsg>,
    events: Events,
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
        let (pushes, _) = broadcast::channel(PUSH_BUFFER);
        let store = StoreRef(Arc::clone(&config.store));
        let args = RouterArgs {
            config,
            events: Arc::clone(&events),
            pushes: pushes.clone(),
        };
        let (router, _) = Actor::spawn(None, RouterActor, args).await?;
        Ok(Node {
            router,
            events,
            pushes,
            store,
        })
    }

    /// Send a command to an event, activating it here if nobody owns it.
    pub async fn call(&self, event: EventId, command: Command) -> Reply {
        let handle = self
            .events
            .read()
            .expect("not poisoned")
            .get(&event)
            .cloned();
        let handle = match handle {
            Some(handle) => handle,
            None => match self.activate(event).await {
                Ok(handle) => handle,
                Err(reply) => return reply,
            },
        };
        handle.call(command).await
    }

    async fn activate(&self, event: EventId) -> Result<EventHandle, Reply> {
        let result = ractor::call!(self.router, |reply| RouterMsg::Activate { event, reply });
        match result {
            Ok(result) => result,
            Err(e) => Err(Reply::error(
                ErrorCode::Busy,
                format!("router unavailable: {e}"),
            )),
        }
    }

    /// Create (or replace) an event, and activate it.
    pub async fn create_event(&self, spec: EventSpec) -> Reply {
        let event = spec.event;
        let result = ractor::call!(self.router, |reply| RouterMsg::Create { spec, reply });
        match result {
            Ok(Ok(())) => match self.activate(event).await {
                Ok(handle) => handle.call(Command::Overview).await,
                Err(reply) => reply,
            },
            Ok(Err(reply)) => reply,
            Err(e) => Reply::error(ErrorCode::Busy, format!("router unavailable: {e}")),
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
        reply: RpcReplyPort<Result<EventHandle, Reply>>,
    },
    Create {
        spec: EventSpec,
        reply: RpcReplyPort<Result<(), Reply>>,
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
    pushes: broadcast::Sender<(EventId, Push)>,
}

#[derive(Debug)]
pub struct RouterState {
    config: NodeConfig,
    events: Events,
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
            pushes: args.pushes,
            leases: FxHashMap::default(),
            unrestorable: rustc_hash::FxHashSet::default(),
        };
        state.heartbeat().await?;
        // Recovery: take up every event nobody else holds.
        let specs = state.blocking(|store| store.event_specs()).await?;
        for (event, _) in specs {
            if let Err(reply) = state.activate(&myself, event).await {
                tracing::info!(%event, ?reply, "event not activated here");
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

    async fn create(&mut self, spec: EventSpec) -> Result<(), Reply> {
        spec.venue()
            .map_err(|e| Reply::error(ErrorCode::BadRequest, format!("event spec refused: {e}")))?;
        let bytes = spec
            .encode()
            .map_err(|e| Reply::error(ErrorCode::BadRequest, e.to_string()))?;
        let event = spec.event;
        // An event's spec never changes once it exists: its journal and
        // snapshots index seats of that venue under that config, and a
        // replay over another venue could resell a sold seat.
        let exists = self
            .blocking(move |s| {
                let known = s.event_specs()?.iter().any(|(e, _)| *e == event);
                Ok(known || s.event_lease(event)?.is_some())
            })
            .await
            .map_err(|e| Reply::error(ErrorCode::Internal, e.to_string()))?;
        if exists {
            return Err(Reply::error(
                ErrorCode::EventExists,
                format!("{event} already exists; an event's venue and settings cannot be replaced"),
            ));
        }
        self.blocking(move |s| s.put_event_spec(event, &bytes))
            .await
            .map_err(|e| Reply::error(ErrorCode::Internal, e.to_string()))
    }

    async fn activate(
        &mut self,
        myself: &ActorRef<RouterMsg>,
        event: EventId,
    ) -> Result<EventHandle, Reply> {
        if let Some(handle) = self.events.read().expect("not poisoned").get(&event) {
            return Ok(handle.clone());
        }
        let internal = |e: StoreError| Reply::error(ErrorCode::Internal, e.to_string());
        let specs = self.blocking(|s| s.event_specs()).await.map_err(internal)?;
        let Some((_, spec_bytes)) = specs.into_iter().find(|(e, _)| *e == event) else {
            return Err(Reply::error(ErrorCode::UnknownEvent, "no such event"));
        };
        let spec_bytes =
            spec_bytes.map_err(|e| Reply::error(ErrorCode::Internal, e.to_string()))?;
        let spec = EventSpec::decode(&spec_bytes).map_err(|e| {
            Reply::error(ErrorCode::Internal, format!("stored spec is corrupt: {e}"))
        })?;
        let (node, ttl) = (self.config.node.clone(), self.config.lease_ttl_ms);
        let lease = self
            .blocking(move |s| s.acquire_event(event, &node, ttl, wall_now()))
            .await
            .map_err(internal)?
            .ok_or_else(|| Reply::error(ErrorCode::Busy, "another node owns this event"))?;
        let started = std::time::Instant::now();
        let stored = self.blocking(move |s| s.load_event(event)).await;
        let core = match stored
            .map_err(|e| match e {
                // Not retried: it needs an operator (logged when found).
                StoreError::Damaged(_) | StoreError::Lost(_) => Ok(e.to_string()),
                e => Err(e),
            })
            .map(|stored| restore(&spec, stored))
        {
            Err(Err(e)) => return Err(internal(e)),
            Err(Ok(e)) => Err(e),
            Ok(restored) => restored,
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
                return Err(Reply::error(
                    ErrorCode::Internal,
                    format!("event state cannot be restored: {e}"),
                ));
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
            .map_err(|e| {
                Reply::error(
                    ErrorCode::Internal,
                    format!("event actor failed to start: {e}"),
                )
            })?;
        self.leases.insert(event, lease);
        self.events
            .write()
            .expect("not poisoned")
            .insert(event, handle.clone());
        Ok(handle)
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
            let orphaned = match lease {
                Ok(None) => true,
                Ok(Some(lease)) => lease.expires <= wall_now() || lease.node == self.config.node,
                Err(_) => false,
            };
            if orphaned && let Err(reply) = self.activate(myself, event).await {
                tracing::debug!(%event, ?reply, "orphaned event not adopted");
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

/// Rebuild an event's core from what the store holds.
pub fn restore(spec: &EventSpec, stored: crate::store::StoredEvent) -> Result<EventCore, String> {
    let venue = Arc::new(spec.venue().map_err(|e| e.to_string())?);
    let snapshot = match &stored.snapshot {
        Some((_, bytes)) => EventSnapshot::decode(bytes).map_err(|e| format!("snapshot: {e}"))?,
        // Never snapshotted: start from the event's initial state.
        None => EventCore::new(
            spec.event,
            Arc::clone(&venue),
            spec.config.clone(),
            wall_now(),
        )
        .map_err(|e| e.to_string())?
        .snapshot(),
    };
    let mut core = EventCore::restore(venue, &snapshot, Position(stored.counter_ceiling))
        .map_err(|e| format!("snapshot: {e}"))?;
    for record in &stored.journal {
        let decoded = JournalRecord::decode(&record.bytes)
            .map_err(|e| format!("journal record {}: {e}", record.seq))?;
        if decoded.seq != record.seq {
            return Err(format!(
                "journal record stored at {} says {}",
                record.seq, decoded.seq
            ));
        }
        core.replay(&decoded)
            .map_err(|e| format!("journal record {}: {e}", record.seq))?;
    }
    Ok(core)
}
