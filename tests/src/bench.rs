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
use onsale_schema::token::TokenKey;

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
