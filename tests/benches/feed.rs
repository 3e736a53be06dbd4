//! The change feed under a burst: does the relay keep up with an event's
//! durable sales rate?
//!
//!     cargo bench -p onsale-tests --bench feed
//!     ONSALE_FEED_BENCH_RATE=50000 ONSALE_FEED_BENCH_SECS=10 ONSALE_FEED_BENCH_RUNS=3 \
//!         cargo bench -p onsale-tests --bench feed
//!
//! A writer thread appends to a real SQLite store, as an event's owner
//! would (one fenced transaction every 10 ms: the group commit), `RATE`
//! sales a second for `SECS` seconds: per sale a `HoldPlaced`, a
//! `PaymentSubmitted` and a `Sold` record, and per commit one
//! `AdmittedMany` of as many fans. The relay (the same code as `--feed`,
//! in this process) publishes to a real `nats-server` (JetStream, file
//! storage, started here on a loopback port). A sampler reads the relay's
//! cursor from the store every 20 ms: the lag is the age of the oldest
//! record written and not yet published. Printed per run: the burst's
//! sales/s as written, messages published, the lag's p50/p99/max during
//! the burst, and how long after the burst the lag took to reach 0.
//!
//! `ONSALE_BENCH_PIN=1` pins nats-server to CPU 1 and this process to
//! CPU 0.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use onsale_cluster::store::sqlite::SqliteStore;
use onsale_cluster::store::{JournalBytes, NodeId, Store};
use onsale_feed::nats::{NatsConfig, NatsSink};
use onsale_feed::relay::{Relay, RelayConfig};
use onsale_schema::snapshot::{JournalEntry, JournalRecord, SCHEMA_VERSION};
use onsale_schema::{
    EventConfig, EventId, FanId, HoldId, Millis, OrderId, PaymentId, Position, SeatIdx,
};
use onsale_tests::nats::NatsServer;
use onsale_tests::{bench, now_ms, scratch_dir, spec, venue_json};

const EVENT: EventId = EventId(1);
const TICK: Duration = Duration::from_millis(10);

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let rate = env("ONSALE_FEED_BENCH_RATE", 50_000);
    let secs = env("ONSALE_FEED_BENCH_SECS", 10);
    let runs = env("ONSALE_FEED_BENCH_RUNS", 3);
    let pin = std::env::var("ONSALE_BENCH_PIN").is_ok_and(|v| v == "1");
    println!(
        "feed: {rate} sales/s for {secs} s (3 records, 2 messages a sale, + admissions), {runs} runs{}",
        if pin {
            ", nats-server on CPU 1, writer and relay on CPU 0"
        } else {
            ", unpinned"
        }
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    for run in 1..=runs {
        runtime.block_on(one_run(run, rate, secs, pin));
    }
}

async fn one_run(run: u64, rate: u64, secs: u64, pin: bool) {
    let nats = NatsServer::start().await;
    if pin {
        if let Some(pid) = nats.pid() {
            bench::pin_to(pid, "1");
        }
        bench::pin_to(std::process::id(), "0");
    }
    let dir = scratch_dir(&format!("feed-bench-{run}"));
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.join("onsale.db")).expect("store"));
    let venue = venue_json(10, 60, 100);
    let spec = spec(EVENT.0, venue, EventConfig::default());
    store
        .put_event_spec(EVENT, &spec.encode().expect("spec"))
        .expect("spec");
    let lease = store
        .acquire_event(EVENT, &NodeId("bench".into()), 600_000, Millis(now_ms()))
        .expect("lease")
        .expect("free");

    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let relay = Relay::new(
        Arc::clone(&store),
        NatsSink::new(NatsConfig::new(&nats.url())),
        RelayConfig::default(),
    );
    let relay = tokio::spawn(relay.run(stop));
    // The relay is up (retention on, stream made) before the burst.
    while !store.feed_retention().expect("retention") {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    // seq -> when it was written (ms), filled by the writer.
    let written: Arc<Mutex<Vec<(u64, u64)>>> = Arc::default();
    let done = Arc::new(AtomicBool::new(false));
    let writer = {
        let (store, written, done) = (Arc::clone(&store), Arc::clone(&written), Arc::clone(&done));
        std::thread::spawn(move || write_burst(&*store, &lease, rate, secs, &written, &done))
    };

    let mut lags = Vec::new();
    let mut caught_up_after = None;
    let mut burst_end = None;
    let started = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let published = store
            .feed_cursor(EVENT)
            .expect("cursor")
            .map_or(0, |c| c.published);
        let now = now_ms();
        let (lag, head) = {
            let w = written.lock().expect("written");
            let oldest = w.iter().find(|(seq, _)| *seq > published);
            (
                oldest.map_or(0, |(_, at)| now.saturating_sub(*at)),
                w.last().map_or(0, |l| l.0),
            )
        };
        if done.load(Ordering::Acquire) {
            let end = *burst_end.get_or_insert_with(Instant::now);
            if published >= head {
                caught_up_after = Some(end.elapsed());
                break;
            }
            if end.elapsed() > Duration::from_secs(120) {
                break;
            }
        } else {
            lags.push(lag);
        }
    }
    let burst = writer.join().expect("writer");
    let _ = stop_tx.send(true);
    let _ = relay.await;
    lags.sort_unstable();
    let head = written.lock().expect("written").last().map_or(0, |l| l.0);
    println!(
        "run {run}: {:.0} sales/s written over {:.1} s ({head} records); lag p50 {} ms, p99 {} ms, max {} ms; caught up {} after the burst ({:.1} s in all)",
        burst.0 as f64 / burst.1.as_secs_f64(),
        burst.1.as_secs_f64(),
        bench::quantile(&lags, 0.50),
        bench::quantile(&lags, 0.99),
        lags.last().copied().unwrap_or(0),
        caught_up_after.map_or("NOT".to_owned(), |d| format!("{} ms", d.as_millis())),
        started.elapsed().as_secs_f64(),
    );
    drop(nats);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Append `rate` sales a second for `secs` seconds, one transaction per
/// tick; returns the sales written and the time taken.
fn write_burst(
    store: &dyn Store,
    lease: &onsale_cluster::store::EventLease,
    rate: u64,
    secs: u64,
    written: &Mutex<Vec<(u64, u64)>>,
    done: &AtomicBool,
) -> (u64, Duration) {
    let per_tick = (rate * TICK.as_millis() as u64 / 1_000).max(1);
    let ticks = secs * 1_000 / TICK.as_millis() as u64;
    let seats = 60_000;
    let started = Instant::now();
    let mut seq = 0;
    let mut sale = 0u64;
    for tick in 0..ticks {
        let due = started + TICK * tick as u32;
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let at = Millis(now_ms());
        let mut entries = Vec::with_capacity(per_tick as usize * 3 + 1);
        entries.push(JournalEntry::AdmittedMany {
            at,
            fans: (0..per_tick)
                .map(|i| (FanId(sale + i + 1), Position(sale + i + 1)))
                .collect(),
        });
        for _ in 0..per_tick {
            sale += 1;
            let (hold, fan) = (HoldId(sale), FanId(sale));
            entries.push(JournalEntry::HoldPlaced {
                hold,
                fan,
                seats: vec![SeatIdx((sale % seats) as u32)],
                deadline: Millis(at.0 + 60_000),
            });
            entries.push(JournalEntry::PaymentSubmitted {
                hold,
                payment: PaymentId(sale),
                at,
            });
            entries.push(JournalEntry::Sold {
                hold,
                order: OrderId(sale),
                at,
            });
        }
        let records: Vec<JournalBytes> = entries
            .into_iter()
            .map(|entry| {
                seq += 1;
                let record = JournalRecord {
                    schema_version: SCHEMA_VERSION,
                    event: EVENT,
                    seq,
                    at,
                    entry,
                };
                JournalBytes {
                    seq,
                    bytes: record.encode().expect("encode"),
                }
            })
            .collect();
        store.append_journal(lease, &records).expect("append");
        written.lock().expect("written").push((seq, at.0));
    }
    done.store(true, Ordering::Release);
    (sale, started.elapsed())
}
