//! The sales change feed of onsale: every event's durable journal,
//! relayed as it is written to a broker (NATS JetStream), and exported to
//! Parquet for analytics.
//!
//! - [`message`]: what is published (subjects, ids, JSON bodies).
//! - [`relay`]: trails the journals in the store and publishes, with a
//!   durable cursor per event.
//! - [`sink`]: the broker behind a small trait; [`nats`] is JetStream.
//! - [`export`]: Parquet files of an event's tickets, orders, admissions
//!   and timeline, read from the store.

pub mod export;
pub mod message;
pub mod nats;
pub mod relay;
pub mod sink;
