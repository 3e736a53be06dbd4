//! The wall clock, read in one place.
//!
//! The cores never read a clock: `now` is an argument. The shells (the
//! event actor, checkout sessions, the router, the gateway) read it here
//! and pass it in. Wall-clock time is data (deadlines stored absolutely,
//! token issue times); timers that only wait use tokio's monotonic clock.

use std::time::{SystemTime, UNIX_EPOCH};

use onsale_schema::Millis;

/// Wall-clock time as the cores see it: milliseconds since the Unix epoch.
#[must_use]
pub fn wall_now() -> Millis {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    Millis(ms)
}
