//! `cluster status`, `cluster health` and `placement`.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::api::{
    self, ClusterView, EventEntry, EventList, NodeEntry, NodeList, NodeRole, NodeState,
};
use crate::cli::ClusterCommand;
use crate::client::Client;
use crate::error::{CtlError, Result};
use crate::output::{Out, Table, cell, pairs};
use crate::timefmt;
use crate::watch::{self, View};

pub fn run(client: &Client, out: Out, command: &ClusterCommand) -> Result<()> {
    match command {
        ClusterCommand::Status { watch } => {
            watch::run(out, watch, || status(client).map(|s| s.view(out)))
        }
        ClusterCommand::Health { expect_nodes } => health(client, out, *expect_nodes),
    }
}

pub fn nodes(client: &Client) -> Result<NodeList> {
    api::decode(client.get("/api/ops/nodes")?, "GET /api/ops/nodes")
}

pub fn events(client: &Client, query: &str) -> Result<EventList> {
    let path = format!("/api/ops/events{query}");
    api::decode(client.get(&path)?, "GET /api/ops/events")
}

fn cluster_view(client: &Client) -> Result<ClusterView> {
    api::decode(client.get("/api/ops/cluster")?, "GET /api/ops/cluster")
}

/// Everything `cluster status` and `cluster health` look at.
#[derive(Debug)]
struct Status {
    view: ClusterView,
    nodes: NodeList,
    events: Vec<EventEntry>,
    now_ms: u64,
}

fn status(client: &Client) -> Result<Status> {
    let view = cluster_view(client)?;
    let nodes = nodes(client)?;
    let events = events(client, "")?.events;
    Ok(Status {
        view,
        nodes,
        events,
        now_ms: timefmt::now_ms(),
    })
}

fn count_by(items: impl Iterator<Item = String>) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for item in items {
        *counts.entry(item).or_insert(0) += 1;
    }
    counts
}

fn spelled(counts: &BTreeMap<String, u64>) -> String {
    counts
        .iter()
        .map(|(k, v)| format!("{v} {k}"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Status {
    /// Nodes that own events (role "node"), and the gateways.
    fn owners(&self) -> impl Iterator<Item = &NodeEntry> {
        self.nodes
            .nodes
            .iter()
            .filter(|n| n.role != NodeRole::Gateway)
    }

    /// Why the cluster is not healthy; empty when it is.
    fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for node in &self.nodes.nodes {
            if node.state == NodeState::Gone {
                problems.push(format!("node {} is gone", node.node));
            } else if !node.reachable {
                problems.push(format!(
                    "node {} is not reachable from {}",
                    node.node, self.nodes.answered_by
                ));
            }
        }
        if self.owners().all(|n| n.state == NodeState::Gone) {
            problems.push("no node that owns events is up".to_owned());
        }
        let store = &self.view.store;
        if !store.ok {
            problems.push(format!(
                "store {} is failing: {}",
                store.backend,
                store.error.as_deref().unwrap_or("no detail")
            ));
        }
        problems
    }

    fn leases(&self) -> (u64, u64, Option<u64>, Option<u64>) {
        let live: Vec<u64> = self
            .events
            .iter()
            .filter(|e| e.owner.is_some())
            .filter_map(|e| e.lease_expires.map(|t| t.0))
            .collect();
        let missing = self.events.iter().filter(|e| e.owner.is_none()).count() as u64;
        (
            live.len() as u64,
            missing,
            live.iter().min().copied(),
            live.iter().max().copied(),
        )
    }

    fn view(&self, out: Out) -> View {
        let owners: Vec<&NodeEntry> = self.owners().collect();
        let up = owners.iter().filter(|n| n.state != NodeState::Gone).count();
        let by_state = count_by(self.nodes.nodes.iter().map(|n| api::name(&n.state)));
        let by_sale = count_by(self.events.iter().map(|e| {
            e.sale
                .map_or("not_served".to_owned(), |s| s.as_str().to_owned())
        }));
        let (live, missing, first, last) = self.leases();
        let gateways = self.nodes.nodes.len() - owners.len();
        let problems = self.problems();
        let json = json!({
            "time": self.now_ms,
            "answered_by": self.nodes.answered_by,
            "healthy": problems.is_empty(),
            "problems": problems,
            "nodes": {"up": up, "total": owners.len(), "gateways": gateways, "by_state": by_state},
            "events": {"total": self.events.len(), "by_sale": by_sale},
            "leases": {"live": live, "without_owner": missing,
                       "first_expires": first, "last_expires": last},
            "store": self.view.store,
            "placeable": self.view.placeable,
            "peers": self.view.peers,
        });
        let s = &self.view.store;
        let store = if s.ok {
            format!("{} ok (a read took {:.1} ms)", s.backend, s.latency_ms)
        } else {
            format!(
                "{} FAILING: {}",
                s.backend,
                s.error.as_deref().unwrap_or("no detail")
            )
        };
        let lease_line = match (first, last) {
            (Some(first), Some(last)) => format!(
                "{live} live, {missing} events without owner; renewals due {} .. {}",
                timefmt::relative(first, self.now_ms),
                timefmt::relative(last, self.now_ms)
            ),
            _ => format!("{live} live, {missing} events without owner"),
        };
        let mut rows = vec![
            ("answered by", self.nodes.answered_by.clone()),
            (
                "health",
                if problems.is_empty() {
                    "healthy".to_owned()
                } else {
                    format!("UNHEALTHY: {}", problems.join("; "))
                },
            ),
            (
                "nodes",
                format!("{up}/{} up ({})", owners.len(), spelled(&by_state)),
            ),
            ("gateways", gateways.to_string()),
            (
                "events",
                format!("{} ({})", self.events.len(), spelled(&by_sale)),
            ),
            ("leases", lease_line),
            ("store", store),
        ];
        if out.wide() {
            rows.push(("placeable", self.view.placeable.join(", ")));
            rows.push(("peers of answerer", self.view.peers.join(", ")));
        }
        View {
            json,
            table: pairs(&rows),
        }
    }
}

/// Healthy: every node the answering process knows of is up and
/// reachable, the store answers, every endpoint given answers `/healthz`,
/// and at least `expect_nodes` nodes are up. The endpoint check is what
/// notices a node that died and whose heartbeat has expired: the server
/// lists only live, flagged or connected nodes.
fn health(client: &Client, out: Out, expect_nodes: Option<usize>) -> Result<()> {
    let status = status(client)?;
    let mut problems = status.problems();
    problems.extend(client.unhealthy_endpoints());
    let up = status
        .owners()
        .filter(|n| n.state != NodeState::Gone)
        .count();
    if let Some(expected) = expect_nodes
        && up < expected
    {
        problems.push(format!("{up} nodes up, {expected} expected"));
    }
    if out.json() {
        out.document(
            &json!({"healthy": problems.is_empty(), "problems": problems,
                             "nodes_up": up, "answered_by": status.nodes.answered_by}),
        );
    } else if problems.is_empty() {
        println!(
            "healthy: {up} nodes up, every endpoint answers, answered by {}",
            status.nodes.answered_by
        );
    } else {
        println!("unhealthy: {}", problems.join("; "));
    }
    if problems.is_empty() {
        return Ok(());
    }
    Err(CtlError::new(
        crate::error::Kind::Error,
        "unhealthy",
        format!("the cluster is unhealthy: {}", problems.join("; ")),
    ))
}

/// One row of `placement`.
fn placed(event: &EventEntry) -> &'static str {
    match (&event.owner, &event.desired) {
        (None, _) => "unowned",
        (Some(owner), Some(desired)) if owner == desired => "ok",
        (Some(_), None) => "no desired node",
        (Some(_), Some(_)) => "misplaced",
    }
}

pub fn placement(client: &Client, out: Out, diff: bool) -> Result<()> {
    let events = events(client, "")?.events;
    let shown: Vec<&EventEntry> = events
        .iter()
        .filter(|e| !diff || placed(e) != "ok")
        .collect();
    if out.json() {
        let rows: Vec<Value> = shown
            .iter()
            .map(|e| {
                json!({"event": e.event.0, "name": e.name, "owner": e.owner,
                            "desired": e.desired, "placement": placed(e)})
            })
            .collect();
        out.document(&json!({"events": rows}));
        return Ok(());
    }
    let mut table = Table::new(&["EVENT", "NAME", "OWNER", "DESIRED", "PLACEMENT"]);
    for e in shown {
        table.row(vec![
            e.event.0.to_string(),
            e.name.clone(),
            cell(e.owner.as_ref()),
            cell(e.desired.as_ref()),
            placed(e).to_owned(),
        ]);
    }
    out.table(&table);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::testing::{event, node};
    use onsale_schema::ops::StoreHealth;

    fn status(nodes: Vec<NodeEntry>) -> Status {
        Status {
            view: ClusterView {
                node: "n0".into(),
                owns_events: true,
                peers: Vec::new(),
                placeable: Vec::new(),
                serves: Vec::new(),
                store: StoreHealth {
                    backend: "sqlite".into(),
                    ok: true,
                    latency_ms: 0.2,
                    error: None,
                },
            },
            nodes: NodeList {
                answered_by: "n0".into(),
                nodes,
            },
            events: Vec::new(),
            now_ms: 0,
        }
    }

    #[test]
    fn a_gone_or_unreachable_node_or_a_failing_store_is_unhealthy() {
        let healthy = status(vec![
            node("g0", NodeRole::Gateway, NodeState::Up, true),
            node("n0", NodeRole::Node, NodeState::Up, true),
            node("n1", NodeRole::Node, NodeState::Cordoned, true),
        ]);
        assert!(healthy.problems().is_empty());
        let gone = status(vec![
            node("n0", NodeRole::Node, NodeState::Up, true),
            node("n1", NodeRole::Node, NodeState::Gone, false),
        ]);
        assert_eq!(gone.problems(), vec!["node n1 is gone".to_owned()]);
        let cut = status(vec![node("n0", NodeRole::Node, NodeState::Up, false)]);
        assert_eq!(cut.problems().len(), 1);
        let mut failing = status(vec![node("n0", NodeRole::Node, NodeState::Up, true)]);
        failing.view.store.ok = false;
        assert_eq!(failing.problems().len(), 1);
    }

    #[test]
    fn placement_compares_owner_and_desired() {
        let mut e = event(1);
        e.owner = Some("n1".into());
        e.desired = Some("n1".into());
        assert_eq!(placed(&e), "ok");
        e.desired = Some("n2".into());
        assert_eq!(placed(&e), "misplaced");
        e.owner = None;
        assert_eq!(placed(&e), "unowned");
    }
}
