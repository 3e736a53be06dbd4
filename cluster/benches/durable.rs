//! Durable throughput, latency and recovery of one event on the embedded
//! store (SQLite file in a temp dir, WAL, `synchronous=FULL`), against the
//! targets of "Actors and crash-safe persistence":
//!
//! - `store`: the ceiling under everything else: journal appends alone,
//!   at several batch sizes.
//! - `throughput`: ≥ 100,000 hold → pay → sell cycles/s for one event
//!   actor. Many tasks drive cycles through `Node::call`; every reply is
//!   sent only once its journal records are durable (the output gate), so
//!   the rate counted is the durable rate. The group-commit batch sizes
//!   the writer achieved are printed beside it.
//! - `latency`: p99 request → durable acknowledgement ≤ 5 ms at 10,000
//!   sales/s. Open loop: cycles start on a fixed schedule whatever the
//!   replies do, and each command's latency is recorded.
//! - `recovery`: a 60,000-seat event with 1,000,000 fans queued, half the
//!   seats sold, open holds, a snapshot and a journal tail, back to
//!   serving in ≤ 1 s. Measured in process (split into store load,
//!   snapshot decode, rebuild, journal replay, and `Node::start` whole),
//!   and as a real process: the release `onsale` binary beside this bench
//!   (`cargo build --release -p onsale-gateway` first), from spawn to its
//!   "serving" line and to its first reply over the node RPC.
//!
//! The stadium is `venues/stadium.json`. Setup (creating the event,
//! joining and admitting fans) is never timed. Every load loop is bounded
//! in count and in time; everything stays on loopback. Each run gets a
//! fresh store and a fresh runtime, so nothing one run leaves behind
//! (checkout timers sleep until their deadlines) slows the next.
//!
//! On a shared machine rates and tails move with the neighbours' load and
//! with the disk's fsync time, so each run also prints the CPU time spent
//! per cycle (tokio workers and journal writer apart) and the store's own
//! commit times: those say where the time went whatever the noise.
//!
//! Run: `cargo bench -p onsale-cluster --bench durable [-- store|throughput|latency|recovery]`.
//! Knobs (environment): `DURABLE_RUNS` (default 3), `DURABLE_INFLIGHT`
//! (comma-separated in-flight cycle counts, default `256,1024,2048`),
//! `DURABLE_RATE` (cycles/s offered in `latency`, default 10,000),
//! `DURABLE_FANS` (fans queued in `recovery`, default 1,000,000),
//! `ONSALE_BIN` (the node binary for `recovery`).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use onsale_actors::EventCore;
use onsale_actors::clock::wall_now;
use onsale_actors::provider::Provider;
use onsale_cluster::node::{Node, NodeConfig};
use onsale_cluster::rpc::Client;
use onsale_cluster::store::sqlite::SqliteStore;
use onsale_cluster::store::{
    EventLease, JournalBytes, NodeId, NodeRecord, Store, StoreError, StoredEvent,
};
use onsale_schema::message::{
    Area, Command, HoldRequest, PaymentSettled, ProviderAnswer, Reply, SaleCommand,
};
use onsale_schema::snapshot::{EventSnapshot, JournalRecord};
use onsale_schema::spec::EventSpec;
use onsale_schema::token::TokenKey;
use onsale_schema::{EventConfig, EventId, FanId, Millis, Position};

const EVENT: EventId = EventId(1);
const NODE: &str = "bench-node";
const SECRET: &str = "durable bench secret, shared with the node process";
/// Every window long enough that nothing lapses during a run.
const WINDOW_MS: u64 = 3_600_000;
/// Cap on any one timed phase: a stuck run ends instead of hanging.
const PHASE_MAX: Duration = Duration::from_secs(60);
/// Fans joining at once during setup.
const JOIN_INFLIGHT: usize = 512;

fn main() {
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let wanted = |name: &str| filter.is_empty() || filter.iter().any(|f| name.contains(f.as_str()));
    let runs = env_u64("DURABLE_RUNS", 3);
    if wanted("store") {
        store::run(runs);
    }
    if wanted("throughput") {
        throughput::run(runs);
    }
    if wanted("latency") {
        latency::run(runs);
    }
    if wanted("recovery") {
        recovery::run(runs);
    }
}

/// A fresh runtime for each run: dropping it ends every task the run left
/// behind (checkout timers sleep until their deadlines), so one run's
/// leftovers never slow the next.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

// ----- the store, counted ---------------------------------------------------

/// The SQLite store, counting journal appends (group-commit batches) and
/// the time they take.
#[derive(Debug)]
struct Counted {
    inner: SqliteStore,
    appends: AtomicU64,
    records: AtomicU64,
    batch_max: AtomicU64,
    append_ns: AtomicU64,
    /// Each commit's time in µs, the first `COMMIT_SAMPLES_MAX` since a reset.
    commit_us: Mutex<Vec<u32>>,
    /// Each snapshot write's time in µs since a reset (compaction included).
    snapshot_us: Mutex<Vec<u32>>,
}

/// Commit times kept for percentiles (4 MB at most).
const COMMIT_SAMPLES_MAX: usize = 1_000_000;

#[derive(Clone, Copy, Debug, Default)]
struct AppendStats {
    appends: u64,
    records: u64,
    batch_max: u64,
    append_ns: u64,
}

impl AppendStats {
    fn since(self, before: AppendStats) -> AppendStats {
        AppendStats {
            appends: self.appends - before.appends,
            records: self.records - before.records,
            batch_max: self.batch_max,
            append_ns: self.append_ns - before.append_ns,
        }
    }

    /// Group commit over a phase that lasted `elapsed`.
    fn describe(self, elapsed: Duration) -> String {
        let appends = self.appends.max(1);
        format!(
            "{} commits, {:.1} records/commit (max {}), {:.2} ms/commit, store busy {:.0}%",
            self.appends,
            self.records as f64 / appends as f64,
            self.batch_max,
            self.append_ns as f64 / appends as f64 / 1e6,
            self.append_ns as f64 / elapsed.as_nanos().max(1) as f64 * 100.0,
        )
    }
}

impl Counted {
    fn open(path: &Path) -> Counted {
        Counted {
            inner: SqliteStore::open(path).expect("store opens"),
            appends: AtomicU64::new(0),
            records: AtomicU64::new(0),
            batch_max: AtomicU64::new(0),
            append_ns: AtomicU64::new(0),
            commit_us: Mutex::new(Vec::new()),
            snapshot_us: Mutex::new(Vec::new()),
        }
    }

    fn stats(&self) -> AppendStats {
        AppendStats {
            appends: self.appends.load(Ordering::Relaxed),
            records: self.records.load(Ordering::Relaxed),
            batch_max: self.batch_max.load(Ordering::Relaxed),
            append_ns: self.append_ns.load(Ordering::Relaxed),
        }
    }

    /// Start a measured phase: batch maximum and commit times from now on.
    fn reset(&self) {
        self.batch_max.store(0, Ordering::Relaxed);
        self.commit_us.lock().expect("not poisoned").clear();
        self.snapshot_us.lock().expect("not poisoned").clear();
    }

    /// Commit-time percentiles since the last reset.
    fn commit_times(&self) -> String {
        let mut us = self.commit_us.lock().expect("not poisoned").clone();
        if us.is_empty() {
            return "no commits".into();
        }
        us.sort_unstable();
        let at = |q: f64| f64::from(us[((us.len() as f64 * q) as usize).min(us.len() - 1)]) / 1e3;
        let snapshots = self.snapshot_us.lock().expect("not poisoned");
        format!(
            "commit p50 {:.2} ms p99 {:.2} ms max {:.2} ms; {} snapshots written, slowest {:.1} ms",
            at(0.5),
            at(0.99),
            f64::from(us[us.len() - 1]) / 1e3,
            snapshots.len(),
            f64::from(snapshots.iter().copied().max().unwrap_or(0)) / 1e3,
        )
    }
}

impl Store for Counted {
    fn backend(&self) -> &'static str {
        "sqlite (counted)"
    }
    fn heartbeat_node(&self, n: &NodeId, a: &str, t: u64, now: Millis) -> Result<(), StoreError> {
        self.inner.heartbeat_node(n, a, t, now)
    }
    fn live_nodes(&self, now: Millis) -> Result<Vec<NodeRecord>, StoreError> {
        self.inner.live_nodes(now)
    }
    fn acquire_event(
        &self,
        e: EventId,
        n: &NodeId,
        t: u64,
        now: Millis,
    ) -> Result<Option<EventLease>, StoreError> {
        self.inner.acquire_event(e, n, t, now)
    }
    fn renew_event(&self, l: &EventLease, t: u64, now: Millis) -> Result<EventLease, StoreError> {
        self.inner.renew_event(l, t, now)
    }
    fn release_event(&self, l: &EventLease) -> Result<(), StoreError> {
        self.inner.release_event(l)
    }
    fn event_lease(&self, e: EventId) -> Result<Option<EventLease>, StoreError> {
        self.inner.event_lease(e)
    }
    fn append_journal(&self, l: &EventLease, records: &[JournalBytes]) -> Result<(), StoreError> {
        let started = Instant::now();
        let result = self.inner.append_journal(l, records);
        let ns = started.elapsed().as_nanos() as u64;
        self.append_ns.fetch_add(ns, Ordering::Relaxed);
        let mut us = self.commit_us.lock().expect("not poisoned");
        if us.len() < COMMIT_SAMPLES_MAX {
            us.push(u32::try_from(ns / 1_000).unwrap_or(u32::MAX));
        }
        drop(us);
        self.appends.fetch_add(1, Ordering::Relaxed);
        self.records
            .fetch_add(records.len() as u64, Ordering::Relaxed);
        self.batch_max
            .fetch_max(records.len() as u64, Ordering::Relaxed);
        result
    }
    fn put_snapshot(&self, l: &EventLease, seq: u64, bytes: &[u8]) -> Result<(), StoreError> {
        let started = Instant::now();
        let result = self.inner.put_snapshot(l, seq, bytes);
        let us = u32::try_from(started.elapsed().as_micros()).unwrap_or(u32::MAX);
        self.snapshot_us.lock().expect("not poisoned").push(us);
        result
    }
    fn reserve_counter(&self, l: &EventLease, ceiling: u64) -> Result<u64, StoreError> {
        self.inner.reserve_counter(l, ceiling)
    }
    fn load_event(&self, e: EventId) -> Result<StoredEvent, StoreError> {
        self.inner.load_event(e)
    }
    fn put_event_spec(&self, e: EventId, spec: &[u8]) -> Result<(), StoreError> {
        self.inner.put_event_spec(e, spec)
    }
    fn event_specs(&self) -> Result<Vec<(EventId, Vec<u8>)>, StoreError> {
        self.inner.event_specs()
    }
}

// ----- a node on a fresh store, and the event ---------------------------------

/// A node over a counted SQLite store in a fresh temp dir.
struct Bench {
    _dir: tempfile::TempDir,
    path: PathBuf,
    store: Arc<Counted>,
    node: Node,
}

impl Bench {
    async fn start(snapshot_every_records: u64) -> Bench {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("onsale.db");
        let store = Arc::new(Counted::open(&path));
        let node = Node::start(node_config(
            Arc::clone(&store) as Arc<dyn Store>,
            snapshot_every_records,
        ))
        .await
        .expect("node starts");
        Bench {
            _dir: dir,
            path,
            store,
            node,
        }
    }

    async fn stop(self) {
        self.node.stop();
        // Let the event actor and its journal writer wind down.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    async fn create_stadium(&self, config: EventConfig) {
        let created = self.node.create_event(stadium_spec(config)).await;
        assert!(
            matches!(created, Reply::Overview { .. }),
            "create: {created:?}"
        );
        let opened = self
            .node
            .call(
                EVENT,
                Command::Sale {
                    command: SaleCommand::Open,
                },
            )
            .await;
        assert!(matches!(opened, Reply::Sale { .. }), "open: {opened:?}");
    }

    async fn overview(&self) -> onsale_schema::message::EventOverview {
        match self.node.call(EVENT, Command::Overview).await {
            Reply::Overview { overview } => overview,
            other => panic!("overview: {other:?}"),
        }
    }
}

fn node_config(store: Arc<dyn Store>, snapshot_every_records: u64) -> NodeConfig {
    NodeConfig {
        node: NodeId(NODE.into()),
        addr: "127.0.0.1:1".into(), // never listened on: the bench calls in process
        store,
        key: TokenKey::derive(SECRET.as_bytes()),
        provider: Provider::Webhook, // the bench delivers the answers
        lease_ttl_ms: 10_000,
        snapshot_every_records,
        payment_query_after_ms: onsale_actors::checkout_core::PAYMENT_QUERY_AFTER_MS,
    }
}

fn stadium_json() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../venues/stadium.json");
    std::fs::read_to_string(path).expect("venues/stadium.json")
}

fn stadium_spec(config: EventConfig) -> EventSpec {
    EventSpec {
        event: EVENT,
        name: "Durable bench".into(),
        city: "Loopback".into(),
        starts_at: Millis(wall_now().0 + 86_400_000),
        venue_json: stadium_json(),
        config,
    }
}

fn config(shoppers_max: u32, full_factor: u32) -> EventConfig {
    EventConfig {
        tickets_per_fan_max: 4,
        full_factor,
        shoppers_max,
        show_up_window_ms: WINDOW_MS,
        shopping_window_ms: WINDOW_MS,
        checkout_window_ms: WINDOW_MS,
        provider_timeout_ms: WINDOW_MS,
        counter_block: 1 << 24,
    }
}

/// Scrambled 64-bit fan ids, as an identity provider hands them out.
fn fan(i: u64) -> FanId {
    let mut z = i.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    FanId(z ^ (z >> 31))
}

/// Join fans `range` (untimed setup); returns them in queue order, so that
/// fans taken from the front are admitted first.
async fn join(node: &Node, range: std::ops::Range<u64>) -> Vec<FanId> {
    let next = Arc::new(AtomicU64::new(range.start));
    let joined = Arc::new(Mutex::new(Vec::with_capacity(
        (range.end - range.start) as usize,
    )));
    let mut tasks = Vec::new();
    for _ in 0..JOIN_INFLIGHT {
        let (node, next, joined, end) = (
            node.clone(),
            Arc::clone(&next),
            Arc::clone(&joined),
            range.end,
        );
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= end {
                    break;
                }
                let f = fan(i);
                match node.call(EVENT, Command::Join { fan: f }).await {
                    Reply::Joined { joined, .. } => mine.push((joined.position, f)),
                    other => panic!("join: {other:?}"),
                }
            }
            joined.lock().expect("not poisoned").extend(mine);
        }));
    }
    for task in tasks {
        task.await.expect("join task");
    }
    let mut joined = std::mem::take(&mut *joined.lock().expect("not poisoned"));
    joined.sort_unstable();
    joined.into_iter().map(|(_, f)| f).collect()
}

// ----- one cycle ------------------------------------------------------------

/// How a cycle ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    Sold,
    HoldRejected,
    Other,
}

/// Latencies of one cycle's three commands, request → durable reply.
#[derive(Clone, Copy, Debug, Default)]
struct CycleTimes {
    hold: Duration,
    pay: Duration,
    answer: Duration,
}

/// Hold the best two seats, pay, and deliver the provider's confirmation.
async fn cycle(node: &Node, fan: FanId) -> (Outcome, CycleTimes) {
    let mut times = CycleTimes::default();
    let request = HoldRequest::Best {
        count: 2,
        area: Area::Anywhere,
    };
    let t = Instant::now();
    let reply = node.call(EVENT, Command::Hold { fan, request }).await;
    times.hold = t.elapsed();
    let hold = match reply {
        Reply::HoldPlaced { placed } => placed.hold,
        Reply::HoldRejected { .. } => return (Outcome::HoldRejected, times),
        _ => return (Outcome::Other, times),
    };
    let t = Instant::now();
    let reply = node.call(EVENT, Command::SubmitPayment { fan, hold }).await;
    times.pay = t.elapsed();
    let Reply::PaymentStarted { started } = reply else {
        return (Outcome::Other, times);
    };
    let answer = Command::ProviderAnswer {
        payment: started.payment,
        answer: ProviderAnswer::Confirmed,
    };
    let t = Instant::now();
    let reply = node.call(EVENT, answer).await;
    times.answer = t.elapsed();
    match reply {
        Reply::PaymentSettled {
            settled: PaymentSettled::Sold { .. },
        } => (Outcome::Sold, times),
        _ => (Outcome::Other, times),
    }
}

// ----- 0. the store alone -------------------------------------------------------

/// The ceiling under everything else: journal appends straight into the
/// SQLite store, one commit per batch, from one thread (as the journal
/// writer does), with the records a hold → pay → sell cycle produces.
mod store {
    use onsale_schema::snapshot::{JournalEntry, SCHEMA_VERSION};
    use onsale_schema::{HoldId, OrderId, PaymentId, SeatIdx};

    use super::*;

    const BATCHES: [usize; 6] = [1, 16, 128, 512, 1_024, 4_096];
    /// Per batch size: at most this long, or this many records.
    const PHASE: Duration = Duration::from_millis(1_500);
    const RECORDS_MAX: u64 = 2_000_000;

    pub fn run(runs: u64) {
        println!("== store: SqliteStore::append_journal alone, cycle-shaped records");
        for run in 1..=runs {
            let dir = tempfile::tempdir().expect("temp dir");
            let store = SqliteStore::open(dir.path().join("onsale.db")).expect("store opens");
            let lease = store
                .acquire_event(EVENT, &NodeId(NODE.into()), 60_000, wall_now())
                .expect("acquire")
                .expect("free");
            let mut seq = 0;
            for batch in BATCHES {
                let (records, elapsed, commit_max) = phase(&store, &lease, batch, &mut seq);
                println!(
                    "run {run} batch {batch:>5}: {:>8.0} records/s, {:.3} ms/commit (max {:.2} ms)",
                    records as f64 / elapsed.as_secs_f64(),
                    ms(elapsed) / (records / batch as u64).max(1) as f64,
                    ms(commit_max),
                );
            }
        }
    }

    fn phase(
        store: &SqliteStore,
        lease: &EventLease,
        batch: usize,
        seq: &mut u64,
    ) -> (u64, Duration, Duration) {
        let started = Instant::now();
        let mut records = 0;
        let mut commit_max = Duration::ZERO;
        while started.elapsed() < PHASE && records < RECORDS_MAX {
            let bytes: Vec<JournalBytes> = (0..batch)
                .map(|_| {
                    *seq += 1;
                    record(*seq)
                })
                .collect();
            let t = Instant::now();
            store.append_journal(lease, &bytes).expect("append");
            commit_max = commit_max.max(t.elapsed());
            records += batch as u64;
        }
        (records, started.elapsed(), commit_max)
    }

    /// The five records of a cycle, in turn: entered, hold, admitted (the
    /// next fan), payment, sale.
    fn record(seq: u64) -> JournalBytes {
        let n = seq / 5;
        let fan = fan(n);
        let at = Millis(1_764_000_000_000 + seq);
        let entry = match seq % 5 {
            0 => JournalEntry::Entered { fan },
            1 => JournalEntry::HoldPlaced {
                hold: HoldId(n),
                fan,
                seats: vec![SeatIdx(n as u32 * 2), SeatIdx(n as u32 * 2 + 1)],
                deadline: Millis(at.0 + 300_000),
            },
            2 => JournalEntry::AdmittedMany {
                at,
                fans: vec![(super::fan(n + 5_000), Position(n + 5_000))],
            },
            3 => JournalEntry::PaymentSubmitted {
                hold: HoldId(n),
                payment: PaymentId(n),
                at,
            },
            _ => JournalEntry::Sold {
                hold: HoldId(n),
                order: OrderId(n),
                at,
            },
        };
        let record = JournalRecord {
            schema_version: SCHEMA_VERSION,
            event: EVENT,
            seq,
            at,
            entry,
        };
        JournalBytes {
            seq,
            bytes: record.encode().expect("encodes"),
        }
    }
}

// ----- 1. throughput ----------------------------------------------------------

mod throughput {
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
}

// ----- 2. latency at a fixed offered rate -------------------------------------

mod latency {
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
}

/// CPU time this process's threads used so far, in ms: (tokio workers and
/// everything else, journal writers). Linux only; zeros elsewhere. Under
/// a shared machine this is the figure that does not depend on the noise.
fn cpu_ms() -> (u64, u64) {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return (0, 0);
    };
    let (mut other, mut journal) = (0, 0);
    for task in tasks.flatten() {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue;
        };
        // "pid (comm) state ..." — comm may hold spaces; fields follow ')'.
        let Some((head, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks: u64 = fields
            .get(11..13)
            .map_or(0, |f| f.iter().filter_map(|v| v.parse::<u64>().ok()).sum());
        // Clock ticks are 10 ms on Linux (USER_HZ = 100).
        if head.contains("(journal-") {
            journal += ticks * 10;
        } else {
            other += ticks * 10;
        }
    }
    (other, journal)
}

/// This process's resident memory, in MB (Linux; 0 elsewhere).
fn rss_mb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb / 1024)
}

/// CPU ms spent between two readings, per cycle, in µs.
fn per_cycle_us(after_ms: u64, before_ms: u64, cycles: u64) -> f64 {
    (after_ms.saturating_sub(before_ms) * 1_000) as f64 / cycles.max(1) as f64
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

// ----- 3. recovery ------------------------------------------------------------

mod recovery {
    use super::*;

    /// Sales before the queue fills, and after: 15,000 × 2 seats = half
    /// the stadium. The sales after the queue filled take the journal past
    /// a snapshot (so the snapshot counts the queue) and leave a tail.
    const SALES_BEFORE: u64 = 5_000;
    const SALES_AFTER: u64 = 10_000;
    /// Holds left open (unpaid) and paying (no answer yet) at the crash.
    const OPEN_HOLDS: u64 = 1_500;
    const PAYING_HOLDS: u64 = 500;
    const SHOPPERS: u32 = 5_000;
    /// Cycles in flight while preparing.
    const INFLIGHT: usize = 512;

    pub fn run(runs: u64) {
        let fans = env_u64("DURABLE_FANS", 1_000_000);
        println!(
            "== recovery: stadium, {} sales, {OPEN_HOLDS} open + {PAYING_HOLDS} paying holds, \
             {fans} fans queued",
            SALES_BEFORE + SALES_AFTER
        );
        let prepared = runtime().block_on(prepare(fans));
        for run in 1..=runs {
            split(&prepared.path, run);
            runtime().block_on(in_process(&prepared.path, run));
        }
        match node_binary() {
            Some(bin) => {
                for run in 1..=runs {
                    process(&bin, &prepared.path, run);
                }
            }
            None => println!(
                "process: no release `onsale` binary beside the bench; \
                 run `cargo build --release -p onsale-gateway` (same CARGO_TARGET_DIR) or set ONSALE_BIN"
            ),
        }
    }

    pub struct Prepared {
        _dir: tempfile::TempDir,
        path: PathBuf,
    }

    /// Through an in-process node, as a live onsale would leave the store.
    async fn prepare(fans: u64) -> Prepared {
        let started = Instant::now();
        let bench = Bench::start(onsale_actors::event_actor::SNAPSHOT_EVERY_RECORDS).await;
        let full_factor = 1_000;
        bench.create_stadium(config(SHOPPERS, full_factor)).await;
        let sales = (SALES_BEFORE + SALES_AFTER) as usize;
        let buyers = sales as u64 + OPEN_HOLDS + PAYING_HOLDS;
        let buying = join(&bench.node, 0..buyers + u64::from(SHOPPERS)).await;
        sell(&bench.node, &buying[..SALES_BEFORE as usize]).await;
        let first = buyers + u64::from(SHOPPERS);
        let queued = join(&bench.node, first..first + fans).await;
        sell(&bench.node, &buying[SALES_BEFORE as usize..sales]).await;
        hold_open(&bench.node, &buying[sales..buyers as usize]).await;
        let overview = bench.overview().await;
        let stored = bench.store.load_event(EVENT).expect("load");
        println!(
            "prepared in {:.1} s: sold {} held {} waiting {} ({} joined); snapshot at seq {} ({} bytes), \
             journal tail {} records ({} bytes), counter ceiling {}",
            started.elapsed().as_secs_f64(),
            overview.sold,
            overview.held,
            overview.waiting,
            queued.len(),
            stored.snapshot.as_ref().map_or(0, |s| s.0),
            stored.snapshot.as_ref().map_or(0, |s| s.1.len()),
            stored.journal.len(),
            stored.journal.iter().map(|r| r.bytes.len()).sum::<usize>(),
            stored.counter_ceiling,
        );
        let Bench {
            _dir, path, node, ..
        } = bench;
        node.stop();
        tokio::time::sleep(Duration::from_millis(300)).await;
        Prepared { _dir, path }
    }

    async fn sell(node: &Node, fans: &[FanId]) {
        let fans = Arc::new(fans.to_vec());
        let next = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..INFLIGHT {
            let (node, fans, next) = (node.clone(), Arc::clone(&fans), Arc::clone(&next));
            tasks.push(tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= fans.len() {
                        break;
                    }
                    let (outcome, _) = cycle(&node, fans[i]).await;
                    assert_eq!(outcome, Outcome::Sold, "preparing sales");
                }
            }));
        }
        for task in tasks {
            task.await.expect("sale task");
        }
    }

    /// Hold two seats for each fan; the last `PAYING_HOLDS` also pay (the
    /// provider never answers).
    async fn hold_open(node: &Node, fans: &[FanId]) {
        for (i, &fan) in fans.iter().enumerate() {
            let request = HoldRequest::Best {
                count: 2,
                area: Area::Anywhere,
            };
            let Reply::HoldPlaced { placed } =
                node.call(EVENT, Command::Hold { fan, request }).await
            else {
                panic!("open hold refused");
            };
            if i as u64 >= OPEN_HOLDS {
                let pay = Command::SubmitPayment {
                    fan,
                    hold: placed.hold,
                };
                let reply = node.call(EVENT, pay).await;
                assert!(matches!(reply, Reply::PaymentStarted { .. }), "{reply:?}");
            }
        }
    }

    /// The restore path, step by step, on a store opened afresh.
    fn split(path: &Path, run: u64) {
        let t = Instant::now();
        let store = SqliteStore::open(path).expect("store opens");
        let open = t.elapsed();
        let t = Instant::now();
        let specs = store.event_specs().expect("specs");
        // Decoding a spec checks its venue, which parses the venue file.
        let spec = EventSpec::decode(&specs[0].1).expect("spec decodes");
        let spec_t = t.elapsed();
        let t = Instant::now();
        let venue = Arc::new(spec.venue().expect("venue"));
        let venue_t = t.elapsed();
        let t = Instant::now();
        let stored = store.load_event(EVENT).expect("load");
        let load = t.elapsed();
        let t = Instant::now();
        let (_, bytes) = stored.snapshot.as_ref().expect("a snapshot was taken");
        let snapshot = EventSnapshot::decode(bytes).expect("snapshot decodes");
        let decode = t.elapsed();
        let t = Instant::now();
        let mut core = EventCore::restore(venue, &snapshot, Position(stored.counter_ceiling))
            .expect("restores");
        let rebuild = t.elapsed();
        let t = Instant::now();
        let records: Vec<JournalRecord> = stored
            .journal
            .iter()
            .map(|r| JournalRecord::decode(&r.bytes).expect("record decodes"))
            .collect();
        let decode_journal = t.elapsed();
        let t = Instant::now();
        for record in &records {
            core.replay(record).expect("replays");
        }
        let replay = t.elapsed();
        // What the live event pays per snapshot: built on the actor,
        // encoded on the journal writer.
        let t = Instant::now();
        let taken = core.snapshot();
        let take = t.elapsed();
        let t = Instant::now();
        let encoded = taken.encode().expect("snapshot encodes");
        let encode = t.elapsed();
        println!(
            "snapshot run {run}: taking one {:.1} ms (event actor), encoding {:.1} ms ({} bytes, journal writer)",
            ms(take),
            ms(encode),
            encoded.len()
        );
        println!(
            "split run {run}: open {:.1} ms, spec decode {:.1} ms, venue {:.1} ms, load {:.1} ms, \
             snapshot decode {:.1} ms, rebuild {:.1} ms, journal decode {:.1} ms + replay {:.1} ms \
             ({} records); waiting {}",
            ms(open),
            ms(spec_t),
            ms(venue_t),
            ms(load),
            ms(decode),
            ms(rebuild),
            ms(decode_journal),
            ms(replay),
            records.len(),
            core.waiting(),
        );
    }

    /// `Node::start` (activates every event) and the first reply, in process.
    async fn in_process(path: &Path, run: u64) {
        let t = Instant::now();
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(path).expect("store opens"));
        let node = Node::start(node_config(
            store,
            onsale_actors::event_actor::SNAPSHOT_EVERY_RECORDS,
        ))
        .await
        .expect("node starts");
        let serving = t.elapsed();
        let reply = node.call(EVENT, Command::Overview).await;
        let first = t.elapsed();
        let Reply::Overview { overview } = reply else {
            panic!("overview: {reply:?}");
        };
        println!(
            "in-process run {run}: Node::start {:.1} ms, first reply {:.1} ms (sold {} held {} waiting {})",
            ms(serving),
            ms(first),
            overview.sold,
            overview.held,
            overview.waiting
        );
        node.stop();
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    fn node_binary() -> Option<PathBuf> {
        if let Ok(bin) = std::env::var("ONSALE_BIN") {
            return Some(PathBuf::from(bin));
        }
        // target/release/deps/durable-<hash> → target/release/onsale
        let exe = std::env::current_exe().ok()?;
        let bin = exe.parent()?.parent()?.join("onsale");
        bin.exists().then_some(bin)
    }

    /// A real process: spawn → "serving" line → first reply over RPC.
    fn process(bin: &Path, path: &Path, run: u64) {
        use std::io::{BufRead, BufReader};
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let addr = format!("127.0.0.1:{port}");
        let started = Instant::now();
        let mut child = std::process::Command::new(bin)
            .args(["--rpc", &addr, "--node-id", NODE, "--provider", "webhook"])
            .arg("--store")
            .arg(path)
            .env("ONSALE_LOG", "info")
            .env("ONSALE_TOKEN_SECRET", SECRET)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("node spawns");
        let stderr = child.stderr.take().expect("stderr");
        let logs = std::thread::spawn(move || {
            BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
                .filter(|l| l.contains("restore_ms") || l.contains("ready_ms"))
                .map(|l| strip_ansi(&l))
                .collect::<Vec<_>>()
        });
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let serving = loop {
            match lines.next() {
                Some(Ok(line)) if line.contains(" serving on ") => break Some(started.elapsed()),
                Some(Ok(_)) => {}
                _ => break None,
            }
            if started.elapsed() > PHASE_MAX {
                break None;
            }
        };
        let first = serving.and_then(|_| {
            runtime().block_on(async {
                let client = Client::connect(&addr).await.ok()?;
                let reply = client.call(EVENT, Command::Overview).await.ok()?;
                matches!(reply, Reply::Overview { .. }).then(|| started.elapsed())
            })
        });
        let _ = child.kill();
        let _ = child.wait();
        let logs = logs.join().unwrap_or_default();
        println!(
            "process run {run}: spawn → serving {}, → first reply {}",
            serving.map_or("never".into(), |d| format!("{:.1} ms", ms(d))),
            first.map_or("never".into(), |d| format!("{:.1} ms", ms(d))),
        );
        for line in logs {
            println!("    {line}");
        }
    }

    fn strip_ansi(line: &str) -> String {
        let mut out = String::with_capacity(line.len());
        let mut chars = line.chars();
        while let Some(c) = chars.next() {
            if c == '\u{1b}' {
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            } else {
                out.push(c);
            }
        }
        out
    }
}
