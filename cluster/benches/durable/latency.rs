//! Latency at a fixed offered rate: p99 request → durable acknowledgement
//! at 10,000 sales/s, open loop (cycles start on a fixed schedule
//! whatever the replies do).

use super::*;

/// Load phase, of which the first `WARMUP` is not recorded.
const LOAD: Duration = Duration::from_millis(2_500);
const WARMUP: Duration = Duration::from_millis(500);
const SHOPPERS: u32 = 4_096;

pub fn run(runs: u64) {
    let rate = env_u64("DURABLE_RATE", 10_000);
    println!(
        "== latency: open loop at {rate} cycles/s for {LOAD:?} ({WARMUP:?} warm-up not recorded)"
    );
    for run in 1..=runs {
        runtime().block_on(one(rate, run));
    }
}

async fn one(rate: u64, run: u64) {
    // Two seats a cycle: at most 25,000 cycles fit the stadium with
    // room to spare for fair-share.
    let cycles = (rate as f64 * LOAD.as_secs_f64()) as u64;
    assert!(
        cycles <= 26_000,
        "{rate}/s over {LOAD:?} does not fit the stadium"
    );
    let bench = Bench::start(onsale_actors::event_actor::SNAPSHOT_EVERY_RECORDS).await;
    bench.create_stadium(config(SHOPPERS, 1_000)).await;
    let fans = join(&bench.node, 0..cycles + u64::from(SHOPPERS)).await;
    let before = bench.store.stats();
    bench.store.reset();
    let samples = Arc::new(Mutex::new(Vec::with_capacity(cycles as usize)));
    let started = Instant::now();
    let period = Duration::from_secs_f64(1.0 / rate as f64);
    let mut tasks = Vec::with_capacity(cycles as usize);
    let mut launched = 0u64;
    let mut lag_max = Duration::ZERO;
    while launched < cycles && started.elapsed() < PHASE_MAX {
        let due = ((started.elapsed().as_secs_f64() * rate as f64) as u64).min(cycles);
        while launched < due {
            let intended = period * launched as u32;
            lag_max = lag_max.max(started.elapsed().saturating_sub(intended));
            let record = intended >= WARMUP;
            let (node, f, samples) = (
                bench.node.clone(),
                fans[launched as usize],
                Arc::clone(&samples),
            );
            tasks.push(tokio::spawn(async move {
                let t = Instant::now();
                let (outcome, times) = cycle(&node, f).await;
                if record {
                    let whole = t.elapsed();
                    samples
                        .lock()
                        .expect("not poisoned")
                        .push((outcome, times, whole));
                }
            }));
            launched += 1;
        }
        tokio::time::sleep(Duration::from_micros(500)).await;
    }
    let offered = started.elapsed();
    for task in tasks {
        task.await.expect("cycle task");
    }
    let stats = bench.store.stats().since(before);
    report(
        run,
        launched as f64 / offered.as_secs_f64(),
        lag_max,
        &samples.lock().expect("not poisoned"),
        format!(
            "{}; {}",
            stats.describe(offered),
            bench.store.commit_times()
        ),
    );
    bench.stop().await;
}

fn report(
    run: u64,
    offered: f64,
    lag_max: Duration,
    samples: &[(Outcome, CycleTimes, Duration)],
    commits: String,
) {
    let sold = samples.iter().filter(|s| s.0 == Outcome::Sold).count();
    let mut hold: Vec<Duration> = samples.iter().map(|s| s.1.hold).collect();
    let mut pay: Vec<Duration> = samples.iter().map(|s| s.1.pay).collect();
    let mut answer: Vec<Duration> = samples.iter().map(|s| s.1.answer).collect();
    let mut all: Vec<Duration> = hold.iter().chain(&pay).chain(&answer).copied().collect();
    let mut whole: Vec<Duration> = samples.iter().map(|s| s.2).collect();
    println!(
        "run {run}: offered {offered:.0} cycles/s, pacer lag max {:.2} ms, {} recorded, {sold} sold\n    {}",
        ms(lag_max),
        samples.len(),
        commits
    );
    for (name, v) in [
        ("any command", &mut all),
        ("hold", &mut hold),
        ("submit payment", &mut pay),
        ("provider answer", &mut answer),
        ("whole cycle", &mut whole),
    ] {
        println!("    {name:<16} {}", percentiles(v));
    }
}

fn percentiles(v: &mut [Duration]) -> String {
    if v.is_empty() {
        return "no samples".into();
    }
    v.sort_unstable();
    let at = |q: f64| v[((v.len() as f64 * q) as usize).min(v.len() - 1)];
    format!(
        "p50 {:>6.2} ms  p99 {:>6.2} ms  p99.9 {:>6.2} ms  max {:>6.2} ms",
        ms(at(0.50)),
        ms(at(0.99)),
        ms(at(0.999)),
        ms(v[v.len() - 1])
    )
}
