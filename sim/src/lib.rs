//! `onsale-sim`: a deterministic simulation of an onsale, driving the real
//! event core (`onsale_actors::EventCore`) through a lean shell in virtual
//! time.
//!
//! - [`scenario`]: TOML scenario files, checked field by field.
//! - [`behaviour`]: the fans' behaviour model (party size, seat
//!   preference, patience, reloads, shopping and checkout times, bots),
//!   shared by the engine and load mode.
//! - [`engine`]: the discrete-event loop, the fans' behaviour, the
//!   simulated store, payment provider and crashes.
//! - [`ledger`]: the referee that checks the product's invariants
//!   independently of the core.
//! - [`load`]: load mode, driving a real gateway with fans over real
//!   sockets from several worker processes (not deterministic: real time).
//! - [`metrics`], [`output`], [`report`], [`compare`]: what a run measured
//!   and how it is written (`summary.json`, `timeseries.csv`, `report.html`).
//!
//! Same scenario + seed + code → byte-identical outputs: one thread, one
//! seeded generator per concern, no wall clock, no hash-order iteration in
//! anything written.

pub mod agenda;
pub mod arrivals;
pub mod behaviour;
pub mod compare;
pub mod engine;
pub mod ledger;
pub mod load;
pub mod metrics;
pub mod output;
pub mod report;
pub mod rng;
pub mod scenario;
