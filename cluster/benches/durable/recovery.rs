//! Recovery: a 60,000-seat event with 1,000,000 fans queued, half sold,
//! open holds, a snapshot and a journal tail, back to serving; in process
//! (split by phase) and as a real `onsale` process.

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
        let Reply::HoldPlaced { placed } = node.call(EVENT, Command::Hold { fan, request }).await
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
    let spec_bytes = specs[0].1.as_ref().expect("spec intact");
    let spec = EventSpec::decode(spec_bytes).expect("spec decodes");
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
    let mut core =
        EventCore::restore(venue, &snapshot, Position(stored.counter_ceiling)).expect("restores");
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

/// The node RPC's credential given to the node process.
const OPERATOR_TOKEN: &str = "durable bench operator token";

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
        .env("ONSALE_OPERATOR_TOKEN", OPERATOR_TOKEN)
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
            let client = Client::connect(&addr, OPERATOR_TOKEN.as_bytes())
                .await
                .ok()?;
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
