//! Proof of work for load fans: a join the gateway answers 428
//! `stamp_required` is made again with a solved challenge
//! (`X-Onsale-Stamp: <challenge>.<counter>`), as the fan page's Web
//! Worker does (`onsale_schema::stamp` has the work and its costs).
//!
//! Solving is CPU work, so it runs on tokio's blocking threads, at most
//! [`Solver::threads`] at once per worker: fans waiting for a solver wait
//! their turn, as tabs of one browser would for its cores. The report
//! tells the two apart: *solve* is the work alone, *stamp* runs from the
//! refusal to the stamped join (challenge fetched, turn waited, work).
//!
//! Bounded: tries per solve ([`tries_max`]), stamps per join
//! ([`STAMPS_PER_JOIN_MAX`]), solves kept per fan ([`SOLVES_KEPT_MAX`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use onsale_schema::stamp::{self, Difficulty};
use serde::Deserialize;
use tokio::sync::Semaphore;

/// The header a join carries its stamp in.
pub const STAMP_HEADER: &str = "x-onsale-stamp";
/// Challenges fetched and solved for one join (a stale, replayed or
/// insufficient stamp asks for a new one), at most.
pub const STAMPS_PER_JOIN_MAX: u32 = 4;
/// Solve times one fan keeps for the report (a fan solves one per join:
/// more only after "full" or a stale challenge).
pub const SOLVES_KEPT_MAX: usize = 16;
/// Solver threads per worker, at most.
pub const SOLVER_THREADS_MAX: usize = 8;
/// Tries per solve, at most: 2^30 is about two minutes of one core, and
/// past 2^(bits + 6) tries a solve fails with odds of e^-64.
pub const TRIES_MAX: u64 = 1 << 30;

/// `GET /api/events/{event}/challenge`.
#[derive(Clone, Debug, Deserialize)]
pub struct ChallengeIssued {
    pub challenge: String,
    pub bits: u8,
}

/// A solved challenge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Solved {
    /// `<challenge>.<counter>`: the header's value.
    pub stamp: String,
    /// The work alone (on the solver thread).
    pub work: Duration,
}

/// The stable codes that ask the fan for a fresh challenge: the first
/// join found none (`stamp_required`), or the stamp went stale, came from
/// the future (a clock skew), was spent already or no longer does enough
/// work (the difficulty rose).
#[must_use]
pub fn asks_for_a_new_stamp(code: &str) -> bool {
    matches!(
        code,
        "stamp_required" | "stamp_stale" | "stamp_future" | "stamp_replayed" | "stamp_insufficient"
    )
}

/// Tries for a challenge of `bits`: enough that a solve fails with odds
/// of e^-64, no more than [`TRIES_MAX`].
#[must_use]
pub fn tries_max(bits: u8) -> u64 {
    1u64.checked_shl(u32::from(bits) + 6)
        .unwrap_or(TRIES_MAX)
        .min(TRIES_MAX)
}

/// A worker's solvers: at most `threads` solves at once.
#[derive(Debug)]
pub struct Solver {
    permits: Arc<Semaphore>,
    threads: usize,
}

impl Solver {
    /// One solver per core this process may run on (its affinity: under
    /// `taskset` that is the pinned cores), at most [`SOLVER_THREADS_MAX`].
    #[must_use]
    pub fn for_this_process() -> Solver {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        Solver::new(cores)
    }

    #[must_use]
    pub fn new(threads: usize) -> Solver {
        let threads = threads.clamp(1, SOLVER_THREADS_MAX);
        Solver {
            permits: Arc::new(Semaphore::new(threads)),
            threads,
        }
    }

    #[must_use]
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Solve `issued` on a blocking thread once one is free. The permit
    /// goes with the work: a fan dropped at the deadline leaves its solve
    /// running, still counted, until it ends (at most [`tries_max`]).
    pub async fn solve(&self, issued: ChallengeIssued) -> anyhow::Result<Solved> {
        if Difficulty::from_bits(issued.bits).is_none() {
            bail!("a challenge of {} bits", issued.bits);
        }
        let permit = Arc::clone(&self.permits)
            .acquire_owned()
            .await
            .context("solvers closed")?;
        let tries = tries_max(issued.bits);
        let (counter, work) = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let started = Instant::now();
            let counter = stamp::solve(&issued.challenge, tries);
            (
                counter.map(|c| format!("{}.{c}", issued.challenge)),
                started.elapsed(),
            )
        })
        .await
        .context("the solver thread")?;
        let Some(stamp) = counter else {
            bail!("no solution in {tries} tries (a malformed challenge?)");
        };
        Ok(Solved { stamp, work })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tries_are_bounded_and_grow_with_the_difficulty() {
        assert_eq!(tries_max(0), 64);
        assert_eq!(tries_max(14), 1 << 20);
        assert_eq!(tries_max(24), TRIES_MAX);
        assert_eq!(tries_max(32), TRIES_MAX);
    }

    #[test]
    fn the_codes_that_ask_for_a_new_stamp_are_the_schemas() {
        use onsale_schema::stamp::StampRefused;
        let renew: Vec<&str> = StampRefused::ALL
            .iter()
            .map(|r| r.as_str())
            .filter(|code| asks_for_a_new_stamp(code))
            .collect();
        assert_eq!(
            renew,
            [
                "stamp_stale",
                "stamp_future",
                "stamp_insufficient",
                "stamp_replayed"
            ]
        );
        assert!(asks_for_a_new_stamp("stamp_required"));
        assert!(!asks_for_a_new_stamp("stamp_busy"));
    }

    #[test]
    fn a_solved_challenge_carries_its_counter() {
        let key = onsale_schema::token::TokenKey::derive(b"load stamp test key");
        let challenge = stamp::issue(
            &key,
            &stamp::Challenge {
                event: onsale_schema::EventId(1),
                fan: onsale_schema::FanId(2),
                difficulty: Difficulty::from_bits(6).expect("6 bits"),
                issued_at: onsale_schema::Millis(1_800_000_000_000),
                nonce: [7; stamp::NONCE_BYTES],
            },
        );
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime");
        let solved = runtime
            .block_on(Solver::new(1).solve(ChallengeIssued {
                challenge: challenge.clone(),
                bits: 6,
            }))
            .expect("solves");
        let (text, counter) = solved.stamp.rsplit_once('.').expect("a counter");
        assert_eq!(text, challenge);
        let counter: u64 = counter.parse().expect("a number");
        let verified = stamp::verify(
            &key,
            text,
            counter,
            onsale_schema::EventId(1),
            onsale_schema::FanId(2),
            onsale_schema::Millis(1_800_000_000_001),
        );
        assert!(verified.is_ok(), "{verified:?}");
    }
}
