//! `onsale`: the onsale node. See `onsale --help`.
//!
//! The one binary users run and the process tests start: flags
//! (`cli.rs`), the assembly of store, node, provider, secrets and gateway
//! (`run.rs`, `secrets.rs`), the change feed (`feed.rs`: `--feed` and
//! `onsale relay`), the Parquet export for analytics (`export.rs`:
//! `onsale export`), the process setup that measurements depend on
//! (`system.rs`: allocator, transparent huge pages, open files), and the
//! deterministic demo table (`demo.rs`).

mod cli;
mod demo;
mod export;
mod feed;
mod run;
mod secrets;
mod system;

use anyhow::bail;
use clap::Parser;

/// mimalloc: cheaper frees and less memory per fan connection than glibc's
/// malloc under many small, long-lived allocations (measured with
/// `scripts/bench-websockets.sh`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    system::no_transparent_huge_pages();
    let args = cli::Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("ONSALE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match &args.command {
        Some(cli::Command::Relay(relay)) => return feed::run_relay(relay),
        Some(cli::Command::Export(export)) => return export::run_export(export),
        None => {}
    }
    match (args.rpc, args.listen, args.cluster_listen, args.demo) {
        (None, None, None, true) => demo::run(args.fans, args.seed, &mut std::io::stdout().lock()),
        (None, None, None, false) => bail!(
            "nothing to do: pass --listen ADDR, --cluster-listen ADDR and/or --rpc ADDR to run a node, or --demo"
        ),
        _ => run::run_node(&args),
    }
}
