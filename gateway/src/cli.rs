//! Command line: run a node, or the deterministic demo.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::{Parser, ValueEnum};
use onsale_actors::provider::{Provider, SimulatedProvider};
use onsale_cluster::node::{Node, NodeConfig};
use onsale_cluster::store::faulty::{Faults, FaultyStore};
use onsale_cluster::store::{NodeId, Store, sqlite::SqliteStore};
use onsale_schema::token::TokenKey;

/// The onsale node.
///
/// With `--rpc ADDR` it runs a node: it owns the events in its store (the
/// embedded SQLite file given by `--store`), recovers them after a crash,
/// and serves the node RPC on ADDR. With `--demo` alone it runs a short
/// deterministic onsale through the event core and prints it as a table.
#[derive(Debug, Parser)]
#[command(version, about)]
pub struct Args {
    /// Run the deterministic demo onsale and print it as a table.
    #[arg(long)]
    demo: bool,
    /// Fans arriving in the demo's opening burst.
    #[arg(long, default_value_t = 3_000, value_parser = clap::value_parser!(u64).range(1..=200_000))]
    fans: u64,
    /// Seed for the demo's fan behaviour; the same seed prints the same table.
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Serve the node RPC here (e.g. 127.0.0.1:7070), running a node.
    #[arg(long, env = "ONSALE_RPC")]
    rpc: Option<std::net::SocketAddr>,
    /// The embedded store's file (SQLite, WAL mode; shared by the nodes of
    /// one host).
    #[arg(long, env = "ONSALE_STORE", default_value = "onsale.db")]
    store: PathBuf,
    /// This node's name in the cluster (default: `node@` + the RPC address,
    /// so that a node restarted in place takes its events back at once).
    #[arg(long, env = "ONSALE_NODE_ID")]
    node_id: Option<String>,
    /// How payments are charged.
    #[arg(long, env = "ONSALE_PROVIDER", value_enum, default_value_t = ProviderKind::Simulated)]
    provider: ProviderKind,
    /// Event lease time-to-live: how soon another node may take over the
    /// events of a node that died.
    #[arg(long, env = "ONSALE_LEASE_TTL_MS", default_value_t = 3_000,
          value_parser = clap::value_parser!(u64).range(300..=600_000))]
    lease_ttl_ms: u64,
    /// Journal records between an event's snapshots.
    #[arg(long, env = "ONSALE_SNAPSHOT_EVERY", default_value_t = onsale_actors::event_actor::SNAPSHOT_EVERY_RECORDS,
          value_parser = clap::value_parser!(u64).range(1..))]
    snapshot_every: u64,
    /// Fault injection (tests and drills): every store write sleeps this long.
    #[arg(
        long,
        env = "ONSALE_FAULT_WRITE_DELAY_MS",
        default_value_t = 0,
        hide = true
    )]
    fault_write_delay_ms: u64,
    /// Fault injection: every n-th store write fails without landing.
    #[arg(
        long,
        env = "ONSALE_FAULT_FAIL_EVERY",
        default_value_t = 0,
        hide = true
    )]
    fault_fail_every: u64,
    /// Fault injection: every n-th store write lands, then reports failure.
    #[arg(
        long,
        env = "ONSALE_FAULT_LAND_THEN_FAIL_EVERY",
        default_value_t = 0,
        hide = true
    )]
    fault_land_then_fail_every: u64,
    /// Address to serve HTTP on (the gateway is not built yet; accepted so
    /// that scripts can already pass it).
    #[arg(long)]
    listen: Option<std::net::SocketAddr>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum ProviderKind {
    /// The built-in simulated provider (latency, declines, silence).
    Simulated,
    /// An external provider answering through the webhook.
    Webhook,
}

pub fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("ONSALE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    if let Some(listen) = args.listen {
        tracing::warn!(%listen, "--listen ignored: the HTTP gateway is not built yet");
    }
    match (args.rpc, args.demo) {
        (Some(rpc), _) => run_node(&args, rpc),
        (None, true) => crate::demo::run(args.fans, args.seed, &mut std::io::stdout().lock()),
        (None, false) => bail!("nothing to do: pass --rpc ADDR to run a node, or --demo"),
    }
}

fn run_node(args: &Args, rpc: std::net::SocketAddr) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let sqlite = SqliteStore::open(&args.store)
        .with_context(|| format!("opening the store {}", args.store.display()))?;
    let faults = Faults {
        write_delay_ms: args.fault_write_delay_ms,
        fail_every: args.fault_fail_every,
        land_then_fail_every: args.fault_land_then_fail_every,
    };
    let store: Arc<dyn Store> = if faults == Faults::default() {
        Arc::new(sqlite)
    } else {
        tracing::warn!(?faults, "store fault injection is ON");
        Arc::new(FaultyStore::new(sqlite, faults))
    };
    let key = token_key(&args.store)?;
    let node = NodeId(
        args.node_id
            .clone()
            .unwrap_or_else(|| format!("node@{rpc}")),
    );
    let provider = match args.provider {
        ProviderKind::Simulated => Provider::Simulated(SimulatedProvider::default()),
        ProviderKind::Webhook => Provider::Webhook,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(rpc)
            .await
            .with_context(|| format!("binding the node RPC on {rpc}"))?;
        let config = NodeConfig {
            node: node.clone(),
            addr: rpc.to_string(),
            store,
            key,
            provider,
            lease_ttl_ms: args.lease_ttl_ms,
            snapshot_every_records: args.snapshot_every,
        };
        let node_handle = Node::start(config)
            .await
            .map_err(|e| anyhow::anyhow!("node failed to start: {e}"))?;
        tracing::info!(
            %node,
            %rpc,
            events = node_handle.owned().len(),
            ready_ms = started.elapsed().as_millis() as u64,
            "serving"
        );
        // Test drivers wait for this exact line on stdout.
        println!("onsale node {node} serving on {rpc}");
        onsale_cluster::rpc::serve(listener, node_handle).await;
        Ok(())
    })
}

/// The token signing key: `ONSALE_TOKEN_SECRET`, or a key file beside the
/// store, created from the OS's randomness the first time. Every node of a
/// cluster must use the same key, or queue tokens fail after a failover.
fn token_key(store: &Path) -> anyhow::Result<TokenKey> {
    if let Ok(secret) = std::env::var("ONSALE_TOKEN_SECRET") {
        if secret.len() < 16 {
            bail!("ONSALE_TOKEN_SECRET must be at least 16 bytes");
        }
        return Ok(TokenKey::derive(secret.as_bytes()));
    }
    let path = store.with_extension("key");
    if let Ok(bytes) = std::fs::read(&path) {
        let key: [u8; 32] = bytes
            .try_into()
            .map_err(|_| anyhow::anyhow!("{} is not a 32-byte key", path.display()))?;
        return Ok(TokenKey::from_bytes(key));
    }
    let mut key = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut key))
        .context("reading /dev/urandom")?;
    std::fs::write(&path, key).with_context(|| format!("writing {}", path.display()))?;
    Ok(TokenKey::from_bytes(key))
}
