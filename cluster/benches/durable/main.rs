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
//! One file per bench beside this one (`store.rs`, `throughput.rs`,
//! `latency.rs`, `recovery.rs`); here the shared setup and measures.
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
    Acquisition, EventLease, JournalBytes, NodeFlags, NodeId, NodeRecord, Store, StoreError,
    StoredEvent,
};
use onsale_schema::message::{
    Area, Command, HoldRequest, PaymentSettled, ProviderAnswer, Reply, SaleCommand,
};
use onsale_schema::snapshot::{EventSnapshot, JournalRecord};
use onsale_schema::spec::EventSpec;
use onsale_schema::token::TokenKey;
use onsale_schema::{EventConfig, EventId, FanId, Millis, Position};

mod latency;
mod recovery;
mod store;
mod throughput;

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
    fn nodes(&self) -> Result<Vec<NodeRecord>, StoreError> {
        self.inner.nodes()
    }
    fn forget_node(&self, n: &NodeId) -> Result<(), StoreError> {
        self.inner.forget_node(n)
    }
    fn set_node_flags(&self, n: &NodeId, f: NodeFlags) -> Result<(), StoreError> {
        self.inner.set_node_flags(n, f)
    }
    fn node_flags(&self) -> Result<Vec<(NodeId, NodeFlags)>, StoreError> {
        self.inner.node_flags()
    }
    fn event_leases(&self) -> Result<Vec<EventLease>, StoreError> {
        self.inner.event_leases()
    }
    fn acquire_event_over(
        &self,
        e: EventId,
        n: &NodeId,
        t: u64,
        now: Millis,
        over: Option<&EventLease>,
    ) -> Result<Acquisition, StoreError> {
        self.inner.acquire_event_over(e, n, t, now, over)
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
    fn event_specs(&self) -> Result<Vec<(EventId, onsale_cluster::store::SpecBytes)>, StoreError> {
        self.inner.event_specs()
    }
    fn set_feed_retention(&self, on: bool) -> Result<(), StoreError> {
        self.inner.set_feed_retention(on)
    }
    fn feed_retention(&self) -> Result<bool, StoreError> {
        self.inner.feed_retention()
    }
    fn feed_cursor(
        &self,
        e: EventId,
    ) -> Result<Option<onsale_cluster::store::FeedCursor>, StoreError> {
        self.inner.feed_cursor(e)
    }
    fn put_feed_cursor(
        &self,
        e: EventId,
        cursor: onsale_cluster::store::FeedCursor,
    ) -> Result<(), StoreError> {
        self.inner.put_feed_cursor(e, cursor)
    }
    fn read_journal(
        &self,
        e: EventId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<JournalBytes>, StoreError> {
        self.inner.read_journal(e, after, limit)
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
        owns_events: true,
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
        ..EventConfig::default()
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

// ----- measures ---------------------------------------------------------------

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
