//! What the cluster benchmarks share: node configs, an in-process gateway
//! on the mesh, CPU pinning, percentiles.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use onsale_actors::provider::{Provider, SimulatedProvider};
use onsale_cluster::mesh::{Mesh, MeshConfig};
use onsale_cluster::node::{Node, NodeConfig};
use onsale_cluster::store::sqlite::SqliteStore;
use onsale_cluster::store::{NodeId, Store};
use onsale_schema::message::{Area, Command, HoldRequest, PaymentSettled, ProviderAnswer, Reply};
use onsale_schema::token::TokenKey;
use onsale_schema::{EventId, FanId};

use crate::free_port;

/// Write a cluster cookie file (mode 0600).
pub fn write_cookie(path: &Path, cookie: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, cookie)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(())
}

/// A node's config for an in-process bench node.
#[must_use]
pub fn node_config(name: &str, store: Arc<dyn Store>, owns_events: bool) -> NodeConfig {
    NodeConfig {
        node: NodeId(name.into()),
        addr: "127.0.0.1:1".into(),
        owns_events,
        store,
        key: TokenKey::derive(b"mesh bench token key"),
        provider: Provider::Simulated(SimulatedProvider::default()),
        lease_ttl_ms: 3_000,
        snapshot_every_records: 1_000,
        payment_query_after_ms: 10_000,
    }
}

/// A gateway-role node in this process on `host`, on the mesh with the
/// nodes at `seeds`; ready once it has a session with each of them.
pub async fn mesh_gateway(
    store: &Path,
    host: &str,
    seeds: &[String],
    cookie: &Path,
) -> anyhow::Result<Node> {
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(store)?);
    let node = Node::start(node_config("bench-gateway", store, false))
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mesh = Mesh::start(
        MeshConfig {
            listen: format!("{host}:{}", free_port()).parse()?,
            seeds: seeds.to_vec(),
            cookie: std::fs::read_to_string(cookie)?,
            gateway: false,
            tls: None,
        },
        node.clone(),
    )
    .await
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    node.attach_mesh(mesh.clone());
    let deadline = Instant::now() + Duration::from_secs(10);
    while mesh.peers().len() < seeds.len() || node.placeable().len() < seeds.len() {
        anyhow::ensure!(Instant::now() < deadline, "no mesh session with every node");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(node)
}

/// Pin every thread of `pid` to `cpus` (a `taskset` list, e.g. "0" or "0-1").
pub fn pin_to(pid: u32, cpus: &str) {
    let _ = std::process::Command::new("taskset")
        .args(["-a", "-p", "-c", cpus, &pid.to_string()])
        .stdout(std::process::Stdio::null())
        .status();
}

/// The `q` quantile of sorted samples (0 if none).
#[must_use]
pub fn quantile(sorted: &[u64], q: f64) -> u64 {
    sorted
        .get(((sorted.len() as f64 * q) as usize).min(sorted.len().saturating_sub(1)))
        .copied()
        .unwrap_or(0)
}

/// What one buyer saw: sales, refusals, and command latencies (µs) kept
/// by the caller.
#[derive(Debug, Default)]
pub struct Seen {
    pub sold: u64,
    pub refused: u64,
    pub beside: Vec<u64>,
    pub elsewhere: Vec<u64>,
}

/// What a bench's buyers call an event through: an in-process gateway
/// node on the mesh, or the node RPC.
pub trait Caller: Sync {
    fn call_event(&self, event: EventId, command: Command) -> impl Future<Output = Reply> + Send;
}

impl Caller for Node {
    fn call_event(&self, event: EventId, command: Command) -> impl Future<Output = Reply> + Send {
        self.call(event, command)
    }
}

impl Caller for onsale_cluster::rpc::Client {
    async fn call_event(&self, event: EventId, command: Command) -> Reply {
        self.call(event, command)
            .await
            .unwrap_or_else(|e| Reply::error(onsale_schema::ErrorCode::Busy, e.to_string()))
    }
}

/// One fan's whole durable sale through `gateway` (join, hold the best
/// seat, submit the payment, the provider's confirmation delivered as a
/// command: a node started with `--provider webhook`), counted in `seen`;
/// the latency (µs) of each command it sent.
pub async fn sale(gateway: &impl Caller, event: EventId, fan: FanId, seen: &mut Seen) -> Vec<u64> {
    let mut times = Vec::with_capacity(4);
    let mut timed = async |command: Command| {
        let t = Instant::now();
        let reply = gateway.call_event(event, command).await;
        times.push(t.elapsed().as_micros() as u64);
        reply
    };
    if !matches!(timed(Command::Join { fan }).await, Reply::Joined { .. }) {
        seen.refused += 1;
        return times;
    }
    let request = HoldRequest::Best {
        count: 1,
        area: Area::Anywhere,
    };
    let Reply::HoldPlaced { placed } = timed(Command::Hold { fan, request }).await else {
        seen.refused += 1;
        return times;
    };
    let pay = Command::SubmitPayment {
        fan,
        hold: placed.hold,
    };
    let Reply::PaymentStarted { started } = timed(pay).await else {
        seen.refused += 1;
        return times;
    };
    let answer = Command::ProviderAnswer {
        payment: started.payment,
        answer: ProviderAnswer::Confirmed,
    };
    match timed(answer).await {
        Reply::PaymentSettled {
            settled: PaymentSettled::Sold { .. },
        } => seen.sold += 1,
        _ => seen.refused += 1,
    }
    times
}
