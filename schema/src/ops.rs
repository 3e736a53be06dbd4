//! The operator API's cluster views (`/api/ops/nodes`, `/api/ops/events`,
//! `/api/ops/cluster`), as the gateway answers them and `onsalectl` reads
//! them. Times are wall-clock ms since the Unix epoch.

use serde::{Deserialize, Serialize};

use crate::config::SaleState;
use crate::ids::{EventId, Millis, Position};
use crate::message::EventOverview;

/// What a process does in the cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeRole {
    /// Owns events (and serves fans: the default role, `both`).
    Node,
    /// Serves fans only; owns nothing and writes nothing to the store.
    Gateway,
}

/// A node's state as operators see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeState {
    /// Live, and events may be placed on it.
    Up,
    /// Live; placement passes it over (it keeps the events it has).
    Cordoned,
    /// Cordoned and moving its events away.
    Draining,
    /// Cordoned, drained: it serves no event.
    Drained,
    /// No live heartbeat (a node), or no mesh session (a gateway).
    Gone,
}

/// One node (or gateway) of the cluster.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeEntry {
    pub node: String,
    /// Its registered cluster address (none for a gateway: gateways do not
    /// register in the store).
    pub addr: Option<String>,
    pub role: NodeRole,
    pub state: NodeState,
    pub cordoned: bool,
    pub draining: bool,
    /// Events it serves now; `None` if it could not be asked.
    pub events: Option<u32>,
    /// Fan websockets open on it now; `None` if it could not be asked.
    pub fans: Option<u64>,
    /// When its store heartbeat expires unless renewed (nodes only).
    pub heartbeat_expires: Option<Millis>,
    /// How long ago it last renewed its heartbeat (nodes only).
    pub heartbeat_age_ms: Option<u64>,
    /// Whether the answering process could ask it (itself included).
    pub reachable: bool,
    /// The events it serves (on `GET /api/ops/nodes/{node}` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serves: Option<Vec<EventId>>,
    /// Whether placement may put events on it (on `GET .../{node}` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placeable: Option<bool>,
}

/// `GET /api/ops/nodes`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeList {
    /// The process that answered.
    pub answered_by: String,
    pub nodes: Vec<NodeEntry>,
}

/// One event of the cluster, from the store (lease) and its owner
/// (numbers); the numbers are `None` when no node serves it now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventEntry {
    pub event: EventId,
    pub name: String,
    pub city: String,
    pub starts_at: Millis,
    pub sale: Option<SaleState>,
    /// The node holding a live lease, its epoch and the lease's expiry.
    pub owner: Option<String>,
    pub epoch: Option<u64>,
    pub lease_expires: Option<Millis>,
    /// Where placement puts it among the placeable nodes now.
    pub desired: Option<String>,
    pub capacity: Option<u32>,
    pub sold: Option<u32>,
    pub held: Option<u32>,
    pub waiting: Option<u64>,
    pub full: Option<bool>,
    pub admitted_through: Option<Position>,
}

/// `GET /api/ops/events`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventEntryList {
    pub events: Vec<EventEntry>,
}

/// An event's lease as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseInfo {
    pub node: String,
    pub epoch: u64,
    pub expires: Millis,
}

/// `GET /api/ops/events/{event}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventDescription {
    pub event: EventId,
    pub name: String,
    pub city: String,
    pub starts_at: Millis,
    /// The stored lease, live or expired (`None` if never owned).
    pub lease: Option<LeaseInfo>,
    /// Placement's first choice, and its whole ranking of the placeable nodes.
    pub desired: Option<String>,
    pub ranking: Vec<String>,
    /// The owner's overview; `None` when no node serves it now.
    pub overview: Option<EventOverview>,
}

/// The store as the answering process found it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StoreHealth {
    pub backend: String,
    pub ok: bool,
    /// How long one read (the live nodes) took.
    pub latency_ms: f64,
    pub error: Option<String>,
}

/// `GET /api/ops/cluster`: the answering process's own view.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClusterView {
    pub node: String,
    pub owns_events: bool,
    /// Processes it has a mesh session with.
    pub peers: Vec<String>,
    /// Nodes it would place events on.
    pub placeable: Vec<String>,
    /// Events it serves itself.
    pub serves: Vec<EventId>,
    pub store: StoreHealth,
}
