//! Mesh cost: commands from a gateway-role node in this process to an
//! event owned by an `onsale --role node` process, over the mesh, against
//! the same commands to an event owned in process.
//!
//!     cargo bench -p onsale-tests --bench mesh
//!
//! For each path: throughput with 512 callers in a closed loop for 3 s,
//! then latency at a fixed 10,000 commands/s for 3 s (open loop: each
//! command is started on schedule, whatever the others do). The command
//! is `status` for a fan not in line: the event's cheapest read, so what
//! is measured is the path, not the event. Both processes share this
//! machine's cores; `ONSALE_BENCH_PIN=1` pins the node process to CPU 0
//! and this process to CPU 1 (`taskset`).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use onsale_cluster::node::Node;
use onsale_cluster::store::Store;
use onsale_cluster::store::sqlite::SqliteStore;
use onsale_schema::message::{Command, Reply, SaleCommand};
use onsale_schema::{EventConfig, EventId, FanId};
use onsale_tests::{NodeProcess, bench, free_port, scratch_dir, spec, venue_json};

const COOKIE: &str = "mesh bench cookie, shared by the cluster";
const CALLERS: usize = 512;
const PHASE: Duration = Duration::from_secs(3);
const RATE: u64 = 10_000;

fn main() -> anyhow::Result<()> {
    let pin = std::env::var("ONSALE_BENCH_PIN").is_ok_and(|v| v == "1");
    let dir = scratch_dir("mesh-bench");
    let store_path = dir.join("bench.db");
    let cookie = dir.join("cookie");
    bench::write_cookie(&cookie, COOKIE)?;
    let node_addr = format!("127.0.0.11:{}", free_port());
    let args: Vec<String> = [
        "--cluster-listen",
        &node_addr,
        "--cookie-file",
        &cookie.display().to_string(),
        "--node-id",
        "owner",
        "--role",
        "node",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    let node = NodeProcess::start_with(&store_path, &node_addr, &args, "onsale mesh owner on")?;
    if pin {
        bench::pin_to(node.pid().expect("running"), "0");
        bench::pin_to(std::process::id(), "1");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let remote =
            bench::mesh_gateway(&store_path, "127.0.0.21", std::slice::from_ref(&node_addr), &cookie).await?;
        let local = local_node(&dir.join("local.db")).await?;
        for (node, event) in [(&remote, EventId(1)), (&local, EventId(2))] {
            let created = node
                .create_event(spec(event.0, venue_json(2, 4, 10), EventConfig::default()))
                .await;
            anyhow::ensure!(matches!(created, Reply::Overview { .. }), "create: {created:?}");
            let opened = node
                .call(event, Command::Sale { command: SaleCommand::Open })
                .await;
            anyhow::ensure!(matches!(opened, Reply::Sale { .. }), "open: {opened:?}");
        }
        println!("mesh cost: `status` commands, {CALLERS} callers / {RATE} per s, {PHASE:?} each{}",
            if pin { ", node pinned to CPU 0, bench to CPU 1" } else { ", unpinned" });
        for (name, node, event) in [("in process", &local, EventId(2)), ("over the mesh", &remote, EventId(1))] {
            let throughput = closed_loop(node, event).await;
            let latency = open_loop(node, event).await;
            println!(
                "{name:>14}: {throughput:>9.0} commands/s closed loop | at {RATE}/s: p50 {:>6} us, p99 {:>6} us, max {:>6} us, {} not ok",
                latency.p50_us, latency.p99_us, latency.max_us, latency.failed
            );
        }
        anyhow::Ok(())
    })?;
    drop(node);
    Ok(())
}

/// A node owning its events in this process (no mesh).
async fn local_node(store: &Path) -> anyhow::Result<Node> {
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(store)?);
    Node::start(bench::node_config("bench-local", store, true))
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))
}

fn status(i: u64) -> Command {
    Command::Status {
        fan: FanId(1_000_000 + i % 100_000),
    }
}

fn ok(reply: &Reply) -> bool {
    matches!(reply, Reply::Status { .. })
}

async fn closed_loop(node: &Node, event: EventId) -> f64 {
    let done = Arc::new(AtomicU64::new(0));
    let until = Instant::now() + PHASE;
    let started = Instant::now();
    let mut callers = Vec::new();
    for c in 0..CALLERS as u64 {
        let (node, done) = (node.clone(), Arc::clone(&done));
        callers.push(tokio::spawn(async move {
            let mut i = c;
            while Instant::now() < until {
                if ok(&node.call(event, status(i)).await) {
                    done.fetch_add(1, Ordering::Relaxed);
                }
                i += CALLERS as u64;
            }
        }));
    }
    for caller in callers {
        let _ = caller.await;
    }
    done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

struct Latency {
    p50_us: u64,
    p99_us: u64,
    max_us: u64,
    failed: usize,
}

async fn open_loop(node: &Node, event: EventId) -> Latency {
    let total = RATE * PHASE.as_secs();
    let every = Duration::from_nanos(1_000_000_000 / RATE);
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut calls = Vec::with_capacity(total as usize);
    for i in 0..total {
        tick.tick().await;
        let node = node.clone();
        let sent = Instant::now();
        calls.push(tokio::spawn(async move {
            let reply = node.call(event, status(i)).await;
            (sent.elapsed().as_micros() as u64, ok(&reply))
        }));
    }
    let mut micros = Vec::with_capacity(calls.len());
    let mut failed = 0;
    for call in calls {
        match call.await {
            Ok((us, true)) => micros.push(us),
            _ => failed += 1,
        }
    }
    micros.sort_unstable();
    Latency {
        p50_us: bench::quantile(&micros, 0.50),
        p99_us: bench::quantile(&micros, 0.99),
        max_us: micros.last().copied().unwrap_or(0),
        failed,
    }
}
