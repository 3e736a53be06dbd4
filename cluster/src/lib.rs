//! The cluster layer of onsale: node mesh, placement, leases and fencing,
//! the store, failover and the operator CLI.
//!
//! Not built yet: this crate is a placeholder in the dependency chain
//! `schema ← actors ← cluster ← gateway`, filled by the work on actors and
//! persistence.

pub mod event_log;
pub mod node;
pub mod rpc;
pub mod store;
