//! The change feed in the binary: `--feed nats://…` on a node, or the
//! relay alone (`onsale relay`).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use onsale_cluster::store::Store;
use onsale_cluster::store::sqlite::SqliteStore;
use onsale_feed::nats::{NatsConfig, NatsSink};
use onsale_feed::relay::{Relay, RelayConfig};
use tokio::sync::watch;

/// The change feed's flags (off without `--feed`).
#[derive(Clone, Debug, Args)]
pub(crate) struct FeedArgs {
    /// Relay every event's sales to this NATS server's JetStream
    /// (`nats://HOST:PORT`). One process per cluster relays: a node with
    /// this flag, or `onsale relay`.
    #[arg(long, env = "ONSALE_FEED")]
    pub(crate) feed: Option<String>,
    /// The JetStream stream (made if missing, taking `<prefix>.>`).
    #[arg(long, env = "ONSALE_FEED_STREAM", default_value = onsale_feed::nats::DEFAULT_STREAM)]
    pub(crate) feed_stream: String,
    /// Subjects are `<prefix>.<event>.<kind>`.
    #[arg(long, env = "ONSALE_FEED_PREFIX", default_value = onsale_feed::message::DEFAULT_PREFIX,
          value_parser = subject_token)]
    pub(crate) feed_prefix: String,
    /// Never make the stream: wait (retrying) until an operator does.
    #[arg(long, env = "ONSALE_FEED_NO_CREATE")]
    pub(crate) feed_no_create: bool,
    /// The duplicate window of a stream the relay makes, in seconds.
    #[arg(long, env = "ONSALE_FEED_DUPLICATE_WINDOW_S", default_value_t = 120,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub(crate) feed_duplicate_window_s: u64,
}

fn subject_token(prefix: &str) -> Result<String, String> {
    let ok = !prefix.is_empty()
        && prefix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(prefix.to_owned())
    } else {
        Err("a subject prefix is letters, digits, '_' and '-' (no dots or wildcards)".into())
    }
}

/// The `onsale relay` command: the change feed alone, on a store a node
/// serves (or served).
#[derive(Debug, Args)]
pub(crate) struct RelayArgs {
    /// The embedded store's file (the node's `--store`).
    #[arg(long, env = "ONSALE_STORE", default_value = "onsale.db")]
    pub(crate) store: PathBuf,
    #[command(flatten)]
    pub(crate) feed: FeedArgs,
}

impl FeedArgs {
    fn relay(&self, store: Arc<dyn Store>) -> Option<Relay<NatsSink>> {
        let url = self.feed.as_deref()?;
        let mut nats = NatsConfig::new(url);
        nats.stream = self.feed_stream.clone();
        nats.prefix = self.feed_prefix.clone();
        nats.create_stream = !self.feed_no_create;
        nats.duplicate_window = Duration::from_secs(self.feed_duplicate_window_s);
        let config = RelayConfig {
            prefix: self.feed_prefix.clone(),
            ..RelayConfig::default()
        };
        Some(Relay::new(store, NatsSink::new(nats), config))
    }

    /// Start the relay on the current runtime if `--feed` is given; it
    /// runs as long as the process.
    pub(crate) fn spawn(&self, store: Arc<dyn Store>) {
        let Some(relay) = self.relay(store) else {
            return;
        };
        tracing::info!(feed = ?self.feed, stream = %self.feed_stream, "change feed on");
        tokio::spawn(async move {
            // The sender lives as long as the task: the relay never stops.
            let (_keep, stop) = watch::channel(false);
            if let Err(e) = relay.run(stop).await {
                tracing::error!(error = %e, "the change feed stopped");
            }
        });
    }
}

/// `onsale relay`: relay until SIGINT or SIGTERM.
pub(crate) fn run_relay(args: &RelayArgs) -> anyhow::Result<()> {
    if args.feed.feed.is_none() {
        anyhow::bail!("onsale relay needs --feed nats://HOST:PORT");
    }
    let store = SqliteStore::open_for_feed(&args.store)
        .with_context(|| format!("opening the store {}", args.store.display()))?;
    tracing::info!(store = %args.store.display(), "change feed relay on this store");
    let store: Arc<dyn Store> = Arc::new(store);
    let relay = args.feed.relay(store).expect("--feed is set");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(async move {
        let (stop_tx, stop) = watch::channel(false);
        let task = tokio::spawn(relay.run(stop));
        // Test drivers wait for this exact line on stdout.
        println!(
            "onsale relay on {}",
            args.feed.feed.as_deref().unwrap_or_default()
        );
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("SIGTERM handler")?;
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        let _ = stop_tx.send(true);
        task.await.context("the relay task")??;
        Ok(())
    })
}
