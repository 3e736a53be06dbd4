//! `cluster status`, `cluster health` and `placement`.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::api::{self, ClusterView, EventEntry, EventList, NodeEntry, NodeList};
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
        ClusterCommand::Health => health(client, out),
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

fn count_by<'a>(items: impl Iterator<Item = &'a str>) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for item in items {
        *counts.entry(item.to_owned()).or_insert(0) += 1;
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
        self.nodes.nodes.iter().filter(|n| n.role != "gateway")
    }

    /// Why the cluster is not healthy; empty when it is.
    fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for node in &self.nodes.nodes {
            if node.state == "gone" {
                problems.push(format!("node {} is gone", node.node));
            } else if !node.reachable {
                problems.push(format!(
                    "node {} is not reachable from {}",
                    node.node, self.nodes.answered_by
                ));
            }
        }
        if self.owners().all(|n| n.state == "gone") {
            problems.push("no node that owns events is up".to_owned());
        }
        match &self.view.store {
            Some(store) if !store.ok => problems.push(format!(
                "store {} is failing: {}",
                store.backend,
                store.error.as_deref().unwrap_or("no detail")
            )),
            _ => {}
        }
        problems
    }

    fn leases(&self) -> (u64, u64, Option<u64>, Option<u64>) {
        let live: Vec<u64> = self
            .events
            .iter()
            .filter(|e| e.owner.is_some())
            .filter_map(|e| e.lease_expires)
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
        let up = owners.iter().filter(|n| n.state != "gone").count();
        let by_state = count_by(self.nodes.nodes.iter().map(|n| n.state.as_str()));
        let by_sale = count_by(
            self.events
                .iter()
                .map(|e| e.sale.as_deref().unwrap_or("not_served")),
        );
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
            "store": self.view.store.as_ref().map(|s| json!({
                "backend": s.backend, "ok": s.ok, "latency_ms": s.latency_ms, "error": s.error})),
        });
        let store = match &self.view.store {
            Some(s) if s.ok => format!(
                "{} ok ({} ms)",
                s.backend,
                s.latency_ms.map_or("-".to_owned(), |l| format!("{l:.1}"))
            ),
            Some(s) => format!(
                "{} FAILING: {}",
                s.backend,
                s.error.as_deref().unwrap_or("no detail")
            ),
            None => "unknown (the server does not report it)".to_owned(),
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

fn health(client: &Client, out: Out) -> Result<()> {
    let status = status(client)?;
    let problems = status.problems();
    if out.json() {
        out.document(&json!({"healthy": problems.is_empty(), "problems": problems,
                             "answered_by": status.nodes.answered_by}));
    } else if problems.is_empty() {
        let up = status.owners().count();
        println!("healthy: {up}/{up} nodes up, answered by {}", status.nodes.answered_by);
    } else {
        println!("unhealthy: {}", problems.join("; "));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(CtlError::new(
            crate::error::Kind::Error,
            "unhealthy",
            format!("the cluster is unhealthy ({} problems)", problems.len()),
        ))
    }
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
            .map(|e| json!({"event": e.event, "name": e.name, "owner": e.owner,
                            "desired": e.desired, "placement": placed(e)}))
            .collect();
        out.document(&json!({"events": rows}));
        return Ok(());
    }
    let mut table = Table::new(&["EVENT", "NAME", "OWNER", "DESIRED", "PLACEMENT"]);
    for e in shown {
        table.row(vec![
            e.event.to_string(),
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

    fn node(name: &str, role: &str, state: &str, reachable: bool) -> NodeEntry {
        NodeEntry {
            node: name.into(),
            role: role.into(),
            state: state.into(),
            reachable,
            ..NodeEntry::default()
        }
    }

    fn status(nodes: Vec<NodeEntry>) -> Status {
        Status {
            view: ClusterView::default(),
            nodes: NodeList {
                answered_by: "n0".into(),
                nodes,
            },
            events: Vec::new(),
            now_ms: 0,
        }
    }

    #[test]
    fn a_gone_or_unreachable_node_is_unhealthy() {
        let healthy = status(vec![
            node("g0", "gateway", "up", true),
            node("n0", "node", "up", true),
            node("n1", "node", "cordoned", true),
        ]);
        assert!(healthy.problems().is_empty());
        let gone = status(vec![
            node("n0", "node", "up", true),
            node("n1", "node", "gone", false),
        ]);
        assert_eq!(gone.problems(), vec!["node n1 is gone".to_owned()]);
        let cut = status(vec![node("n0", "node", "up", false)]);
        assert_eq!(cut.problems().len(), 1);
    }

    #[test]
    fn placement_compares_owner_and_desired() {
        let mut e = EventEntry {
            owner: Some("n1".into()),
            desired: Some("n1".into()),
            ..EventEntry::default()
        };
        assert_eq!(placed(&e), "ok");
        e.desired = Some("n2".into());
        assert_eq!(placed(&e), "misplaced");
        e.owner = None;
        assert_eq!(placed(&e), "unowned");
    }
}
