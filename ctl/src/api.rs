//! The operator API's answers, as `schema` defines them (`schema::ops` for
//! the cluster views, `schema::message` for overviews and audits): one
//! definition for the server and the CLI.

use serde::Serialize;
use serde_json::Value;

pub use onsale_schema::SaleState;
pub use onsale_schema::message::{Audit, EventOverview as Overview};
pub use onsale_schema::ops::{
    ClusterView, EventDescription as EventDetail, EventEntry, EventEntryList as EventList,
    NodeEntry, NodeList, NodeRole, NodeState,
};

use crate::error::{CtlError, Result};

/// Decode an answer into `T`, naming the route when it does not fit.
pub fn decode<T: serde::de::DeserializeOwned>(value: Value, what: &str) -> Result<T> {
    serde_json::from_value(value)
        .map_err(|e| CtlError::other(format!("unexpected answer for {what}: {e}")))
}

/// A unit enum's wire name (`NodeState::Up` → "up").
pub fn name<T: Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(Value::String(name)) => name,
        _ => "?".to_owned(),
    }
}

/// The sale states an event can be in, as the API spells them.
pub const SALE_STATES: [&str; 5] = ["scheduled", "on_sale", "paused", "sold_out", "closed"];

#[cfg(test)]
pub mod testing {
    //! Answers as the contract's examples show them, for unit tests.
    use super::*;
    use onsale_schema::ids::Millis;

    pub fn node(name: &str, role: NodeRole, state: NodeState, reachable: bool) -> NodeEntry {
        NodeEntry {
            node: name.into(),
            addr: None,
            role,
            state,
            cordoned: false,
            draining: false,
            events: None,
            fans: None,
            heartbeat_expires: None,
            heartbeat_age_ms: None,
            reachable,
            serves: None,
            placeable: None,
        }
    }

    pub fn event(id: u64) -> EventEntry {
        EventEntry {
            event: onsale_schema::EventId(id),
            name: format!("Event {id}"),
            city: "Loopback".into(),
            starts_at: Millis(1_796_000_000_000),
            sale: None,
            owner: None,
            epoch: None,
            lease_expires: None,
            desired: None,
            capacity: None,
            sold: None,
            held: None,
            waiting: None,
            full: None,
            admitted_through: None,
        }
    }
}

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
        assert_eq!(name(&nodes.nodes[1].role), "gateway");
        assert_eq!(name(&NodeState::Drained), "drained");
    }
}
