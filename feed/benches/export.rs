//! The Parquet export of a sold-out 60,000-seat stadium (`venues/stadium.json`,
//! the demo's event 2), from a real SQLite store, as `onsale export` runs it:
//! the store opened as a node opens it, then the export.
//!
//!     cargo bench -p onsale-feed --bench export
//!
//! Two stores, each sold out in parties of two (singles once fair share
//! forces them) with a snapshot every 50,000 journal records as a node
//! takes them:
//!
//! - *feed kept*: the change feed's retention on and nothing read, so the
//!   store keeps the whole journal (the largest timeline and admissions);
//! - *no feed*: compaction deletes what each snapshot folds in.
//!
//! Each is exported `EXPORT_RUNS` times (default 7) in process, then, if a
//! release `onsale` binary sits beside the bench (`cargo build --release
//! -p onsale-node`, or `ONSALE_BIN`), as a process. Prints every run and
//! the spread (min, median, max).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use onsale_cluster::store::Store;
use onsale_cluster::store::open::{OpenMode, open_store};
use onsale_feed::export::fixture::{self, Seller};
use onsale_feed::export::{Exported, export};
use onsale_schema::{EventId, Millis};

const EVENT: EventId = EventId(2);
const STADIUM: &str = include_str!("../../venues/stadium.json");
/// As the node's default `--snapshot-every`.
const SNAPSHOT_EVERY: u64 = 50_000;

fn main() {
    let runs: usize = std::env::var("EXPORT_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(7);
    let dir = tempfile::tempdir().expect("temporary directory");
    for (name, retain) in [("feed kept", true), ("no feed", false)] {
        let store = dir.path().join(format!("{}.db", name.replace(' ', "-")));
        prepare(&store, retain);
        let mut totals = Vec::new();
        for run in 1..=runs {
            let out = dir.path().join(format!("out-{run}"));
            let (total, exported) = in_process(&store, &out, run);
            if run == 1 {
                print!("{exported}");
            }
            totals.push(total);
            std::fs::remove_dir_all(&out).expect("clean up");
        }
        spread(&format!("{name}, in process"), &mut totals);
        if let Some(bin) = onsale_binary().filter(|bin| knows_export(bin)) {
            let mut totals: Vec<Duration> = (1..=runs)
                .map(|run| process(&bin, &store, &dir.path().join(format!("proc-{run}"))))
                .collect();
            spread(&format!("{name}, `onsale export` process"), &mut totals);
        } else {
            println!(
                "process: no release `onsale` with `export` beside the bench; run `cargo build \
                 --release -p onsale-node` (same CARGO_TARGET_DIR) or set ONSALE_BIN"
            );
        }
    }
}

/// Sell the stadium out into a new store at `path`.
fn prepare(path: &Path, retain: bool) {
    let started = Instant::now();
    let spec = fixture::spec(EVENT, STADIUM);
    let mut seller = Seller::create(path, &spec, fixture::START);
    seller
        .store()
        .set_feed_retention(retain)
        .expect("retention set");
    seller.snapshot_every(SNAPSHOT_EVERY);
    seller.open();
    seller.sell_out(2, 20);
    seller.flush();
    let stored = seller.store().load_event(EVENT).expect("load");
    let kept = seller
        .store()
        .read_journal(EVENT, 0, usize::MAX)
        .expect("journal");
    println!(
        "== {} (feed retention {}): prepared in {:.1} s: {} orders, journal seq {}, snapshot at \
         seq {} ({} bytes), {} records kept",
        path.display(),
        if retain { "on" } else { "off" },
        started.elapsed().as_secs_f64(),
        seller.core().orders().len(),
        seller.core().journal_seq(),
        stored.snapshot.as_ref().map_or(0, |s| s.0),
        stored.snapshot.as_ref().map_or(0, |s| s.1.len()),
        kept.len(),
    );
}

/// One export as `onsale export` does it: open the store, export.
fn in_process(store: &Path, out: &Path, run: usize) -> (Duration, Exported) {
    let started = Instant::now();
    let (opened, _) = open_store(store, OpenMode::Existing).expect("store opens");
    let open = started.elapsed();
    let exported = export(&opened, EVENT, out, Millis(0)).expect("exports");
    let total = started.elapsed();
    println!(
        "run {run}: {:.0} ms (open {:.0} ms, export {:.0} ms)",
        ms(total),
        ms(open),
        ms(total - open)
    );
    (total, exported)
}

fn process(bin: &Path, store: &Path, out: &Path) -> Duration {
    let started = Instant::now();
    let status = std::process::Command::new(bin)
        .args(["export", "--event", &EVENT.0.to_string(), "--out"])
        .arg(out)
        .arg("--store")
        .arg(store)
        .stdout(std::process::Stdio::null())
        .status()
        .expect("onsale runs");
    let elapsed = started.elapsed();
    assert!(status.success(), "onsale export failed: {status}");
    std::fs::remove_dir_all(out).expect("clean up");
    println!("process: {:.0} ms", ms(elapsed));
    elapsed
}

fn spread(name: &str, totals: &mut [Duration]) {
    totals.sort();
    println!(
        "{name}: {} runs, min {:.0} ms, median {:.0} ms, max {:.0} ms",
        totals.len(),
        ms(totals[0]),
        ms(totals[totals.len() / 2]),
        ms(totals[totals.len() - 1])
    );
}

fn onsale_binary() -> Option<PathBuf> {
    if let Ok(bin) = std::env::var("ONSALE_BIN") {
        return Some(PathBuf::from(bin));
    }
    // target/release/deps/export-<hash> → target/release/onsale
    let exe = std::env::current_exe().ok()?;
    let bin = exe.parent()?.parent()?.join("onsale");
    bin.exists().then_some(bin)
}

/// A binary built before `onsale export` existed refuses the command.
fn knows_export(bin: &Path) -> bool {
    std::process::Command::new(bin)
        .args(["export", "--help"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1_000.0
}
