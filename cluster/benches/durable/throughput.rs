//! Throughput: hold → pay → sell cycles/s for one event actor through
//! `Node::call`, counted at the durable reply, with the group-commit batch
//! sizes the writer achieved.

use super::*;

/// Cycles per run: 2 seats each, leaving the last 8,000 seats so that
/// fair-share rules never refuse a pair.
const CYCLES: u64 = 26_000;
/// Admitted fans shopping at once: more than any in-flight count, so
/// the fan a task takes next is always admitted.
const SHOPPERS: u32 = 4_096;

pub fn run(runs: u64) {
    let inflights: Vec<usize> = std::env::var("DURABLE_INFLIGHT")
        .unwrap_or_else(|_| "256,1024,2048".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    println!("== throughput: hold(best 2) -> pay -> confirm, one event, {CYCLES} cycles/run");
    for &inflight in &inflights {
        for run in 1..=runs {
            runtime().block_on(one(inflight, run));
        }
    }
}

async fn one(inflight: usize, run: u64) {
    let bench = Bench::start(onsale_actors::event_actor::SNAPSHOT_EVERY_RECORDS).await;
    bench.create_stadium(config(SHOPPERS, 1_000)).await;
    let fans = Arc::new(join(&bench.node, 0..CYCLES + u64::from(SHOPPERS)).await);
    let before = bench.store.stats();
    bench.store.reset();
    let rss_before = rss_mb();
    let cpu_before = cpu_ms();
    let next = Arc::new(AtomicUsize::new(0));
    let counts = Arc::new(Mutex::new([0u64; 3]));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..inflight {
        let (node, fans, next, counts) = (
            bench.node.clone(),
            Arc::clone(&fans),
            Arc::clone(&next),
            Arc::clone(&counts),
        );
        tasks.push(tokio::spawn(async move {
            let mut mine = [0u64; 3];
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i as u64 >= CYCLES || started.elapsed() > PHASE_MAX {
                    break;
                }
                let (outcome, _) = cycle(&node, fans[i]).await;
                mine[outcome as usize] += 1;
            }
            let mut c = counts.lock().expect("not poisoned");
            for (total, n) in c.iter_mut().zip(mine) {
                *total += n;
            }
        }));
    }
    for task in tasks {
        task.await.expect("cycle task");
    }
    let elapsed = started.elapsed();
    let cpu = cpu_ms();
    let stats = bench.store.stats().since(before);
    let [sold, rejected, other] = *counts.lock().expect("not poisoned");
    let overview = bench.overview().await;
    println!(
        "inflight {inflight:>5} run {run}: {sold} sold in {:.3} s = {:>7.0} cycles/s \
         ({rejected} holds rejected, {other} other) | sold seats {} | RSS +{} MB\n    \
         CPU per cycle: {:.1} µs (workers {:.1} + journal writer {:.1})\n    {}; {}",
        elapsed.as_secs_f64(),
        sold as f64 / elapsed.as_secs_f64(),
        overview.sold,
        rss_mb().saturating_sub(rss_before),
        per_cycle_us(cpu.0 + cpu.1, cpu_before.0 + cpu_before.1, sold),
        per_cycle_us(cpu.0, cpu_before.0, sold),
        per_cycle_us(cpu.1, cpu_before.1, sold),
        stats.describe(elapsed),
        bench.store.commit_times(),
    );
    bench.stop().await;
}
