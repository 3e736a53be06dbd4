//! What operators ask of a node about the cluster: every node's own
//! account (asked over the mesh), the store's leases and flags, placement
//! rankings, and the operators' flags on nodes (cordon, drain).
//!
//! None of this is on a fan's path: each call reads the store once or
//! twice and asks each peer once, concurrently, each answer bounded by
//! [`STATUS_TIMEOUT_MS`].

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use onsale_actors::clock::wall_now;
use onsale_schema::EventId;
use onsale_schema::message::{NodeStatus, Reply};
use onsale_schema::ops::StoreHealth;

use super::{Node, RouterMsg};
use crate::mesh::placement;
use crate::mesh::wire::Request;
use crate::store::{EventLease, NodeFlags, NodeId, NodeRecord, StoreError};

/// How long operators' status calls wait for each node's answer.
pub const STATUS_TIMEOUT_MS: u64 = 1_000;

impl Node {
    /// The count of fan websockets open on this process: the gateway keeps
    /// it, nodes report it.
    #[must_use]
    pub fn fans_open(&self) -> Arc<AtomicUsize> {
        Arc::clone(&self.fans)
    }

    /// How long a lease (a node's heartbeat, an event's) lasts unrenewed.
    #[must_use]
    pub fn lease_ttl_ms(&self) -> u64 {
        self.lease_ttl_ms
    }

    /// This node's own account: its role, fans, how many events it serves
    /// and, if `with_events`, their numbers (overviews without section
    /// summaries, as each event last computed them: read from the
    /// handles, no message to any actor, so thousands cost a millisecond).
    #[must_use]
    pub fn status(&self, with_events: bool) -> NodeStatus {
        let events = self.events.read().expect("not poisoned");
        let serving = u32::try_from(events.len()).unwrap_or(u32::MAX);
        let mut overviews: Vec<_> = if with_events {
            events
                .values()
                .filter_map(|handle| handle.numbers())
                .collect()
        } else {
            Vec::new()
        };
        drop(events);
        overviews.sort_unstable_by_key(|overview| overview.event);
        NodeStatus {
            node: self.me.0.clone(),
            owns_events: self.owns_events,
            fans: self.fans.load(Ordering::Relaxed) as u64,
            serving,
            events: overviews,
        }
    }

    /// Every process this one can ask (itself, and each mesh peer) with
    /// its own account (with its events' numbers if `with_events`), or
    /// `None` where it did not answer in time.
    pub async fn statuses(&self, with_events: bool) -> Vec<(NodeId, Option<NodeStatus>)> {
        let peers = self
            .mesh()
            .map(crate::mesh::Mesh::peers)
            .unwrap_or_default();
        let limit = Duration::from_millis(STATUS_TIMEOUT_MS);
        let asked = peers.into_iter().map(|peer| async move {
            let call = async {
                let mesh = self.mesh()?;
                match mesh
                    .call(
                        &peer,
                        Request::Status {
                            events: with_events,
                        },
                        0,
                    )
                    .await
                {
                    Ok(Reply::NodeStatus { status }) => Some(status),
                    _ => None,
                }
            };
            let status = tokio::time::timeout(limit, call).await.ok().flatten();
            (peer, status)
        });
        let mut theirs = futures::future::join_all(asked).await;
        theirs.push((self.me.clone(), Some(self.status(with_events))));
        theirs.sort_by(|a, b| a.0.cmp(&b.0));
        theirs
    }

    /// Live nodes as the store lists them.
    pub async fn live_nodes(&self) -> Result<Vec<NodeRecord>, StoreError> {
        self.read_store(|s| s.live_nodes(wall_now())).await
    }

    /// Every registered node, its heartbeat expired or not.
    pub async fn registered_nodes(&self) -> Result<Vec<NodeRecord>, StoreError> {
        self.read_store(|s| s.nodes()).await
    }

    /// Forget a node's registration and flags.
    pub async fn forget_node(&self, node: NodeId) -> Result<(), StoreError> {
        self.read_store(move |s| s.forget_node(&node)).await
    }

    /// Operators' flags on nodes.
    pub async fn node_flags(&self) -> Result<Vec<(NodeId, NodeFlags)>, StoreError> {
        self.read_store(|s| s.node_flags()).await
    }

    /// Every event's stored lease.
    pub async fn event_leases(&self) -> Result<Vec<EventLease>, StoreError> {
        self.read_store(|s| s.event_leases()).await
    }

    /// One event's stored lease.
    pub async fn event_lease(&self, event: EventId) -> Result<Option<EventLease>, StoreError> {
        self.read_store(move |s| s.event_lease(event)).await
    }

    /// Set a node's flags, and have this node's router see them now (the
    /// others see them within a renewal period).
    pub async fn set_node_flags(&self, node: NodeId, flags: NodeFlags) -> Result<(), StoreError> {
        self.read_store(move |s| s.set_node_flags(&node, flags))
            .await?;
        let _ = self.router.cast(RouterMsg::Refresh);
        Ok(())
    }

    /// The placeable nodes in the order they would own `event`: the
    /// desired owner first.
    #[must_use]
    pub fn ranking(&self, event: EventId) -> Vec<NodeId> {
        placement::order_of(event, &self.placeable())
    }

    /// One timed read of the store.
    pub async fn store_health(&self) -> StoreHealth {
        let started = Instant::now();
        let read = self.live_nodes().await;
        StoreHealth {
            backend: self.store.0.backend().to_owned(),
            ok: read.is_ok(),
            latency_ms: started.elapsed().as_secs_f64() * 1e3,
            error: read.err().map(|e| e.to_string()),
        }
    }

    async fn read_store<T: Send + 'static>(
        &self,
        f: impl FnOnce(&dyn crate::store::Store) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let store = Arc::clone(&self.store.0);
        tokio::task::spawn_blocking(move || f(store.as_ref()))
            .await
            .map_err(|e| StoreError::Unavailable(format!("store task failed: {e}")))?
    }
}
