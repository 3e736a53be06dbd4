//! `onsale`: the onsale node.
//!
//! The HTTP/websocket gateway and the node runtime are not built yet. Until
//! they are, `onsale --demo` runs a short, deterministic onsale through the
//! real event core (the same `EventCore` the node will run) on the embedded
//! club venue: a burst of fans, a full waiting room, holds, payments that
//! succeed, fail or never come, a crash with restore from snapshot and
//! journal midway, and fans resuming with their queue tokens. It prints the
//! onsale as a table and checks every invariant after every step.

mod demo;

use clap::Parser;

/// The onsale node.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Run the deterministic demo onsale and print it as a table.
    #[arg(long)]
    demo: bool,
    /// Fans arriving in the demo's opening burst.
    #[arg(long, default_value_t = 3_000, value_parser = clap::value_parser!(u64).range(1..=200_000))]
    fans: u64,
    /// Seed for the demo's fan behaviour; the same seed prints the same table.
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Address to serve on (the gateway is not built yet; accepted so that
    /// scripts can already pass it).
    #[arg(long)]
    listen: Option<std::net::SocketAddr>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if !args.demo {
        anyhow::bail!(
            "the node's HTTP/websocket gateway is not built yet; run `onsale --demo` to watch \
             a deterministic onsale through the event core"
        );
    }
    if let Some(listen) = args.listen {
        eprintln!("note: --listen {listen} ignored: the gateway is not built yet");
    }
    demo::run(args.fans, args.seed, &mut std::io::stdout().lock())
}
