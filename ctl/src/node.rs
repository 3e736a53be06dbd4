//! `node list | describe | cordon | uncordon | drain`.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::api::{self, NodeEntry};
use crate::cli::NodeCommand;
use crate::client::Client;
use crate::error::{CtlError, Result};
use crate::output::{Out, Table, cell, pairs, time_cell};
use crate::timefmt;
use crate::watch::{self, View};

/// How often a blocking drain asks how far it got.
const DRAIN_POLL: Duration = Duration::from_millis(500);

pub fn run(client: &Client, out: Out, command: &NodeCommand) -> Result<()> {
    match command {
        NodeCommand::List { watch } => watch::run(out, watch, || list(client, out)),
        NodeCommand::Describe { node } => {
            let (entry, raw) = get(client, node)?;
            show_one(out, &entry, &raw);
            Ok(())
        }
        NodeCommand::Cordon { node } => flag(client, out, node, "cordon"),
        NodeCommand::Uncordon { node } => flag(client, out, node, "uncordon"),
        NodeCommand::Drain {
            node,
            deadline,
            detach,
        } => drain(
            client,
            out,
            node,
            timefmt::parse_duration(deadline)?,
            *detach,
        ),
    }
}

fn path(node: &str) -> String {
    format!("/api/ops/nodes/{}", encode(node))
}

/// Node names are plain words; percent-encode anything else for the path.
fn encode(segment: &str) -> String {
    let mut text = String::new();
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~@".contains(&byte) {
            text.push(char::from(byte));
        } else {
            text.push_str(&format!("%{byte:02X}"));
        }
    }
    text
}

fn get(client: &Client, node: &str) -> Result<(NodeEntry, Value)> {
    let raw = client.get(&path(node))?;
    Ok((api::decode(raw.clone(), "GET /api/ops/nodes/{node}")?, raw))
}

fn list(client: &Client, out: Out) -> Result<View> {
    let raw = client.get("/api/ops/nodes")?;
    let nodes: api::NodeList = api::decode(raw.clone(), "GET /api/ops/nodes")?;
    let mut json = raw;
    json["time"] = json!(timefmt::now_ms());
    Ok(View {
        json,
        table: table(&nodes.nodes, out.wide()).render(!out.no_headers),
    })
}

fn heartbeat(node: &NodeEntry) -> String {
    node.heartbeat_age_ms.map_or("-".to_owned(), timefmt::age)
}

fn table(nodes: &[NodeEntry], wide: bool) -> Table {
    let mut headers = vec![
        "NAME",
        "ADDRESS",
        "ROLE",
        "STATE",
        "EVENTS",
        "FANS",
        "HEARTBEAT",
    ];
    if wide {
        headers.extend(["REACHABLE", "CORDONED", "DRAINING", "HEARTBEAT EXPIRES"]);
    }
    let mut table = Table::new(&headers);
    for n in nodes {
        let mut row = vec![
            n.node.clone(),
            cell(n.addr.as_ref()),
            api::name(&n.role),
            api::name(&n.state),
            cell(n.events),
            cell(n.fans),
            heartbeat(n),
        ];
        if wide {
            row.extend([
                yes_no(n.reachable),
                yes_no(n.cordoned),
                yes_no(n.draining),
                time_cell(n.heartbeat_expires.map(|t| t.0)),
            ]);
        }
        table.row(row);
    }
    table
}

fn yes_no(flag: bool) -> String {
    if flag { "yes" } else { "no" }.to_owned()
}

fn show_one(out: Out, n: &NodeEntry, raw: &Value) {
    if out.json() {
        out.document(raw);
        return;
    }
    let serves = n.serves.as_ref().map(|s| {
        if s.is_empty() {
            "none".to_owned()
        } else {
            s.iter()
                .map(|e| e.0.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        }
    });
    print!(
        "{}",
        pairs(&[
            ("name", n.node.clone()),
            ("address", cell(n.addr.as_ref())),
            ("role", api::name(&n.role)),
            ("state", api::name(&n.state)),
            ("cordoned", yes_no(n.cordoned)),
            ("draining", yes_no(n.draining)),
            ("placeable", cell(n.placeable.map(yes_no))),
            ("reachable", yes_no(n.reachable)),
            ("events", cell(n.events)),
            ("serves", cell(serves)),
            ("fans", cell(n.fans)),
            ("heartbeat age", heartbeat(n)),
            (
                "heartbeat expires",
                time_cell(n.heartbeat_expires.map(|t| t.0))
            ),
        ])
    );
}

/// `cordon` / `uncordon`: the node entry after the change.
fn flag(client: &Client, out: Out, node: &str, action: &str) -> Result<()> {
    let raw = client.post(&format!("{}/{action}", path(node)), &json!({}))?;
    let entry: NodeEntry = api::decode(raw.clone(), "the node")?;
    if out.json() {
        out.document(&raw);
    } else {
        println!(
            "node {} {action}ed: state {}",
            entry.node,
            api::name(&entry.state)
        );
    }
    Ok(())
}

/// Drain progress as the operator sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Progress {
    node: String,
    state: String,
    /// Events the node served when the drain started.
    total: u64,
    /// Events it serves now.
    left: u64,
}

impl Progress {
    fn moved(&self) -> u64 {
        self.total.saturating_sub(self.left)
    }

    fn done(&self) -> bool {
        self.state == "drained" || self.left == 0
    }

    fn json(&self, elapsed: Duration) -> Value {
        json!({"node": self.node, "state": self.state, "events_total": self.total,
               "events_moved": self.moved(), "events_left": self.left,
               "elapsed_ms": u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
               "time": timefmt::now_ms()})
    }

    /// `[#########-----------] 3/7 moved`.
    fn bar(&self, width: usize) -> String {
        let filled = (self.moved() * width as u64)
            .checked_div(self.total)
            .map_or(width, |f| usize::try_from(f).unwrap_or(width))
            .min(width);
        format!(
            "[{}{}] {}/{} events moved",
            "#".repeat(filled),
            "-".repeat(width - filled),
            self.moved(),
            self.total
        )
    }
}

fn drain(client: &Client, out: Out, node: &str, deadline: Duration, detach: bool) -> Result<()> {
    let started = Instant::now();
    let entry: NodeEntry = api::decode(
        client.post(&format!("{}/drain", path(node)), &json!({}))?,
        "the node",
    )?;
    let mut progress = Progress {
        node: entry.node.clone(),
        state: api::name(&entry.state),
        total: u64::from(entry.events.unwrap_or(0)),
        left: u64::from(entry.events.unwrap_or(0)),
    };
    let bar = !out.json() && std::io::stderr().is_terminal();
    report(out, bar, &progress, started.elapsed());
    if detach {
        if !out.json() {
            println!(
                "node {} is {}: {} events to move (follow with `onsalectl node describe {}`)",
                progress.node, progress.state, progress.left, progress.node
            );
        }
        return Ok(());
    }
    while !progress.done() {
        if started.elapsed() >= deadline {
            if bar {
                eprintln!();
            }
            return Err(CtlError::timed_out(format!(
                "node {} still serves {} events after {}; the drain goes on (see `onsalectl node describe {}`)",
                progress.node,
                progress.left,
                timefmt::age(u64::try_from(deadline.as_millis()).unwrap_or(u64::MAX)),
                progress.node
            )));
        }
        std::thread::sleep(DRAIN_POLL.min(deadline.saturating_sub(started.elapsed())));
        let (now, _) = get(client, node)?;
        let next = Progress {
            state: api::name(&now.state),
            left: now.events.map_or(progress.left, u64::from),
            total: progress.total.max(u64::from(now.events.unwrap_or(0))),
            ..progress.clone()
        };
        if next != progress {
            progress = next;
            report(out, bar, &progress, started.elapsed());
        }
    }
    if bar {
        eprintln!();
    }
    if !out.json() {
        println!(
            "node {} drained: {} events moved in {}",
            progress.node,
            progress.moved(),
            timefmt::age(u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX))
        );
    }
    Ok(())
}

fn report(out: Out, bar: bool, progress: &Progress, elapsed: Duration) {
    if out.json() {
        out.line(&progress.json(elapsed));
    } else if bar {
        let mut stderr = std::io::stderr().lock();
        let _ = write!(
            stderr,
            "\r\x1b[2Kdraining {} {}",
            progress.node,
            progress.bar(30)
        );
        let _ = stderr.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_names_are_encoded_in_paths() {
        assert_eq!(path("n1"), "/api/ops/nodes/n1");
        assert_eq!(
            path("node@10.0.0.2:7070"),
            "/api/ops/nodes/node@10.0.0.2%3A7070"
        );
        assert_eq!(path("a b/c"), "/api/ops/nodes/a%20b%2Fc");
    }

    #[test]
    fn drain_progress_counts_moved_events() {
        let p = Progress {
            node: "n1".into(),
            state: "draining".into(),
            total: 4,
            left: 1,
        };
        assert_eq!(p.moved(), 3);
        assert!(!p.done());
        assert_eq!(p.bar(8), "[######--] 3/4 events moved");
        let j = p.json(Duration::from_millis(1500));
        assert_eq!(j["events_left"], 1);
        assert_eq!(j["elapsed_ms"], 1500);
        let empty = Progress {
            total: 0,
            left: 0,
            ..p
        };
        assert!(empty.done());
        assert_eq!(empty.bar(4), "[####] 0/0 events moved");
    }

    #[test]
    fn the_node_table_has_the_issue_columns() {
        let mut n = crate::api::testing::node("n1", api::NodeRole::Node, api::NodeState::Up, true);
        n.addr = Some("127.0.0.11:7100".into());
        n.events = Some(3);
        n.fans = Some(120);
        n.heartbeat_age_ms = Some(230);
        let text = table(&[n], false).render(true);
        assert_eq!(
            text,
            "NAME   ADDRESS           ROLE   STATE   EVENTS   FANS   HEARTBEAT\n\
             n1     127.0.0.11:7100   node   up      3        120    230ms\n"
        );
    }
}
