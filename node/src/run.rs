//! Assembly: the store, the node, the payment provider, the secrets and
//! the gateway, wired and served; the demo events of `--demo --listen`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use onsale_actors::clock::wall_now;
use onsale_actors::provider::{Provider, SimulatedProvider};
use onsale_cluster::mesh::tls::{MeshTls, TlsFiles};
use onsale_cluster::mesh::{Mesh, MeshConfig};
use onsale_cluster::node::{Node, NodeConfig};
use onsale_cluster::store::faulty::{Faults, FaultyStore};
use onsale_cluster::store::open::{OpenMode, open_store};
use onsale_cluster::store::{NodeId, Store, marks};
use onsale_gateway::{Gateway, GatewayConfig};
use onsale_schema::message::{Command, Reply, SaleCommand};
use onsale_schema::spec::EventSpec;
use onsale_schema::token::TokenKey;
use onsale_schema::{ErrorCode, EventConfig, EventId, Millis, SaleState};

use crate::cli::{Args, ProviderKind};

/// The demo event served by `--demo --listen`.
const DEMO_EVENT: EventId = EventId(1);

/// Run a node (and its gateway, with `--listen`) until the process ends,
/// on the embedded store, or on FoundationDB with `--store fdb:CLUSTER_FILE`.
pub(crate) fn run_node(args: &Args) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let store_path = args.store.clone().unwrap_or_else(|| {
        PathBuf::from(if args.demo && args.listen.is_some() {
            "onsale-demo.db"
        } else {
            "onsale.db"
        })
    });
    // Flags and secrets are checked before any store is opened or made.
    if let Some(cookie_file) = &args.cookie_file {
        crate::secrets::cluster_cookie(cookie_file)?;
    }
    mesh_tls(args)?;
    if let Some(cluster_file) = store_path.to_str().and_then(|s| s.strip_prefix("fdb:")) {
        return run_on_fdb(args, cluster_file, started);
    }
    // A store is expected where a file or its high-water marks already
    // are; only a path that never held one is made without `--init`.
    let expected = store_path.exists() || marks::dir_of(&store_path).exists();
    let owns_events = args.role.owns_events();
    if !owns_events && !expected {
        bail!(
            "a gateway-only process reads the cluster's store but never makes one: no store at {} (start a node first)",
            store_path.display()
        );
    }
    let mode = if (args.init || !expected) && owns_events {
        OpenMode::Init
    } else {
        OpenMode::Existing
    };
    let (sqlite, summary) = open_store(&store_path, mode)
        .with_context(|| format!("opening the store {} (see --init)", store_path.display()))?;
    tracing::info!(store = %store_path.display(), "{summary}");
    serve(args, sqlite, &store_path, started)
}

/// The mesh's TLS acceptor and connector, if `--cluster-tls-cert` is given
/// (clap requires the key and the CA with it).
fn mesh_tls(args: &Args) -> anyhow::Result<Option<MeshTls>> {
    let (Some(cert), Some(key), Some(ca)) = (
        &args.cluster_tls_cert,
        &args.cluster_tls_key,
        &args.cluster_tls_ca,
    ) else {
        return Ok(None);
    };
    let files = TlsFiles {
        cert: cert.clone(),
        key: key.clone(),
        ca: ca.clone(),
        server_name: args.cluster_tls_name.clone(),
    };
    Ok(Some(
        MeshTls::load(&files).context("the mesh's TLS files are refused")?,
    ))
}

/// `--store fdb:CLUSTER_FILE`: the FoundationDB network runs around the
/// whole node. The secrets cannot live beside a store file here: the
/// token key comes from `ONSALE_TOKEN_SECRET` and the operators' token
/// from `--operator-token` (or their environment variables).
#[cfg(feature = "fdb")]
fn run_on_fdb(args: &Args, cluster_file: &str, started: std::time::Instant) -> anyhow::Result<()> {
    if std::env::var_os("ONSALE_TOKEN_SECRET").is_none() || args.operator_token.is_none() {
        bail!(
            "on FoundationDB, set ONSALE_TOKEN_SECRET and --operator-token (no files beside a store)"
        );
    }
    let cluster_file = (!cluster_file.is_empty()).then_some(cluster_file);
    onsale_cluster::store::fdb::with_network(|| {
        let store = onsale_cluster::store::fdb::FdbStore::open(cluster_file)
            .context("opening the FoundationDB store")?;
        tracing::info!(cluster_file = ?cluster_file, "store: FoundationDB");
        serve(args, store, Path::new("onsale-fdb"), started)
    })
    .context("the FoundationDB client network")?
}

#[cfg(not(feature = "fdb"))]
fn run_on_fdb(_: &Args, _: &str, _: std::time::Instant) -> anyhow::Result<()> {
    bail!("this onsale was built without FoundationDB: build it with `--features fdb`")
}

/// Serve on `store` (the embedded one's file is `store_path`; secrets that
/// are not given sit beside it).
fn serve<S: Store>(
    args: &Args,
    store: S,
    store_path: &Path,
    started: std::time::Instant,
) -> anyhow::Result<()> {
    let store_path = store_path.to_path_buf();
    let owns_events = args.role.owns_events();
    let faults = Faults {
        write_delay_ms: args.fault_write_delay_ms,
        fail_every: args.fault_fail_every,
        land_then_fail_every: args.fault_land_then_fail_every,
    };
    let store: Arc<dyn Store> = if faults == Faults::default() {
        Arc::new(store)
    } else {
        tracing::warn!(?faults, "store fault injection is ON");
        Arc::new(FaultyStore::new(store, faults))
    };
    let key = crate::secrets::token_key(&store_path)?;
    let gateway_config = gateway_config(args, &store_path, key.clone())?;
    // The node RPC's credential: the operators' token.
    let rpc_secret: Arc<[u8]> = gateway_config.operator_token.as_bytes().into();
    // The address registered with the node lease: the cluster address
    // (peers dial it), else the RPC's, else the HTTP one.
    let addr = match (args.cluster_listen, args.rpc, args.listen) {
        (Some(cluster), _, _) => cluster.to_string(),
        (None, Some(rpc), _) => rpc.to_string(),
        (None, None, Some(listen)) => format!("http://{listen}"),
        (None, None, None) => bail!("a node needs --cluster-listen, --rpc or --listen"),
    };
    if args.role.serves_fans() != args.listen.is_some() && args.role != crate::cli::Role::Both {
        bail!("--role gateway needs --listen ADDR, and --role node takes no --listen");
    }
    if !owns_events && args.cluster_listen.is_none() {
        bail!("a gateway-only process reaches events over the mesh: it needs --cluster-listen");
    }
    let mesh_config = match (args.cluster_listen, &args.cookie_file) {
        (Some(listen), Some(cookie_file)) => Some(MeshConfig {
            listen,
            seeds: args.seeds.clone(),
            cookie: crate::secrets::cluster_cookie(cookie_file)?,
            gateway: args.listen.is_some(),
            tls: mesh_tls(args)?,
        }),
        (Some(_), None) => bail!("--cluster-listen needs --cookie-file"),
        _ => None,
    };
    let node = NodeId(
        args.node_id
            .clone()
            .unwrap_or_else(|| format!("node@{addr}")),
    );
    let provider = match args.provider {
        ProviderKind::Simulated => {
            let mut simulated = SimulatedProvider::default();
            if let Some(silent) = args.fault_provider_silent_per_mille {
                simulated.silent_per_mille = silent;
            }
            Provider::Simulated(simulated)
        }
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
        if owns_events && args.feed.feed.is_some() {
            // On the embedded store the relay reads through a connection
            // of its own: the node's never waits for it.
            let relay_store: Arc<dyn Store> = if store.backend() == "sqlite" {
                Arc::new(
                    onsale_cluster::store::sqlite::SqliteStore::open_for_feed(&store_path)
                        .context("opening the store for the change feed")?,
                )
            } else {
                Arc::clone(&store)
            };
            args.feed.spawn(relay_store);
        }
        let config = NodeConfig {
            node: node.clone(),
            addr,
            owns_events,
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
        if let Some(mesh_config) = mesh_config {
            let listen = mesh_config.listen;
            let mesh = Mesh::start(mesh_config, node_handle.clone())
                .await
                .map_err(|e| anyhow::anyhow!("joining the mesh on {listen}: {e}"))?;
            node_handle.attach_mesh(mesh.clone());
            await_peers(&node_handle, &mesh).await;
            // Test drivers wait for this exact line on stdout.
            println!("onsale mesh {node} on {listen}");
        }
        if args.demo && owns_events {
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
                let gateway = Gateway::new(node_handle.clone(), gateway_config);
                let task = tokio::spawn(onsale_gateway::http::serve(listener, gateway));
                // Test drivers wait for this exact line on stdout.
                println!("onsale serving http://{local}");
                Some(task)
            }
            None => None,
        };
        let rpc = match (rpc_listener, args.rpc) {
            (Some(listener), Some(rpc)) => {
                let task = tokio::spawn(onsale_cluster::rpc::serve(
                    listener,
                    node_handle.clone(),
                    rpc_secret,
                ));
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
            // A node on the mesh only: it serves until the process ends.
            (None, None) => std::future::pending::<()>().await,
        }
        Ok(())
    })
}

/// Wait (at most [`PEERS_WAIT_MS`]) until a session is ready with every
/// live node the store lists, so that the first requests find their owners.
async fn await_peers(node: &Node, mesh: &Mesh) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_millis(PEERS_WAIT_MS);
    loop {
        let missing: Vec<NodeId> = node
            .placeable()
            .into_iter()
            .filter(|n| n != node.name() && !mesh.is_connected(n))
            .collect();
        if missing.is_empty() {
            return;
        }
        if std::time::Instant::now() >= deadline {
            tracing::warn!(
                ?missing,
                "serving before a mesh session with every live node is ready"
            );
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// How long a starting process waits for sessions with the live nodes.
const PEERS_WAIT_MS: u64 = 3_000;

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
const HTTP_BACKLOG: u32 = 16_384;

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
fn gateway_config(args: &Args, store: &Path, key: TokenKey) -> anyhow::Result<GatewayConfig> {
    onsale_gateway::telemetry::install();
    let operator_token = crate::secrets::operator_token(args.operator_token.as_deref(), store)?;
    let webhook_secret = match &args.webhook_secret {
        Some(secret) if secret.len() >= 16 => Some(secret.as_bytes().to_vec()),
        Some(_) => bail!("the webhook secret must be at least 16 bytes"),
        None => None,
    };
    let nonzero = |n: u32| std::num::NonZeroU32::new(n).context("a rate must be at least 1");
    let files = crate::system::raise_open_files_limit();
    // Keep room for the store, the listeners and HTTP requests, and for
    // the node RPC's connections when it serves: one budget of files.
    let rpc_share = if args.rpc.is_some() {
        onsale_schema::limits::RPC_CONNECTIONS_MAX as u64
    } else {
        0
    };
    let conn_capacity = usize::try_from(files.saturating_sub(512 + rpc_share))
        .unwrap_or(usize::MAX)
        .max(16);
    tracing::info!(
        open_files = files,
        conn_capacity,
        "connection capacity (fan websockets and HTTP together)"
    );
    metrics::gauge!("onsale_open_files_limit").set(files as f64);
    Ok(GatewayConfig {
        key,
        operator_token,
        webhook_secret,
        limits: onsale_gateway::edge::LimitConfig {
            global_per_s: nonzero(args.global_rps)?,
            fan_per_s: nonzero(args.fan_rps)?,
            fan_burst: nonzero(args.fan_burst)?,
            client: match args.client_rps {
                Some(rps) => Some(onsale_gateway::edge::ClientLimitConfig {
                    per_s: nonzero(rps)?,
                    burst: nonzero(args.client_burst)?,
                    logins_per_min: nonzero(args.logins_per_min)?,
                }),
                None => None,
            },
        },
        conn_capacity,
        trusted_proxies: args.trusted_proxies.clone(),
    })
}
