//! The operator API's answers as the CLI reads them (the contract in
//! docs/protocol.md). Lenient on purpose: unknown fields are ignored and
//! missing ones default, so a newer server does not break an older CLI.

use serde::Deserialize;
use serde_json::Value;

use crate::error::{CtlError, Result};

/// `GET /api/ops/nodes`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct NodeList {
    pub answered_by: String,
    pub nodes: Vec<NodeEntry>,
}

/// One node in `GET /api/ops/nodes` and `GET /api/ops/nodes/{node}`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct NodeEntry {
    pub node: String,
    pub addr: Option<String>,
    pub role: String,
    pub state: String,
    pub cordoned: bool,
    pub draining: bool,
    pub events: Option<u64>,
    pub fans: Option<u64>,
    pub heartbeat_expires: Option<u64>,
    pub heartbeat_age_ms: Option<u64>,
    pub reachable: bool,
    /// Only in `GET /api/ops/nodes/{node}`.
    pub serves: Option<Vec<u64>>,
    /// Only in `GET /api/ops/nodes/{node}`.
    pub placeable: Option<bool>,
}

/// `GET /api/ops/events`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct EventList {
    pub events: Vec<EventEntry>,
}

/// One event in `GET /api/ops/events`. The sale's numbers are `None` when
/// the event is not served now.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct EventEntry {
    pub event: u64,
    pub name: String,
    pub city: String,
    pub starts_at: Option<u64>,
    pub sale: Option<String>,
    pub owner: Option<String>,
    pub epoch: Option<u64>,
    pub lease_expires: Option<u64>,
    pub desired: Option<String>,
    pub capacity: Option<u64>,
    pub sold: Option<u64>,
    pub held: Option<u64>,
    pub waiting: Option<u64>,
    pub full: Option<bool>,
    pub admitted_through: Option<u64>,
}

/// `GET /api/ops/events/{event}`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct EventDetail {
    pub event: u64,
    pub name: String,
    pub city: String,
    pub starts_at: Option<u64>,
    pub lease: Option<Lease>,
    pub desired: Option<String>,
    pub ranking: Vec<String>,
    pub overview: Option<Overview>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct Lease {
    pub node: String,
    pub epoch: u64,
    pub expires: u64,
}

/// An event's live overview (`GET .../stats` and inside the detail).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct Overview {
    pub event: u64,
    pub sale: String,
    pub capacity: u64,
    pub sold: u64,
    pub held: u64,
    pub waiting: u64,
    pub full: bool,
    pub admitted_through: u64,
}

/// `GET /api/ops/cluster`: the answering process's own view.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct ClusterView {
    pub node: String,
    pub owns_events: bool,
    pub peers: Vec<String>,
    pub placeable: Vec<String>,
    pub serves: Vec<u64>,
    pub store: Option<StoreHealth>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct StoreHealth {
    pub backend: String,
    pub ok: bool,
    pub latency_ms: Option<f64>,
    pub error: Option<String>,
}

/// `GET .../audit` → `{"reply":"audit","audit":{..}}`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct Audit {
    pub problem: Option<String>,
    pub journal_seq: u64,
    pub next_position: u64,
    pub orders: Vec<Order>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct Order {
    pub order: u64,
    pub seats: Vec<u64>,
}

/// Decode an answer into `T`, naming the route when it does not fit.
pub fn decode<T: serde::de::DeserializeOwned>(value: Value, what: &str) -> Result<T> {
    serde_json::from_value(value)
        .map_err(|e| CtlError::other(format!("unexpected answer for {what}: {e}")))
}

/// The sale states an event can be in, as the API spells them.
pub const SALE_STATES: [&str; 5] = ["scheduled", "on_sale", "paused", "sold_out", "closed"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_contracts_examples_decode() {
        let nodes: NodeList = decode(
            serde_json::json!({"answered_by":"n1",
             "nodes":[{"node":"n1","addr":"127.0.0.11:7100","role":"node","state":"up",
               "cordoned":false,"draining":false,"events":3,"fans":120,
               "heartbeat_expires":1796000000000u64,"heartbeat_age_ms":230,"reachable":true},
               {"node":"g1","addr":null,"role":"gateway","state":"up","cordoned":false,
               "draining":false,"events":null,"fans":null,"heartbeat_expires":null,
               "heartbeat_age_ms":null,"reachable":true}]}),
            "nodes",
        )
        .unwrap();
        assert_eq!(nodes.nodes[0].events, Some(3));
        assert_eq!(nodes.nodes[1].heartbeat_age_ms, None);
        let events: EventList = decode(
            serde_json::json!({"events":[{"event":1,"name":"Demo","city":"c","starts_at":1796000000000u64,
              "sale":"on_sale","owner":"n1","epoch":4,"lease_expires":1796000000000u64,
              "desired":"n2","capacity":100,"sold":3,"held":1,"waiting":20,"full":false,
              "admitted_through":12},
              {"event":2,"name":"x","city":"c","starts_at":1,"sale":null,"owner":null,"epoch":null,
               "lease_expires":null,"desired":"n1","capacity":null,"sold":null,"held":null,
               "waiting":null,"full":null,"admitted_through":null}]}),
            "events",
        )
        .unwrap();
        assert_eq!(events.events[0].admitted_through, Some(12));
        assert_eq!(events.events[1].owner, None);
        let detail: EventDetail = decode(
            serde_json::json!({"event":1,"name":"Demo","city":"c","starts_at":1,
              "lease":{"node":"n1","epoch":4,"expires":5},"desired":"n2","ranking":["n2","n1"],
              "overview":{"event":1,"sale":"on_sale","capacity":10,"sold":1,"held":0,"waiting":0,
              "full":false,"admitted_through":0,"sections":[]}}),
            "event",
        )
        .unwrap();
        assert_eq!(detail.lease.unwrap().epoch, 4);
        assert_eq!(detail.overview.unwrap().capacity, 10);
    }
}
