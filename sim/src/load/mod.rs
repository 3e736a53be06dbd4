//! Load mode: drive a real gateway with simulated fans over real sockets.
//!
//! `onsale-sim load` (the [`coordinator`]) spawns worker processes (the same
//! binary, hidden subcommand `load-worker`), each running its share of the
//! fans as tokio tasks ([`worker`]), each fan walking the journey of
//! [`fan`] over real HTTP/1.1 connections and one websocket ([`net`]).
//! Workers stream one JSON line per fan back on stdout ([`WorkerLine`]);
//! the coordinator checks from the fans' side that no seat was bought
//! twice and that admissions came in position order, and reports
//! latencies and outcomes ([`report`]).
//!
//! Why processes: a process here may hold at most 20,000 open files (a
//! hard limit that cannot be raised), so one worker keeps under
//! [`SOCKETS_PER_WORKER_MAX`] sockets. Why several source addresses: one
//! source address has about 28,000 ephemeral ports toward one target
//! port, so fans are spread over `127.0.0.x` addresses
//! ([`SOCKETS_PER_SOURCE_MAX`] each).
//!
//! With `--scenario`, each fan follows the scenario's behaviour model
//! ([`behaviour`]); without, the plain journey.
//!
//! An event with the pre-queue draw (`--pre-queue-draw`) pre-queues fans
//! who join before its opening; they learn their drawn place on their
//! websocket at the opening. Joins that need proof of work
//! (`--stamp-bits`) are made again with a solved challenge ([`stamp`]).
//!
//! A fan whose connection breaks (the gateway was killed, say) reconnects
//! with a jittered doubling wait ([`reconnect`]) and resumes its place
//! with its queue token; the report checks it got its own position back.
//!
//! Everything is bounded: the run's duration (every fan stops at the
//! deadline), retries per request, reconnects per break (in attempts and
//! time), pushes per fan, fans per worker, workers per run. Targets and
//! sources are loopback only.

pub mod behaviour;
pub mod coordinator;
pub mod fan;
pub mod net;
pub mod reconnect;
pub mod report;
pub mod stamp;
pub mod worker;

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

pub use fan::{Admission, Drawn, DrawnVia, FanRecord, Outcome, Stage};

/// Sockets one worker process may hold: under the 20,000 open files
/// allowed, with room for the runtime's own descriptors.
pub const SOCKETS_PER_WORKER_MAX: u64 = 15_000;
/// Sockets open at once from one source address (of about 28,000
/// ephemeral ports), with room for sockets still closing.
pub const SOCKETS_PER_SOURCE_MAX: u64 = 20_000;
/// Worker processes per run.
pub const WORKERS_MAX: u32 = 64;
/// Fans per run.
pub const FANS_MAX: u64 = 1_000_000;
/// Longest run.
pub const DURATION_S_MAX: u64 = 3_600;

/// What the fans do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Join, wait, get admitted, hold (the best 1 or 2 seats anywhere, or
    /// as the scenario says), pay, wait for the `purchased` push.
    Journey,
    /// Join and stay connected until admitted (or the run ends): for the
    /// connection count and the admission latency.
    Wait,
}

impl Mode {
    /// Sockets a fan holds at once: the websocket, plus in a journey the
    /// HTTP connection kept for holding and paying. (A waiting fan closes
    /// its HTTP connection once it has joined.)
    #[must_use]
    pub fn sockets_per_fan(self) -> u64 {
        match self {
            Mode::Journey => 2,
            Mode::Wait => 1,
        }
    }
}

/// What one worker is asked to do (passed as JSON on its command line).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WorkerPlan {
    pub worker: u32,
    /// `http://127.0.0.1:8080`.
    pub target: String,
    pub event: u64,
    pub mode: Mode,
    /// Fans are named `<name_prefix>-<index>`.
    pub name_prefix: String,
    /// This worker's fans: indexes `first_fan .. first_fan + fan_count`.
    pub first_fan: u64,
    pub fan_count: u64,
    /// Fan `n` binds its sockets to `sources[n % sources.len()]`.
    pub sources: Vec<Ipv4Addr>,
    /// Fans arrive spread evenly over this many ms from the start (0: all
    /// at once, as fast as `arrivals_in_flight_max` lets them).
    pub ramp_ms: u64,
    /// Fans between their first connection and their `watching` answer,
    /// at most, per worker.
    pub arrivals_in_flight_max: u32,
    /// Wall-clock time (Unix ms) at which every fan stops.
    pub deadline_unix_ms: u64,
    /// In `wait` mode, how long an admitted fan keeps its websocket open
    /// (so that a mass admission is measured without a storm of closes).
    #[serde(default)]
    pub linger_ms: u64,
    /// Seeds the fans' plans (fan `n`: this seed and `n`) and jitter.
    pub seed: u64,
    /// The scenario whose behaviour the fans follow; without one, the
    /// plain journey (and arrivals spread by `ramp_ms`).
    #[serde(default)]
    pub scenario: Option<behaviour::ScenarioPlan>,
}

/// One line a worker writes on stdout.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "line", rename_all = "snake_case")]
pub enum WorkerLine {
    /// Gauges, every [`worker::PROGRESS_EVERY`].
    Progress {
        worker: u32,
        /// Fans that reached the waiting room (`watching`) or ended.
        settled: u64,
        /// Fans connected and waiting now.
        waiting: u64,
        admitted: u64,
        done: u64,
    },
    /// One fan's result, when it ends.
    Fan { record: Box<FanRecord> },
    /// The worker is done: every fan's line has been written.
    End { worker: u32, fans: u64 },
}

/// Wall-clock now in Unix microseconds (data only: admission latency is
/// measured against the gateway's wall-clock `decided_at`).
#[must_use]
pub fn unix_now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}
