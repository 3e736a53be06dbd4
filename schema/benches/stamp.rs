//! Proof-of-work stamps, one core, against the target of issue 14: the
//! gateway checks ≥ 200,000 stamps/s (`verify`, `spend*`,
//! `verify_and_spend`). Also what a fan's solve costs in Rust (`solve/*`:
//! 2^bits tries on average; `solve_tries` gives the rate per try, the
//! steadier figure).
//!
//! The pool is 4,096 challenges at 16 bits with their answers, for distinct
//! fans (a check costs the same at any difficulty). Solving it takes 2^28
//! tries (tens of seconds), so the answers are kept in
//! `CARGO_TARGET_TMPDIR` and re-checked on the next run; the first run
//! solves on every core it may use.
//!
//! Run: `taskset -c 1 cargo bench -p onsale-schema --bench stamp`.

use std::sync::LazyLock;

use divan::counter::ItemsCount;
use divan::{Bencher, black_box};
use onsale_schema::stamp::{self, Challenge, Difficulty, SpentStamps, VerifiedStamp};
use onsale_schema::token::TokenKey;
use onsale_schema::{EventId, FanId, Millis, limits};

fn main() {
    LazyLock::force(&POOL);
    LazyLock::force(&LOADED);
    divan::main();
}

/// A plausible wall-clock `now` (Unix-epoch ms, late 2025).
const NOW: Millis = Millis(1_764_000_000_000);
const EVENT: EventId = EventId(7);
const POOL_LEN: usize = 4_096;
/// Verifying costs the same whatever the bits (one SHA-256 and one tag);
/// 16 bits keep the pool's first solve to well under a minute.
const POOL_BITS: u8 = 16;
/// Stamps already spent in `spend_loaded`: half of the bound.
const LOADED_LEN: usize = limits::SPENT_STAMPS_MAX / 2;
const CACHE: &str = concat!(env!("CARGO_TARGET_TMPDIR"), "/stamp-pool-v1-16bits.txt");

static KEY: LazyLock<TokenKey> = LazyLock::new(|| TokenKey::derive(b"bench secret"));

/// A challenge with its answer.
struct Solved {
    text: String,
    fan: FanId,
    counter: u64,
}

/// A fan id as an identity provider hands them out: scrambled, < 2^53.
fn fan(i: u64) -> FanId {
    FanId((i.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 11).max(1))
}

fn challenge(i: u64, bits: u8, issued_at: Millis) -> Challenge {
    let mut nonce = [0u8; 16];
    nonce[..8].copy_from_slice(&i.to_le_bytes());
    nonce[8..].copy_from_slice(&issued_at.0.to_le_bytes());
    Challenge {
        event: EVENT,
        fan: fan(i),
        difficulty: Difficulty::from_bits(bits).unwrap(),
        issued_at,
        nonce,
    }
}

static POOL: LazyLock<Vec<Solved>> = LazyLock::new(|| {
    let texts: Vec<(String, FanId)> = (0..POOL_LEN as u64)
        .map(|i| (stamp::issue(&KEY, &challenge(i, POOL_BITS, NOW)), fan(i)))
        .collect();
    let counters = cached(&texts).unwrap_or_else(|| solve_all(&texts));
    let pool: Vec<Solved> = texts
        .into_iter()
        .zip(counters)
        .map(|((text, fan), counter)| Solved { text, fan, counter })
        .collect();
    for solved in &pool {
        assert!(stamp::verify(&KEY, &solved.text, solved.counter, EVENT, solved.fan, NOW).is_ok());
    }
    pool
});

/// The answers kept by an earlier run, if they are for these challenges.
fn cached(texts: &[(String, FanId)]) -> Option<Vec<u64>> {
    let file = std::fs::read_to_string(CACHE).ok()?;
    let mut counters = Vec::with_capacity(POOL_LEN);
    for (line, (text, fan)) in file.lines().zip(texts) {
        let (cached_text, counter) = line.split_once(' ')?;
        let counter = counter.parse().ok()?;
        let good = stamp::verify(&KEY, text, counter, EVENT, *fan, NOW).is_ok();
        if cached_text != text || !good {
            return None;
        }
        counters.push(counter);
    }
    (counters.len() == POOL_LEN).then_some(counters)
}

fn solve_all(texts: &[(String, FanId)]) -> Vec<u64> {
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    eprintln!("[pool] solving {POOL_LEN} challenges at {POOL_BITS} bits on {threads} threads");
    let chunk = POOL_LEN.div_ceil(threads);
    let counters: Vec<u64> = std::thread::scope(|scope| {
        let workers: Vec<_> = texts
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || {
                    part.iter()
                        .map(|(text, _)| stamp::solve(text, u64::MAX).unwrap())
                        .collect::<Vec<u64>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|worker| worker.join().unwrap())
            .collect()
    });
    let lines: String = texts
        .iter()
        .zip(&counters)
        .map(|((text, _), counter)| format!("{text} {counter}\n"))
        .collect();
    if let Err(e) = std::fs::write(CACHE, lines) {
        eprintln!("[pool] could not keep the answers in {CACHE}: {e}");
    }
    counters
}

fn verified() -> Vec<VerifiedStamp> {
    POOL.iter()
        .map(|s| stamp::verify(&KEY, &s.text, s.counter, EVENT, s.fan, NOW).unwrap())
        .collect()
}

/// A spent set holding `LOADED_LEN` stamps issued over the last lifetime,
/// as a gateway's is under a steady flood.
static LOADED: LazyLock<SpentStamps> = LazyLock::new(|| {
    let mut spent = SpentStamps::new();
    let step = limits::STAMP_TTL_MS as f64 / LOADED_LEN as f64;
    for i in 0..LOADED_LEN as u64 {
        let issued_at = Millis(NOW.0 - limits::STAMP_TTL_MS + (i as f64 * step) as u64);
        let text = stamp::issue(&KEY, &challenge(1 << 40 | i, 0, issued_at));
        let stamp = stamp::verify(&KEY, &text, 0, EVENT, fan(1 << 40 | i), NOW).unwrap();
        spent.spend(&stamp, NOW).unwrap();
    }
    spent
});

/// One stamp checked: tag, claims, age and one SHA-256 of the work.
#[divan::bench]
fn verify(bencher: Bencher<'_, '_>) {
    let mut next = 0;
    bencher.counter(ItemsCount::new(1usize)).bench_local(|| {
        let s = &POOL[next % POOL_LEN];
        next += 1;
        stamp::verify(&KEY, black_box(&s.text), s.counter, EVENT, s.fan, NOW)
    });
}

/// The pool's stamps spent into an empty set.
#[divan::bench]
fn spend(bencher: Bencher<'_, '_>) {
    let stamps = verified();
    bencher
        .counter(ItemsCount::new(POOL_LEN))
        .with_inputs(SpentStamps::new)
        .bench_local_values(|mut spent| {
            for stamp in &stamps {
                spent.spend(stamp, NOW).unwrap();
            }
            spent
        });
}

/// The pool's stamps spent into a set already holding half its bound.
#[divan::bench(sample_count = 30)]
fn spend_loaded(bencher: Bencher<'_, '_>) {
    let stamps = verified();
    bencher
        .counter(ItemsCount::new(POOL_LEN))
        .with_inputs(|| LOADED.clone())
        .bench_local_values(|mut spent| {
            for stamp in &stamps {
                spent.spend(stamp, NOW).unwrap();
            }
            spent
        });
}

/// What the gateway does per stamped join: verify, then spend.
#[divan::bench]
fn verify_and_spend(bencher: Bencher<'_, '_>) {
    bencher
        .counter(ItemsCount::new(POOL_LEN))
        .with_inputs(SpentStamps::new)
        .bench_local_values(|mut spent| {
            for s in POOL.iter() {
                let stamp = stamp::verify(&KEY, &s.text, s.counter, EVENT, s.fan, NOW).unwrap();
                spent.spend(&stamp, NOW).unwrap();
            }
            spent
        });
}

/// Tries per second of the Rust solver: 2^16 tries at 32 bits, which
/// finds nothing.
#[divan::bench]
fn solve_tries(bencher: Bencher<'_, '_>) {
    let text = stamp::issue(&KEY, &challenge(u64::MAX, 32, NOW));
    bencher
        .counter(ItemsCount::new(1usize << 16))
        .bench_local(|| stamp::solve(black_box(&text), 1 << 16));
}

/// Solving fresh challenges, each 2^bits tries on average; the number of
/// tries is geometric, so 20 samples give the mean within ~±25%.
#[divan::bench(args = [16, 20, 22], sample_count = 20, sample_size = 1)]
fn solve(bencher: Bencher<'_, '_>, bits: u8) {
    let mut next = 1u64 << 50;
    bencher
        .with_inputs(|| {
            next += 1;
            stamp::issue(&KEY, &challenge(next, bits, NOW))
        })
        .bench_local_refs(|text| stamp::solve(text, u64::MAX));
}
