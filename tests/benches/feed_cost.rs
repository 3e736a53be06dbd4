//! What the change feed costs a node: durable sales/s with `--feed` off
//! and on, side by side in one run.
//!
//!     ONSALE_BENCH_PIN=1 cargo bench -p onsale-tests --bench feed_cost
//!
//! Rounds of two phases (feed off, then on; `ONSALE_FEED_COST_ROUNDS`,
//! default 3), each on a fresh store and a fresh `onsale --role node`
//! process (`--provider webhook`), with one event of 50,000 seats. This
//! process is a gateway on the mesh; [`BUYERS`] buyers in a closed loop
//! each buy one seat after another (join, hold, pay, the provider's
//! confirmation): a sale counts when the event answers `sold`, after it is
//! in the journal. With the feed on, the node relays to a real
//! `nats-server` (JetStream, file storage) started here.
//!
//! With `ONSALE_BENCH_PIN=1` the node runs on CPU 0 (its relay with it),
//! this process and nats-server on CPU 1. `ONSALE_FEED_COST_RELAY=process`
//! runs the relay as `onsale relay` beside the node instead (on CPU 1 when
//! pinned).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use onsale_cluster::rpc::Client;
use onsale_schema::message::{Command, Reply, SaleCommand};
use onsale_schema::{EventConfig, EventId, FanId};
use onsale_tests::nats::{NatsServer, stream_messages};
use onsale_tests::{NodeProcess, OPERATOR_TOKEN, bench, scratch_dir, spec, venue_json};

const EVENT: EventId = EventId(1);
const BUYERS: u64 = 200;
const PHASE: Duration = Duration::from_secs(6);

fn main() -> anyhow::Result<()> {
    let pin = std::env::var("ONSALE_BENCH_PIN").is_ok_and(|v| v == "1");
    let separate = std::env::var("ONSALE_FEED_COST_RELAY").is_ok_and(|v| v == "process");
    let rounds: u64 = std::env::var("ONSALE_FEED_COST_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    println!(
        "feed cost: {BUYERS} buyers in a closed loop, {PHASE:?} a phase, {rounds} rounds of feed off / on, the relay {}{}",
        if separate {
            "a process of its own (onsale relay)"
        } else {
            "in the node (--feed)"
        },
        if pin {
            ", node on CPU 0, bench, nats-server (and onsale relay) on CPU 1"
        } else {
            ", unpinned"
        }
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let mut ratios = Vec::new();
    for round in 1..=rounds {
        let (off, off_cpu) = runtime.block_on(phase(round, false, pin, separate))?;
        let (on, on_cpu) = runtime.block_on(phase(round, true, pin, separate))?;
        let ratio = on / off;
        ratios.push(ratio);
        println!(
            "round {round}: off {off:.0} sales/s, on {on:.0} sales/s: on/off {ratio:.3} ({:+.1} %); the node's CPU a sale: off {off_cpu:.1} µs, on {on_cpu:.1} µs ({:+.1} %)",
            (ratio - 1.0) * 100.0,
            (on_cpu / off_cpu - 1.0) * 100.0
        );
    }
    ratios.sort_by(f64::total_cmp);
    println!(
        "on/off over {rounds} rounds: min {:.3}, median {:.3}, max {:.3}",
        ratios[0],
        ratios[ratios.len() / 2],
        ratios[ratios.len() - 1]
    );
    Ok(())
}

/// One phase on a fresh node; its durable sales/s.
async fn phase(round: u64, feed: bool, pin: bool, separate: bool) -> anyhow::Result<(f64, f64)> {
    let nats = if feed {
        Some(NatsServer::start().await)
    } else {
        None
    };
    let dir = scratch_dir(&format!("feed-cost-{round}-{feed}"));
    let store = dir.join("bench.db");
    let mut args = vec!["--provider".to_owned(), "webhook".to_owned()];
    if let Some(nats) = nats.as_ref().filter(|_| !separate) {
        args.extend(["--feed".to_owned(), nats.url()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let node = NodeProcess::start(&store, &args)?;
    // `onsale relay` beside the node, on the other CPU.
    let relay = match nats.as_ref().filter(|_| separate) {
        Some(nats) => {
            let args: Vec<String> = [
                "relay",
                "--store",
                &store.display().to_string(),
                "--feed",
                &nats.url(),
            ]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
            Some(NodeProcess::start_with(
                &store,
                "-",
                &args,
                "onsale relay on",
            )?)
        }
        None => None,
    };
    if pin {
        bench::pin_to(node.pid().expect("running"), "0");
        bench::pin_to(std::process::id(), "1");
        for pid in [
            nats.as_ref().and_then(NatsServer::pid),
            relay.as_ref().and_then(NodeProcess::pid),
        ]
        .into_iter()
        .flatten()
        {
            bench::pin_to(pid, "1");
        }
    }
    let mut clients = Vec::new();
    for _ in 0..8 {
        clients.push(Arc::new(
            Client::connect(&node.addr, OPERATOR_TOKEN.as_bytes()).await?,
        ));
    }
    let config = EventConfig {
        shoppers_max: 100_000,
        tickets_per_fan_max: 2,
        ..EventConfig::default()
    };
    let created = clients[0]
        .create_event(spec(EVENT.0, venue_json(80, 50, 50), config))
        .await?;
    anyhow::ensure!(
        matches!(created, Reply::Overview { .. }),
        "create: {created:?}"
    );
    let opened = clients[0]
        .call(
            EVENT,
            Command::Sale {
                command: SaleCommand::Open,
            },
        )
        .await?;
    anyhow::ensure!(matches!(opened, Reply::Sale { .. }), "open: {opened:?}");

    let node_pid = node.pid().expect("running");
    let cpu_before = cpu_ms(node_pid);
    let seen = Arc::new(Mutex::new(bench::Seen::default()));
    let until = Instant::now() + PHASE;
    let started = Instant::now();
    let buyers: Vec<_> = (0..BUYERS)
        .map(|b| {
            let (client, seen) = (
                Arc::clone(&clients[b as usize % clients.len()]),
                Arc::clone(&seen),
            );
            tokio::spawn(async move {
                let mut mine = bench::Seen::default();
                let mut n = 0;
                while Instant::now() < until {
                    let fan = FanId(1 + b * 1_000_000 + n);
                    n += 1;
                    bench::sale(&*client, EVENT, fan, &mut mine).await;
                }
                let mut seen = seen.lock().expect("not poisoned");
                seen.sold += mine.sold;
                seen.refused += mine.refused;
            })
        })
        .collect();
    for buyer in buyers {
        let _ = buyer.await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let node_cpu_ms = cpu_ms(node_pid).saturating_sub(cpu_before);
    let (sold, refused) = {
        let seen = seen.lock().expect("not poisoned");
        (seen.sold, seen.refused)
    };
    if let Some(nats) = &nats {
        // The feed kept up: every sale is in the stream by now or soon.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let sold_messages = stream_messages(&nats.url(), "ONSALE")
                .await
                .iter()
                .filter(|m| m.subject.ends_with(".sold"))
                .count() as u64;
            if sold_messages >= sold || Instant::now() > deadline {
                println!("  feed on: {sold_messages} sold messages in the stream for {sold} sales");
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    drop(relay);
    drop(node);
    let _ = std::fs::remove_dir_all(&dir);
    let cpu_us_per_sale = node_cpu_ms as f64 * 1_000.0 / sold.max(1) as f64;
    println!(
        "  round {round}, feed {}: {sold} sold, {refused} refused in {elapsed:.1} s; the node used {node_cpu_ms} ms of CPU: {cpu_us_per_sale:.1} µs a sale",
        if feed { "on" } else { "off" }
    );
    Ok((sold as f64 / elapsed, cpu_us_per_sale))
}

/// CPU time (user + system, ms) process `pid` has used so far.
fn cpu_ms(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command (in parentheses): utime is the 12th, stime
    // the 13th, in clock ticks (100 a second here).
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or(Vec::new(), |(_, rest)| rest.split_whitespace().collect());
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    (ticks(11) + ticks(12)) * 10
}
