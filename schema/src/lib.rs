//! Everything that crosses a process boundary in onsale.
//!
//! Wire messages (commands, replies, pushes), stored records (snapshots,
//! journal entries), the venue model, stable error codes, the limits every
//! queue and decoder obeys, and the codec that turns untrusted bytes into
//! these types. Nothing here does I/O or keeps time.

pub mod api;
pub mod codec;
pub mod config;
pub mod error;
pub mod ids;
pub mod limits;
pub mod message;
pub mod ops;
pub mod rpc;
pub mod snapshot;
pub mod spec;
pub mod stamp;
pub mod token;
pub mod venue;

pub use config::{EventConfig, SaleState};
pub use error::ErrorCode;
pub use ids::{
    EventId, FanId, HoldId, Millis, OrderId, PaymentId, Position, PriceLevelIdx, RowIdx, SeatIdx,
    SectionIdx,
};
pub use venue::{Venue, VenueError};
