//! The ceiling under everything else: journal appends straight into the
//! SQLite store, one commit per batch, from one thread (as the journal
//! writer does), with the records a hold → pay → sell cycle produces.

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
