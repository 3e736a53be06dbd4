//! Identifiers. Each is a newtype so that a position can never be passed
//! where a fan is expected. All are plain integers on the wire.

use std::fmt;

use serde::{Deserialize, Serialize};

macro_rules! id {
    ($(#[$doc:meta])* $name:ident($inner:ty), $prefix:literal) => {
        $(#[$doc])*
        #[derive(
            Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
        )]
        #[serde(transparent)]
        pub struct $name(pub $inner);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($prefix, "{}"), self.0)
            }
        }
    };
}

id!(
    /// An event: one performance of one show at one venue.
    EventId(u64),
    "event-"
);
id!(
    /// A fan, as named by the identity provider behind the gateway.
    FanId(u64),
    "fan-"
);
id!(
    /// A place in an event's waiting room. Handed out strictly increasing
    /// (gaps allowed, reuse never), also across crashes.
    Position(u64),
    "pos-"
);
id!(
    /// A hold: seats set aside for one fan while they check out.
    HoldId(u64),
    "hold-"
);
id!(
    /// A completed sale.
    OrderId(u64),
    "order-"
);
id!(
    /// One payment attempt sent to the payment provider.
    PaymentId(u64),
    "pay-"
);
id!(
    /// Index of a seat in its venue's flat seat list. Seats of one row are
    /// contiguous and in physical order, so adjacent indices in a row are
    /// adjacent seats.
    SeatIdx(u32),
    "seat-"
);
id!(
    /// Index of a row in its venue's flat row list.
    RowIdx(u32),
    "row-"
);
id!(
    /// Index of a section in its venue.
    SectionIdx(u16),
    "section-"
);
id!(
    /// Index of a price level in its venue.
    PriceLevelIdx(u16),
    "price-"
);

/// Milliseconds since the Unix epoch (in production) or since the start of
/// a simulation (in the simulator). Cores receive it as an argument and
/// never read a clock; deadlines that must survive a crash are stored in it.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Millis(pub u64);

impl Millis {
    #[must_use]
    pub fn saturating_add_ms(self, ms: u64) -> Millis {
        Millis(self.0.saturating_add(ms))
    }

    #[must_use]
    pub fn saturating_sub(self, earlier: Millis) -> u64 {
        self.0.saturating_sub(earlier.0)
    }
}

impl fmt::Display for Millis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}ms", self.0)
    }
}
