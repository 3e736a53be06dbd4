//! The pure state machines of onsale and the actors that wrap them.
//!
//! [`EventCore`] owns one event: waiting room, counter, admissions, seats,
//! holds, checkouts and sales. [`CheckoutCore`] is one hold's checkout and
//! the one home of its timing rules. Both take `now` as an argument and
//! return effects; neither does I/O.
//!
//! The shells: [`event_actor`] (a ractor actor per event: the output gate,
//! the group-committed journal through [`journal`], snapshots) and
//! [`checkout_actor`] (a task per hold holding that checkout's one alarm).
//! [`provider`] charges, queries and refunds payments and answers through
//! a callback, so it knows no actor. Dependencies run one way:
//! `event_actor → checkout_actor → provider`.

pub mod checkout_actor;
pub mod checkout_core;
pub mod clock;
pub mod event_actor;
pub mod event_core;
pub mod journal;
pub mod output_gate;
pub mod provider;
pub mod seat_map;
pub mod testing;
pub mod waiting_room;

pub use checkout_core::CheckoutCore;
pub use event_core::{Effect, EventCore, RestoreError};
pub use output_gate::OutputGate;
