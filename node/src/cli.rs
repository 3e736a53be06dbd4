//! The command line: every flag, each also an environment variable.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

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
pub(crate) struct Args {
    /// Run the deterministic demo onsale and print it as a table.
    #[arg(long)]
    pub(crate) demo: bool,
    /// Fans arriving in the demo's opening burst.
    #[arg(long, default_value_t = 3_000, value_parser = clap::value_parser!(u64).range(1..=200_000))]
    pub(crate) fans: u64,
    /// Seed for the demo's fan behaviour; the same seed prints the same table.
    #[arg(long, default_value_t = 7)]
    pub(crate) seed: u64,
    /// Serve the node RPC here (e.g. 127.0.0.1:7070), running a node.
    #[arg(long, env = "ONSALE_RPC")]
    pub(crate) rpc: Option<std::net::SocketAddr>,
    /// The embedded store's file (SQLite, WAL mode; shared by the nodes of
    /// one host). Default: `onsale.db`, or `onsale-demo.db` with
    /// `--demo --listen`.
    #[arg(long, env = "ONSALE_STORE")]
    pub(crate) store: Option<PathBuf>,
    /// Make a new store at `--store` even though one was expected there
    /// (its file is empty or not an onsale store, or another store's
    /// identity is found): without it such a start is refused, so an
    /// emptied or swapped store file never silently puts every seat on
    /// sale again. A store that has never existed (no file, no marks
    /// beside it) is created without it.
    #[arg(long)]
    pub(crate) init: bool,
    /// This node's name in the cluster: stable across restarts, so that a
    /// node restarted in place takes its events back at once (default:
    /// `node@` + the cluster address, else the RPC, else the HTTP one).
    #[arg(long, env = "ONSALE_NODE_ID")]
    pub(crate) node_id: Option<String>,
    /// How payments are charged.
    #[arg(long, env = "ONSALE_PROVIDER", value_enum, default_value_t = ProviderKind::Simulated)]
    pub(crate) provider: ProviderKind,
    /// Event lease time-to-live: how soon another node may take over the
    /// events of a node that died.
    #[arg(long, env = "ONSALE_LEASE_TTL_MS", default_value_t = 3_000,
          value_parser = clap::value_parser!(u64).range(300..=600_000))]
    pub(crate) lease_ttl_ms: u64,
    /// Journal records between an event's snapshots.
    #[arg(long, env = "ONSALE_SNAPSHOT_EVERY", default_value_t = onsale_actors::event_actor::SNAPSHOT_EVERY_RECORDS,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) snapshot_every: u64,
    /// Ask the payment provider about a payment it has not answered this
    /// long after it was submitted, then at doubling intervals (at most
    /// 5 min apart) until it answers or the event's provider timeout voids
    /// the payment.
    #[arg(long, env = "ONSALE_PAYMENT_QUERY_AFTER_MS",
          default_value_t = onsale_actors::checkout_core::PAYMENT_QUERY_AFTER_MS,
          value_parser = clap::value_parser!(u64).range(1..=3_600_000))]
    pub(crate) payment_query_after_ms: u64,
    /// Fault injection (tests and drills): every store write sleeps this long.
    #[arg(
        long,
        env = "ONSALE_FAULT_WRITE_DELAY_MS",
        default_value_t = 0,
        hide = true
    )]
    pub(crate) fault_write_delay_ms: u64,
    /// Fault injection: every n-th store write fails without landing.
    #[arg(
        long,
        env = "ONSALE_FAULT_FAIL_EVERY",
        default_value_t = 0,
        hide = true
    )]
    pub(crate) fault_fail_every: u64,
    /// Fault injection: every n-th store write lands, then reports failure.
    #[arg(
        long,
        env = "ONSALE_FAULT_LAND_THEN_FAIL_EVERY",
        default_value_t = 0,
        hide = true
    )]
    pub(crate) fault_land_then_fail_every: u64,
    /// Fault injection: the simulated provider loses this many answers per
    /// thousand charges (it still answers a status query).
    #[arg(
        long,
        env = "ONSALE_FAULT_PROVIDER_SILENT_PER_MILLE",
        value_parser = clap::value_parser!(u64).range(0..=1_000),
        hide = true
    )]
    pub(crate) fault_provider_silent_per_mille: Option<u64>,
    /// Serve the HTTP gateway (fan API, websockets, web page, operator
    /// API, /metrics) here, e.g. 127.0.0.1:8080, running a node.
    #[arg(long, env = "ONSALE_LISTEN")]
    pub(crate) listen: Option<std::net::SocketAddr>,
    /// The operators' bearer token (at least 16 bytes). Default: read from,
    /// or created in, the file beside the store named after it without its
    /// extension: `onsale-demo.operator-token` for `onsale-demo.db`.
    #[arg(long, env = "ONSALE_OPERATOR_TOKEN", hide_env_values = true)]
    pub(crate) operator_token: Option<String>,
    /// The payment provider's webhook secret (HMAC-SHA256). Without it the
    /// webhook route refuses every call.
    #[arg(long, env = "ONSALE_WEBHOOK_SECRET", hide_env_values = true)]
    pub(crate) webhook_secret: Option<String>,
    /// Requests per second the gateway accepts on fan routes, all fans together.
    #[arg(long, env = "ONSALE_GLOBAL_RPS", default_value_t = 50_000,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub(crate) global_rps: u32,
    /// Requests per second one fan may make (sustained).
    #[arg(long, env = "ONSALE_FAN_RPS", default_value_t = 10,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub(crate) fan_rps: u32,
    /// Requests one fan may make in a burst.
    #[arg(long, env = "ONSALE_FAN_BURST", default_value_t = 30,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub(crate) fan_burst: u32,
    /// Per-client limits: requests per second one client may make on the
    /// fan routes (catalogue, login, commands, websocket upgrades). A
    /// client is an IPv4 address or an IPv6 /64; behind a proxy, see
    /// `--trusted-proxies`. Off unless given.
    #[arg(long, env = "ONSALE_CLIENT_RPS",
          value_parser = clap::value_parser!(u32).range(1..))]
    pub(crate) client_rps: Option<u32>,
    /// Requests one client may make in a burst (with `--client-rps`).
    #[arg(long, env = "ONSALE_CLIENT_BURST", default_value_t = 60,
          value_parser = clap::value_parser!(u32).range(1..), requires = "client_rps")]
    pub(crate) client_burst: u32,
    /// Logins one client may make per minute (with `--client-rps`).
    #[arg(long, env = "ONSALE_LOGINS_PER_MIN", default_value_t = 30,
          value_parser = clap::value_parser!(u32).range(1..), requires = "client_rps")]
    pub(crate) logins_per_min: u32,
    /// Proxies (comma-separated addresses or CIDR ranges, e.g.
    /// 10.0.0.0/8,fd00::/8) whose `X-Forwarded-For` names the client;
    /// from any other peer the header is ignored.
    #[arg(long, env = "ONSALE_TRUSTED_PROXIES", value_delimiter = ',')]
    pub(crate) trusted_proxies: Vec<onsale_gateway::client::Cidr>,
    /// Join the cluster mesh: listen for other onsale processes here
    /// (ractor_cluster sessions), e.g. 10.0.0.1:7100. Peers dial this
    /// address, so it must be reachable from them (not 0.0.0.0).
    #[arg(long, env = "ONSALE_CLUSTER_LISTEN", requires = "cookie_file")]
    pub(crate) cluster_listen: Option<std::net::SocketAddr>,
    /// Cluster addresses to dial (comma-separated `HOST:PORT`); more are
    /// found through them and through the store.
    #[arg(
        long,
        env = "ONSALE_SEEDS",
        value_delimiter = ',',
        requires = "cluster_listen"
    )]
    pub(crate) seeds: Vec<String>,
    /// The file holding the cluster cookie, the secret every process of
    /// the cluster shares (at least 16 bytes; the file must not be
    /// readable by group or others, e.g. mode 0600). Never logged.
    #[arg(long, env = "ONSALE_COOKIE_FILE", requires = "cluster_listen")]
    pub(crate) cookie_file: Option<PathBuf>,
    /// Mutual TLS on the mesh: this node's certificate chain (PEM). With
    /// `--cluster-tls-key` and `--cluster-tls-ca`; every process of the
    /// cluster must use TLS (a plain peer cannot join a TLS one).
    #[arg(
        long,
        env = "ONSALE_CLUSTER_TLS_CERT",
        requires_all = ["cluster_listen", "cluster_tls_key", "cluster_tls_ca"]
    )]
    pub(crate) cluster_tls_cert: Option<PathBuf>,
    /// This node's private key (PEM).
    #[arg(long, env = "ONSALE_CLUSTER_TLS_KEY", requires = "cluster_tls_cert")]
    pub(crate) cluster_tls_key: Option<PathBuf>,
    /// The cluster's CA certificate (PEM): peers' certificates must chain
    /// to it, in both directions.
    #[arg(long, env = "ONSALE_CLUSTER_TLS_CA", requires = "cluster_tls_cert")]
    pub(crate) cluster_tls_ca: Option<PathBuf>,
    /// The DNS name every node's certificate carries (a subject
    /// alternative name): peers are dialled by address and checked
    /// against this name.
    #[arg(
        long,
        env = "ONSALE_CLUSTER_TLS_NAME",
        default_value = "onsale-node",
        requires = "cluster_tls_cert"
    )]
    pub(crate) cluster_tls_name: String,
    /// What this process does: `node` owns events, `gateway` serves fans
    /// and owns nothing (it writes nothing to the store and reaches every
    /// event over the mesh), `both` does both.
    #[arg(long, env = "ONSALE_ROLE", value_enum, default_value_t = Role::Both)]
    pub(crate) role: Role,
    #[command(flatten)]
    pub(crate) feed: crate::feed::FeedArgs,
    #[command(subcommand)]
    pub(crate) command: Option<Command>,
}

/// What the binary does besides running a node or the demo.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Relay the change feed alone: trail every event's journal in the
    /// store and publish to NATS JetStream (see `--feed`).
    Relay(crate::feed::RelayArgs),
    /// Write one event's tickets, orders, admissions and journal as
    /// Parquet files for analytics (DuckDB, pandas, ClickHouse), read
    /// from the store (also while a node serves it).
    Export(crate::export::ExportArgs),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Role {
    Node,
    Gateway,
    Both,
}

impl Role {
    pub(crate) fn owns_events(self) -> bool {
        matches!(self, Role::Node | Role::Both)
    }

    pub(crate) fn serves_fans(self) -> bool {
        matches!(self, Role::Gateway | Role::Both)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum ProviderKind {
    /// The built-in simulated provider (latency, declines, silence).
    Simulated,
    /// An external provider answering through the webhook.
    Webhook,
}
