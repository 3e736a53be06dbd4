//! The cluster layer of onsale: what lets events live on nodes that share
//! a store and fail over through it.
//!
//! - [`store`]: the `Store` trait (node and event leases with fencing
//!   epochs, snapshots, journal, counter blocks, event specs), its
//!   embedded SQLite backend, FoundationDB behind the `fdb` feature, the
//!   conformance suite both pass, and fault injection.
//! - [`event_log`]: an event's journal over the store, fenced by its lease.
//! - [`node`]: a `Node` and its router actor: activating events (lease,
//!   load, restore, spawn), lease renewal, adoption of orphaned events,
//!   and the typed answer for an event another node owns.
//! - [`mesh`]: the ractor_cluster mesh between processes: batched calls
//!   and pushes through one actor per process, liveness and takeover of
//!   dead nodes, rendezvous placement.
//! - [`rpc`]: the node RPC over TCP, server and client.
//!
//! Not here yet: online moves and drains, TLS between nodes.

pub mod event_log;
pub mod mesh;
pub mod node;
pub mod rpc;
pub mod store;
