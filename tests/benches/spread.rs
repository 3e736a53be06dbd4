//! Ten events over three nodes against the same ten events on one node:
//! durable sales per second of the whole cluster, and whether one hot
//! event slows the others.
//!
//!     cargo bench -p onsale-tests --bench spread
//!
//! Two setups, one after the other on fresh stores: `one node` (one
//! `onsale --role node` process owns the ten events) and `three nodes`
//! (three node processes; the events placed by rendezvous hashing). This
//! process is a gateway-role node on the mesh: every command crosses it,
//! with no HTTP in the way. Each setup runs two loads of [`PHASE`] each
//! with [`BUYERS`] buyers in a closed loop, each buyer one fan after
//! another: join, hold the best seat, submit the payment, and the
//! provider's confirmation (`--provider webhook`; the answer is delivered
//! as a command): a sale counts when the event answers `sold`, which it
//! does only once the sale is in its journal on the store.
//! - `uniform`: buyers spread evenly over the ten events;
//! - `hot`: half the buyers on one event, the rest over the other nine
//!   (ten fresh events, so the hot one starts with every seat).
//!
//! Printed per setup and load: durable sales/s, and the p99 of the cold
//! events' commands (every event but the hot one), split into those whose
//! owner also owns the hot one and those whose owner does not (on one
//! node, all of them share it). All processes share
//! this machine's cores unless `ONSALE_BENCH_PIN=1` (node processes on
//! CPU 0, this process on CPU 1).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use onsale_cluster::node::Node;
use onsale_schema::message::{Command, Reply, SaleCommand};
use onsale_schema::{EventConfig, EventId, FanId};
use onsale_tests::{NodeProcess, bench, free_port, lease_holder, scratch_dir, spec, venue_json};

const COOKIE: &str = "spread bench cookie, shared by the cluster";
const EVENTS: u64 = 10;
const BUYERS: u64 = 200;
const PHASE: Duration = Duration::from_secs(5);

fn main() -> anyhow::Result<()> {
    let pin = std::env::var("ONSALE_BENCH_PIN").is_ok_and(|v| v == "1");
    println!(
        "spread: {EVENTS} events, {BUYERS} buyers in a closed loop, {PHASE:?} per load{}",
        if pin {
            ", nodes pinned to CPU 0, bench to CPU 1"
        } else {
            ", unpinned"
        }
    );
    let mut rates = Vec::new();
    for nodes in [1_usize, 3] {
        rates.push(setup(nodes, pin)?);
    }
    println!(
        "three nodes / one node, durable sales/s: uniform {:.2}x, hot {:.2}x",
        rates[1].0 / rates[0].0,
        rates[1].1 / rates[0].1
    );
    Ok(())
}

/// Run both loads on `count` node processes; their sales/s (uniform, hot).
fn setup(count: usize, pin: bool) -> anyhow::Result<(f64, f64)> {
    let dir = scratch_dir(&format!("spread-{count}"));
    let store = dir.join("bench.db");
    let cookie = dir.join("cookie");
    bench::write_cookie(&cookie, COOKIE)?;
    let addrs: Vec<String> = (0..count)
        .map(|i| format!("127.0.0.{}:{}", 11 + i, free_port()))
        .collect();
    let mut processes = Vec::new();
    for (i, addr) in addrs.iter().enumerate() {
        let args: Vec<String> = [
            "--cluster-listen",
            addr,
            "--cookie-file",
            &cookie.display().to_string(),
            "--node-id",
            &format!("n{i}"),
            "--role",
            "node",
            "--provider",
            "webhook",
            "--seeds",
            &addrs[0],
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        let node = NodeProcess::start_with(&store, addr, &args, &format!("onsale mesh n{i} on"))?;
        if pin {
            bench::pin_to(node.pid().expect("running"), "0");
        }
        processes.push(node);
    }
    if pin {
        bench::pin_to(std::process::id(), "1");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let rates = runtime.block_on(async {
        let gateway = bench::mesh_gateway(&store, "127.0.0.21", &addrs, &cookie).await?;
        let config = EventConfig {
            shoppers_max: 100_000,
            tickets_per_fan_max: 2,
            ..EventConfig::default()
        };
        // Events 1..=10 for the uniform load, 11..=20 (fresh seats) for
        // the hot one; 50,000 seats each, so the hot event never sells out.
        for e in 1..=2 * EVENTS {
            let created = gateway.create_event(spec(e, venue_json(25, 40, 50), config.clone())).await;
            anyhow::ensure!(matches!(created, Reply::Overview { .. }), "create {e}: {created:?}");
            let opened = gateway.call(EventId(e), Command::Sale { command: SaleCommand::Open }).await;
            anyhow::ensure!(matches!(opened, Reply::Sale { .. }), "open {e}: {opened:?}");
        }
        let owners: Vec<Option<usize>> = (1..=2 * EVENTS).map(|e| lease_holder(&store, e)).collect();
        let placed: Vec<String> = owners
            .iter()
            .map(|o| o.map_or("?".into(), |o| format!("n{o}")))
            .collect();
        println!("{count} node(s): events 1..={} owned by {}", 2 * EVENTS, placed.join(" "));
        let (first, second) = owners.split_at(EVENTS as usize);
        let shares = |owners: &[Option<usize>]| -> Vec<bool> {
            owners.iter().map(|o| *o == owners[0]).collect()
        };
        let uniform = load(&gateway, 1, &shares(first), false).await;
        let hot = load(&gateway, 1 + EVENTS, &shares(second), true).await;
        for (name, result) in [("uniform", &uniform), ("hot", &hot)] {
            let us = |v: Option<u64>| v.map_or("n/a".to_owned(), |v| format!("{v} us"));
            println!(
                "{count} node(s), {name:>7}: {:>7.0} durable sales/s ({} sold, {} refused) | cold events' p99: {:>9} beside the hot one, {:>9} elsewhere",
                result.sales_per_s, result.sold, result.refused, us(result.p99_beside_us), us(result.p99_elsewhere_us)
            );
        }
        anyhow::Ok((uniform.sales_per_s, hot.sales_per_s))
    })?;
    drop(processes);
    Ok(rates)
}

struct LoadResult {
    sales_per_s: f64,
    sold: u64,
    refused: u64,
    /// p99 (µs) of commands to cold events that share the hot event's
    /// owner (`None`: no such event).
    p99_beside_us: Option<u64>,
    /// p99 (µs) of commands to cold events on other nodes.
    p99_elsewhere_us: Option<u64>,
}

/// Buyers on events `first..first + EVENTS` (the first is the hot one
/// when `hot`); `shares_hot[i]`: event `first + i` has the hot one's owner.
async fn load(gateway: &Node, first: u64, shares_hot: &[bool], hot: bool) -> LoadResult {
    let seen = Arc::new(Mutex::new(bench::Seen::default()));
    let until = Instant::now() + PHASE;
    let started = Instant::now();
    let mut buyers = Vec::new();
    for b in 0..BUYERS {
        let (gateway, seen, shares_hot) = (gateway.clone(), Arc::clone(&seen), shares_hot.to_vec());
        buyers.push(tokio::spawn(async move {
            let mut mine = bench::Seen::default();
            let mut n = 0_u64;
            while Instant::now() < until {
                // Half the buyers on event 1 when hot; else round robin.
                let i = if hot && b % 2 == 0 {
                    0
                } else {
                    (b + n) % EVENTS
                };
                let fan = FanId(1 + first * 100_000_000 + b * 1_000_000 + n);
                n += 1;
                let times = bench::sale(&gateway, EventId(first + i), fan, &mut mine).await;
                if i != 0 {
                    let bucket = if shares_hot[i as usize] {
                        &mut mine.beside
                    } else {
                        &mut mine.elsewhere
                    };
                    bucket.extend(times);
                }
            }
            let mut seen = seen.lock().expect("not poisoned");
            seen.sold += mine.sold;
            seen.refused += mine.refused;
            seen.beside.extend(mine.beside);
            seen.elsewhere.extend(mine.elsewhere);
        }));
    }
    for buyer in buyers {
        let _ = buyer.await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let mut seen = std::mem::take(&mut *seen.lock().expect("not poisoned"));
    seen.beside.sort_unstable();
    seen.elsewhere.sort_unstable();
    LoadResult {
        sales_per_s: seen.sold as f64 / elapsed,
        sold: seen.sold,
        refused: seen.refused,
        p99_beside_us: (!seen.beside.is_empty()).then(|| bench::quantile(&seen.beside, 0.99)),
        p99_elsewhere_us: (!seen.elsewhere.is_empty())
            .then(|| bench::quantile(&seen.elsewhere, 0.99)),
    }
}
