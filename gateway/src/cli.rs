//! Command line: run a node, or the deterministic demo.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::{Parser, ValueEnum};
use onsale_actors::clock::wall_now;
use onsale_actors::provider::{Provider, SimulatedProvider};
use onsale_cluster::node::{Node, NodeConfig};
use onsale_cluster::store::faulty::{Faults, FaultyStore};
use onsale_cluster::store::{NodeId, Store, sqlite::SqliteStore};
use onsale_schema::message::{Command, Reply, SaleCommand};
use onsale_schema::spec::EventSpec;
use onsale_schema::token::TokenKey;
use onsale_schema::{ErrorCode, EventConfig, EventId, Millis, SaleState};

/// The onsale node.
///
/// With `--rpc ADDR` and/or `--listen ADDR` it runs a node: it owns the
/// events in its store (the embedded SQLite file given by `--store`),
/// recovers them after a crash, and serves the node RPC on the `--rpc`
/// address and the HTTP gateway on the `--listen` address. With `--demo`
/// alone it runs a short deterministic onsale through the event core and
/// prints it as a table; `--demo --listen ADDR` instead serves two demo
/// events (1: the 508-seat club, 2: the 60,000-seat stadium; sales open)
/// with the fan web page.
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
    /// one host). Default: `onsale.db`, or `onsale-demo.db` with
    /// `--demo --listen`.
    #[arg(long, env = "ONSALE_STORE")]
    store: Option<PathBuf>,
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
    /// Ask the payment provider about a payment it has not answered this
    /// long after it was submitted, then at doubling intervals (at most
    /// 5 min apart) until it answers or the event's provider timeout voids
    /// the payment.
    #[arg(long, env = "ONSALE_PAYMENT_QUERY_AFTER_MS",
          default_value_t = onsale_actors::checkout_core::PAYMENT_QUERY_AFTER_MS,
          value_parser = clap::value_parser!(u64).range(1..=3_600_000))]
    payment_query_after_ms: u64,
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
    /// Serve the HTTP gateway (fan API, websockets, web page, operator
    /// API, /metrics) here, e.g. 127.0.0.1:8080, running a node.
    #[arg(long, env = "ONSALE_LISTEN")]
    listen: Option<std::net::SocketAddr>,
    /// The operators' bearer token (at least 16 bytes). Default: read from,
    /// or created in, `<store>.operator-token`.
    #[arg(long, env = "ONSALE_OPERATOR_TOKEN", hide_env_values = true)]
    operator_token: Option<String>,
    /// The payment provider's webhook secret (HMAC-SHA256). Without it the
    /// webhook route refuses every call.
    #[arg(long, env = "ONSALE_WEBHOOK_SECRET", hide_env_values = true)]
    webhook_secret: Option<String>,
    /// Requests per second the gateway accepts on fan routes, all fans together.
    #[arg(long, env = "ONSALE_GLOBAL_RPS", default_value_t = 50_000,
          value_parser = clap::value_parser!(u32).range(1..))]
    global_rps: u32,
    /// Requests per second one fan may make (sustained).
    #[arg(long, env = "ONSALE_FAN_RPS", default_value_t = 10,
          value_parser = clap::value_parser!(u32).range(1..))]
    fan_rps: u32,
    /// Requests one fan may make in a burst.
    #[arg(long, env = "ONSALE_FAN_BURST", default_value_t = 30,
          value_parser = clap::value_parser!(u32).range(1..))]
    fan_burst: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum ProviderKind {
    /// The built-in simulated provider (latency, declines, silence).
    Simulated,
    /// An external provider answering through the webhook.
    Webhook,
}

/// Turn transparent huge pages off for this process. mimalloc asks for
/// them on its arenas; then every fresh 2 MiB region is zeroed on first
/// touch (a mass admission of 19,000 fans spent ~45 ms of its 80 ms in the
/// kernel's page clearing) and half-used huge pages inflate memory per
/// connection (12.1 → 10.0 KB per fan without them). Call first thing.
pub fn no_transparent_huge_pages() {
    if let Err(e) = rustix::thread::disable_transparent_huge_pages(true) {
        eprintln!("onsale: could not turn transparent huge pages off: {e}");
    }
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
    match (args.rpc, args.listen, args.demo) {
        (None, None, true) => crate::demo::run(args.fans, args.seed, &mut std::io::stdout().lock()),
        (None, None, false) => {
            bail!("nothing to do: pass --rpc ADDR and/or --listen ADDR to run a node, or --demo")
        }
        _ => run_node(&args),
    }
}

/// The demo event served by `--demo --listen`.
pub const DEMO_EVENT: EventId = EventId(1);

fn run_node(args: &Args) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let store_path = args.store.clone().unwrap_or_else(|| {
        PathBuf::from(if args.demo && args.listen.is_some() {
            "onsale-demo.db"
        } else {
            "onsale.db"
        })
    });
    let sqlite = SqliteStore::open(&store_path)
        .with_context(|| format!("opening the store {}", store_path.display()))?;
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
    let key = token_key(&store_path)?;
    let gateway_config = gateway_config(args, &store_path, key.clone())?;
    // The address registered with the node lease: the RPC's, else the HTTP one.
    let addr = match (args.rpc, args.listen) {
        (Some(rpc), _) => rpc.to_string(),
        (None, Some(listen)) => format!("http://{listen}"),
        (None, None) => bail!("a node needs --rpc ADDR or --listen ADDR"),
    };
    let node = NodeId(
        args.node_id
            .clone()
            .unwrap_or_else(|| format!("node@{addr}")),
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
        let rpc_listener = match args.rpc {
            Some(rpc) => Some(
                tokio::net::TcpListener::bind(rpc)
                    .await
                    .with_context(|| format!("binding the node RPC on {rpc}"))?,
            ),
            None => None,
        };
        let http_listener = match args.listen {
            Some(listen) => {
                Some(listen_http(listen).with_context(|| format!("binding HTTP on {listen}"))?)
            }
            None => None,
        };
        let config = NodeConfig {
            node: node.clone(),
            addr,
            store,
            key,
            provider,
            lease_ttl_ms: args.lease_ttl_ms,
            snapshot_every_records: args.snapshot_every,
            payment_query_after_ms: args.payment_query_after_ms,
        };
        let node_handle = Node::start(config)
            .await
            .map_err(|e| anyhow::anyhow!("node failed to start: {e}"))?;
        if args.demo {
            ensure_demo_event(&node_handle).await?;
        }
        tracing::info!(
            %node,
            rpc = ?args.rpc,
            listen = ?args.listen,
            events = node_handle.owned().len(),
            ready_ms = started.elapsed().as_millis() as u64,
            "serving"
        );
        let http = match http_listener {
            Some(listener) => {
                let local = listener.local_addr().context("the HTTP address")?;
                let gateway = crate::Gateway::new(node_handle.clone(), gateway_config);
                let task = tokio::spawn(crate::http::serve(listener, gateway));
                // Test drivers wait for this exact line on stdout.
                println!("onsale serving http://{local}");
                Some(task)
            }
            None => None,
        };
        let rpc = match (rpc_listener, args.rpc) {
            (Some(listener), Some(rpc)) => {
                let task = tokio::spawn(onsale_cluster::rpc::serve(listener, node_handle.clone()));
                // Test drivers wait for this exact line on stdout.
                println!("onsale node {node} serving on {rpc}");
                Some(task)
            }
            _ => None,
        };
        match (http, rpc) {
            (Some(http), Some(rpc)) => tokio::select! {
                served = http => served.context("the HTTP gateway")?.context("serving HTTP")?,
                served = rpc => served.context("the node RPC")?,
            },
            (Some(http), None) => http
                .await
                .context("the HTTP gateway")?
                .context("serving HTTP")?,
            (None, Some(rpc)) => rpc.await.context("the node RPC")?,
            (None, None) => bail!("nothing to serve"),
        }
        Ok(())
    })
}

/// The demo events: (id, name, city, venue file).
const DEMO_EVENTS: [(EventId, &str, &str, &str); 2] = [
    (
        DEMO_EVENT,
        "Onsale demo night",
        "Loopback",
        include_str!("../../venues/club.json"),
    ),
    (
        EventId(2),
        "Stadium onsale",
        "Loopback",
        include_str!("../../venues/stadium.json"),
    ),
];

/// Create the demo events the store does not have yet, and open their
/// sales (an event already on sale, sold out or closed is left as it is).
async fn ensure_demo_event(node: &Node) -> anyhow::Result<()> {
    for (days, (event, name, city, venue)) in (30u64..).zip(DEMO_EVENTS) {
        let overview = call_patiently(node, event, Command::Overview).await;
        let state = match overview {
            Reply::Overview { overview } => overview.sale,
            Reply::Error {
                code: ErrorCode::UnknownEvent,
                ..
            } => {
                let spec = EventSpec {
                    event,
                    name: name.into(),
                    city: city.into(),
                    starts_at: Millis(wall_now().0 + days * 86_400_000),
                    venue_json: venue.into(),
                    config: EventConfig::default(),
                };
                match node.create_event(spec).await {
                    Reply::Overview { overview } => overview.sale,
                    other => bail!("creating the demo event {event}: {other:?}"),
                }
            }
            other => bail!("reading the demo event {event}: {other:?}"),
        };
        if matches!(state, SaleState::Scheduled | SaleState::Paused) {
            let opened = call_patiently(
                node,
                event,
                Command::Sale {
                    command: SaleCommand::Open,
                },
            )
            .await;
            if !matches!(opened, Reply::Sale { .. }) {
                bail!("opening the demo sale {event}: {opened:?}");
            }
        }
    }
    Ok(())
}

/// A command to a demo event, retried while the event is busy (its
/// counter block is being made durable), for up to 10 s.
async fn call_patiently(node: &Node, event: EventId, command: Command) -> Reply {
    let mut reply = node.call(event, command.clone()).await;
    for _ in 0..200 {
        if !matches!(
            reply,
            Reply::Error {
                code: ErrorCode::Busy,
                ..
            }
        ) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        reply = node.call(event, command.clone()).await;
    }
    reply
}

/// Connections the kernel queues for the gateway before it accepts them.
/// An arrival burst of thousands of fans overflows the default 1,024 (seen:
/// SYN cookies and 1–3 s SYN retransmits); the kernel caps it at
/// `net.core.somaxconn`.
pub const HTTP_BACKLOG: u32 = 16_384;

fn listen_http(addr: std::net::SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = match addr {
        std::net::SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        std::net::SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(HTTP_BACKLOG)
}

/// The gateway's settings, checked, and the open-files limit raised so the
/// gateway knows how many fan connections it can hold.
fn gateway_config(
    args: &Args,
    store: &Path,
    key: TokenKey,
) -> anyhow::Result<crate::GatewayConfig> {
    crate::telemetry::install();
    let operator_token = match &args.operator_token {
        Some(token) if token.len() >= 16 => token.clone(),
        Some(_) => bail!("the operator token must be at least 16 bytes"),
        None => {
            let path = store.with_extension("operator-token");
            match std::fs::read_to_string(&path) {
                Ok(token) if token.trim().len() >= 16 => token.trim().to_owned(),
                Ok(_) => bail!("{} holds a token shorter than 16 bytes", path.display()),
                Err(_) => {
                    let mut raw = [0u8; 24];
                    std::fs::File::open("/dev/urandom")
                        .and_then(|mut f| f.read_exact(&mut raw))
                        .context("reading /dev/urandom")?;
                    let token: String = raw.iter().map(|b| format!("{b:02x}")).collect();
                    write_secret(&path, token.as_bytes())
                        .with_context(|| format!("writing {}", path.display()))?;
                    tracing::info!(file = %path.display(), "operator token created");
                    token
                }
            }
        }
    };
    let webhook_secret = match &args.webhook_secret {
        Some(secret) if secret.len() >= 16 => Some(secret.as_bytes().to_vec()),
        Some(_) => bail!("the webhook secret must be at least 16 bytes"),
        None => None,
    };
    let nonzero = |n: u32| std::num::NonZeroU32::new(n).context("a rate must be at least 1");
    let files = raise_open_files_limit();
    // Keep room for the store, the listeners and HTTP requests.
    let conn_capacity = usize::try_from(files.saturating_sub(512))
        .unwrap_or(usize::MAX)
        .max(16);
    tracing::info!(
        open_files = files,
        conn_capacity,
        "connection capacity (fan websockets and HTTP together)"
    );
    metrics::gauge!("onsale_open_files_limit").set(files as f64);
    Ok(crate::GatewayConfig {
        key,
        operator_token,
        webhook_secret,
        limits: crate::edge::LimitConfig {
            global_per_s: nonzero(args.global_rps)?,
            fan_per_s: nonzero(args.fan_rps)?,
            fan_burst: nonzero(args.fan_burst)?,
        },
        conn_capacity,
    })
}

/// Raise the soft open-files limit to the hard limit; the new soft limit.
fn raise_open_files_limit() -> u64 {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => limit,
        Err(e) => {
            tracing::warn!(error = %e, "could not raise the open-files limit");
            rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(1_024, |(soft, _)| soft)
        }
    }
}

/// Create a secret file readable by this user only; never overwrite one.
fn write_secret(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
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
    match write_secret(&path, &key) {
        Ok(()) => Ok(TokenKey::from_bytes(key)),
        // Another process sharing the store made it first: use theirs.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => token_key(store),
        Err(e) => Err(e).with_context(|| format!("writing {}", path.display())),
    }
}
