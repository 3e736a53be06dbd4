//! Per-event settings and the sale's state. A plain struct, passed in
//! explicitly and checked once.

use serde::{Deserialize, Serialize};

use crate::ids::Millis;
use crate::limits;

/// Where a sale is. `Scheduled` lets fans queue before the sale opens;
/// `Paused` keeps the queue but admits nobody; `Closed` ends everything
/// except checkouts already paying. `SoldOut` is entered by the core when
/// the last ticket sells, and left again only if a sale is refunded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SaleState {
    Scheduled,
    OnSale,
    Paused,
    SoldOut,
    Closed,
}

impl SaleState {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            SaleState::Scheduled => "scheduled",
            SaleState::OnSale => "on_sale",
            SaleState::Paused => "paused",
            SaleState::SoldOut => "sold_out",
            SaleState::Closed => "closed",
        }
    }
}

/// How one event's sale behaves. Durations are in milliseconds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EventConfig {
    /// Tickets one fan may buy for this event, over all its orders.
    pub tickets_per_fan_max: u8,
    /// The waiting room is full when fans waiting ≥ this × tickets unsold.
    pub full_factor: u32,
    /// Fans admitted and shopping (without a hold) at once.
    pub shoppers_max: u32,
    /// An admitted fan must make its first request within this window, or
    /// its slot goes to the next fan.
    pub show_up_window_ms: u64,
    /// An admitted fan must hold seats within this window of admission.
    pub shopping_window_ms: u64,
    /// A hold lasts this long unless payment is submitted before it ends.
    pub checkout_window_ms: u64,
    /// A payment the provider has not answered within this time of its
    /// submission is voided and its seats released.
    pub provider_timeout_ms: u64,
    /// Positions reserved in the store per counter block.
    pub counter_block: u64,
    /// Fans who join before the sale opens wait in a pre-queue and are
    /// given positions in random order when it opens (a draw), all ahead
    /// of later arrivals, who queue in arrival order. Off: first come,
    /// first served from the first join.
    pub pre_queue_draw: bool,
    /// When the sale opens by itself (wall clock), if ever. An operator
    /// may open it earlier; pre-queued fans are shown this time.
    pub opens_at: Option<Millis>,
    /// Until this time (wall clock) only fans with a presale code may
    /// join (a presale for registered fans); after it, anyone.
    pub presale_until: Option<Millis>,
    /// Proof of work at join under pressure: while the room would fill
    /// within `stamp_auto_fill_s` at the current join rate, joins need a
    /// stamp of at least this many bits (0: never automatically). An
    /// operator may also set a difficulty live.
    pub stamp_auto_bits: u8,
    /// The horizon of the automatic rule, in seconds.
    pub stamp_auto_fill_s: u32,
}

impl Default for EventConfig {
    fn default() -> Self {
        EventConfig {
            tickets_per_fan_max: 4,
            full_factor: 3,
            shoppers_max: 5_000,
            show_up_window_ms: 120_000,
            shopping_window_ms: 600_000,
            checkout_window_ms: 300_000,
            provider_timeout_ms: 1_800_000,
            counter_block: 1_000_000,
            pre_queue_draw: false,
            opens_at: None,
            presale_until: None,
            stamp_auto_bits: 0,
            stamp_auto_fill_s: 60,
        }
    }
}

/// Why a config was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid event config: {field} {problem}")]
pub struct ConfigError {
    pub field: &'static str,
    pub problem: String,
}

impl EventConfig {
    /// Check every field against its limit.
    pub fn check(&self) -> Result<(), ConfigError> {
        let bad = |field: &'static str, problem: String| Err(ConfigError { field, problem });
        if self.tickets_per_fan_max == 0 || self.tickets_per_fan_max > limits::TICKETS_PER_FAN_MAX {
            return bad(
                "tickets_per_fan_max",
                format!("must be 1..={}", limits::TICKETS_PER_FAN_MAX),
            );
        }
        if self.full_factor == 0 || self.full_factor > 1_000 {
            return bad("full_factor", "must be 1..=1000".into());
        }
        if self.shoppers_max == 0 || self.shoppers_max > limits::SHOPPERS_MAX {
            return bad(
                "shoppers_max",
                format!("must be 1..={}", limits::SHOPPERS_MAX),
            );
        }
        let windows = [
            ("show_up_window_ms", self.show_up_window_ms),
            ("shopping_window_ms", self.shopping_window_ms),
            ("checkout_window_ms", self.checkout_window_ms),
            ("provider_timeout_ms", self.provider_timeout_ms),
        ];
        for (field, ms) in windows {
            if ms == 0 || ms > 7 * 24 * 3600 * 1000 {
                return bad(field, "must be between 1 ms and 7 days".into());
            }
        }
        if self.show_up_window_ms > self.shopping_window_ms {
            return bad(
                "show_up_window_ms",
                "must not exceed shopping_window_ms".into(),
            );
        }
        if self.stamp_auto_bits > limits::STAMP_BITS_MAX {
            return bad(
                "stamp_auto_bits",
                format!("must be 0..={}", limits::STAMP_BITS_MAX),
            );
        }
        if self.stamp_auto_fill_s == 0 || self.stamp_auto_fill_s > 86_400 {
            return bad("stamp_auto_fill_s", "must be 1..=86400".into());
        }
        if self.counter_block == 0 || self.counter_block > 1 << 40 {
            return bad("counter_block", "must be 1..=2^40".into());
        }
        Ok(())
    }
}
