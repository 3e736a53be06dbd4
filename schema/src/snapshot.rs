//! What an event stores: a snapshot, and the journal written after it.
//!
//! The snapshot is small on purpose. Waiting fans are *not* in it: a queue
//! of millions survives as the durable counter ceiling (nothing at or above
//! it was ever handed out) plus each fan's signed queue token. Admitted
//! fans, holds, checkouts, payments and sales are in it, because a fan was
//! told about each of them.
//!
//! The journal holds every durable change after the snapshot, in order,
//! numbered by `seq`. Restoring = snapshot, then replay of the journal.
//!
//! A snapshot's orders are stored as columns of deltas (`order_columns`):
//! a 60,000-seat stadium sold out in parties of one takes about 0.72 MB,
//! 12 bytes an order, 8 of them the fan id.

mod legacy;
mod order_columns;

use serde::{Deserialize, Serialize};

use crate::codec::{self, CodecError};
use crate::config::{EventConfig, SaleState};
use crate::ids::{EventId, FanId, HoldId, Millis, OrderId, PaymentId, Position, SeatIdx};

/// Bumped whenever the snapshot or journal layout changes. A reader refuses
/// records from a newer version instead of guessing, and from an older one
/// as unsupported (there is no migration yet).
///
/// - 1: orders row by row.
/// - 2: orders as one blob of columns.
/// - 3: fans admitted together are one journal entry
///   ([`JournalEntry::AdmittedMany`]). Version 2 records are version 3
///   records that do not use it, so both are read.
/// - 4: a refund is journalled ([`JournalEntry::Refunded`]), so a voided
///   payment is refunded at most once. Versions 2 and 3 are version 4
///   without it, so all three are read.
/// - 5: the pre-queue draw and presale codes: the event config gains
///   `pre_queue_draw`, `opens_at` and `presale_until`, the journal
///   [`JournalEntry::PreQueued`], [`JournalEntry::Drawn`] and
///   [`JournalEntry::PresaleJoined`], the snapshot its pre-queue, draw and
///   fans who used their presale codes; proof of work at join: the config
///   gains `stamp_auto_bits` and `stamp_auto_fill_s`, the journal
///   [`JournalEntry::StampDifficulty`], the snapshot the difficulty set.
///   Snapshots of versions 2 to 4 are read through `legacy` (an event
///   without a pre-queue); their journal records are version 5 records
///   that do not use the new entries.
pub const SCHEMA_VERSION: u32 = 5;

/// The oldest version this build reads.
pub const SCHEMA_VERSION_READ_MIN: u32 = 2;

/// A durable change to an event, in the order it happened.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum JournalEntry {
    Sale {
        state: SaleState,
    },
    Admitted {
        fan: FanId,
        position: Position,
        at: Millis,
    },
    /// The admitted fan made its first request (it showed up).
    Entered {
        fan: FanId,
    },
    /// The fan's turn ended without a hold open (no show, window lapsed).
    AdmissionLapsed {
        fan: FanId,
    },
    HoldPlaced {
        hold: HoldId,
        fan: FanId,
        seats: Vec<SeatIdx>,
        deadline: Millis,
    },
    HoldReleased {
        hold: HoldId,
        reason: ReleaseReason,
    },
    PaymentSubmitted {
        hold: HoldId,
        payment: PaymentId,
        at: Millis,
    },
    PaymentDeclined {
        hold: HoldId,
        payment: PaymentId,
    },
    Sold {
        hold: HoldId,
        order: OrderId,
        at: Millis,
    },
    /// Fans admitted together at `at`, in the order they were admitted:
    /// one entry for a burst (opening a sale to 19,000 waiting fans writes
    /// ten entries, not 19,000). At most
    /// [`limits::ADMISSIONS_PER_ENTRY_MAX`] fans, never none.
    ///
    /// [`limits::ADMISSIONS_PER_ENTRY_MAX`]: crate::limits::ADMISSIONS_PER_ENTRY_MAX
    AdmittedMany {
        at: Millis,
        fans: Vec<(FanId, Position)>,
    },
    /// A voided payment was confirmed after all and its money is being
    /// given back: it is no longer voided, and any further confirmation
    /// of it is ignored (never refunded twice).
    Refunded {
        payment: PaymentId,
    },
    /// A fan joined the pre-queue before the opening (events with
    /// `pre_queue_draw`): it is in the draw, and stays in it.
    PreQueued {
        fan: FanId,
    },
    /// The opening's draw: every pre-queued fan got a position in
    /// `base .. base + count`, in the order [`draw_order`] gives for
    /// `seed`. Replaying it gives each fan the position it was told.
    Drawn {
        seed: u64,
        base: Position,
        count: u64,
    },
    /// A fan joined with its presale code: the code is used.
    PresaleJoined {
        fan: FanId,
    },
    /// An operator set the proof of work joins need (bits; 0: none).
    StampDifficulty {
        bits: u8,
    },
}

/// The draw: the pre-queued `fans` in the order they get positions,
/// seeded by `seed`. Each fan's place depends only on `seed` and its id
/// (a keyed mix, ties broken by id), not on when it joined or the order
/// of `fans`, so replaying a draw gives the same positions.
#[must_use]
pub fn draw_order(seed: u64, fans: &[FanId]) -> Vec<FanId> {
    let mut keyed: Vec<(u64, FanId)> = fans.iter().map(|f| (draw_key(seed, *f), *f)).collect();
    keyed.sort_unstable();
    keyed.into_iter().map(|(_, f)| f).collect()
}

/// SplitMix64's finaliser over the seed and the fan: a bijection of the
/// fan id for each seed, so the order is a uniform shuffle for a random
/// seed.
fn draw_key(seed: u64, fan: FanId) -> u64 {
    let mut z = seed ^ fan.0.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Why a hold's seats went back on sale.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReleaseReason {
    /// The fan let them go.
    ByFan,
    /// The checkout deadline passed without a payment submitted.
    Expired,
    /// The payment was declined after the deadline.
    Declined,
    /// The provider never answered within the provider timeout.
    Voided,
    /// The sale was closed before payment was submitted.
    Closed,
}

impl JournalEntry {
    /// The fans this entry admits, in the order they were admitted, with
    /// when (none for entries that admit nobody).
    pub fn admissions(&self) -> impl Iterator<Item = (FanId, Position, Millis)> + '_ {
        let (one, many, at) = match self {
            JournalEntry::Admitted { fan, position, at } => (Some((*fan, *position)), &[][..], *at),
            JournalEntry::AdmittedMany { at, fans } => (None, fans.as_slice(), *at),
            _ => (None, &[][..], Millis(0)),
        };
        one.into_iter()
            .chain(many.iter().copied())
            .map(move |(fan, position)| (fan, position, at))
    }
}

/// A journal entry with its sequence number (1, 2, 3, … per event).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalRecord {
    pub schema_version: u32,
    pub event: EventId,
    pub seq: u64,
    pub at: Millis,
    pub entry: JournalEntry,
}

/// An admitted fan still in its turn.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShopperRecord {
    pub fan: FanId,
    pub position: Position,
    pub admitted_at: Millis,
    pub entered: bool,
}

/// Where a hold's checkout is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CheckoutRecord {
    /// Waiting for the fan to pay before the deadline.
    Open,
    /// Payment submitted in time; waiting for the provider until
    /// `submitted_at` + provider timeout, whatever the deadline.
    Paying {
        payment: PaymentId,
        submitted_at: Millis,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HoldRecord {
    pub hold: HoldId,
    pub fan: FanId,
    pub seats: Vec<SeatIdx>,
    pub deadline: Millis,
    pub checkout: CheckoutRecord,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderRecord {
    pub order: OrderId,
    pub fan: FanId,
    /// The buyer's position in line (0 if unknown).
    pub position: Position,
    pub payment: PaymentId,
    pub seats: Vec<SeatIdx>,
    pub at: Millis,
}

/// The whole durable state of one event at journal sequence `journal_seq`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventSnapshot {
    pub schema_version: u32,
    pub event: EventId,
    pub venue_digest: u64,
    pub config: EventConfig,
    pub sale: SaleState,
    /// Last journal entry folded into this snapshot.
    pub journal_seq: u64,
    /// Latest `now` the event saw; time never runs backwards past it.
    pub clock: Millis,
    /// No position at or above this was ever handed out.
    pub counter_ceiling: Position,
    /// Highest position ever admitted.
    pub admitted_through: Position,
    /// Fans waiting when the snapshot was taken (not who: they hold tokens).
    pub waiting: u64,
    pub next_hold: HoldId,
    pub next_payment: PaymentId,
    pub next_order: OrderId,
    /// Sorted by fan.
    pub shoppers: Vec<ShopperRecord>,
    /// Sorted by hold.
    pub holds: Vec<HoldRecord>,
    /// Strictly increasing by order id, each with 1..=`HOLD_SEATS_MAX`
    /// seats (encoding refuses others). Stored as columns.
    #[serde(with = "order_columns")]
    pub orders: Vec<OrderRecord>,
    /// Voided payments, oldest first, so a late confirmation is refunded.
    pub voided: Vec<PaymentId>,
    /// Fans in the pre-queue (or drawn from it), sorted by fan; at most
    /// [`limits::PRE_QUEUE_MAX`].
    ///
    /// [`limits::PRE_QUEUE_MAX`]: crate::limits::PRE_QUEUE_MAX
    pub pre_queue: Vec<FanId>,
    /// The opening's draw, once made.
    pub draw: Option<DrawRecord>,
    /// Fans who joined with their presale code (each code makes one
    /// place), sorted by fan.
    pub presale_joined: Vec<FanId>,
    /// The proof-of-work difficulty an operator set (bits; 0: none).
    pub stamp_bits: u8,
}

/// A draw made: the pre-queue got positions from `base` in
/// [`draw_order`]`(seed, ..)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrawRecord {
    pub seed: u64,
    pub base: Position,
}

/// Why stored bytes could not become a snapshot or journal record.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error(transparent)]
    Codec(#[from] CodecError),
    #[error("record has schema version {found}; this build reads up to {SCHEMA_VERSION}")]
    FutureVersion { found: u32 },
    #[error("record has schema version {found}, which is no longer supported")]
    UnsupportedVersion { found: u32 },
}

fn check_version(found: u32) -> Result<(), RecordError> {
    match found {
        SCHEMA_VERSION_READ_MIN..=SCHEMA_VERSION => Ok(()),
        v if v > SCHEMA_VERSION => Err(RecordError::FutureVersion { found: v }),
        v => Err(RecordError::UnsupportedVersion { found: v }),
    }
}

/// Peek at the leading schema version (a varint) without decoding the rest,
/// so that a future record gets "future version", not "garbage".
fn leading_version(bytes: &[u8]) -> Option<u32> {
    bincode::serde::decode_from_slice::<u32, _>(bytes, bincode::config::standard())
        .ok()
        .map(|(v, _)| v)
}

impl EventSnapshot {
    pub fn encode(&self) -> Result<Vec<u8>, CodecError> {
        codec::encode_record(self)
    }

    /// Decode a snapshot. Invariants against the venue are checked when the
    /// event core restores it.
    pub fn decode(bytes: &[u8]) -> Result<EventSnapshot, RecordError> {
        if let Some(version) = leading_version(bytes) {
            check_version(version)?;
            if version < 5 {
                return Ok(legacy::decode_v4(bytes)?);
            }
        }
        let snapshot: EventSnapshot = codec::decode_record(bytes)?;
        check_version(snapshot.schema_version)?;
        Ok(snapshot)
    }
}

impl JournalRecord {
    pub fn encode(&self) -> Result<Vec<u8>, CodecError> {
        codec::encode_record(self)
    }

    pub fn decode(bytes: &[u8]) -> Result<JournalRecord, RecordError> {
        if let Some(version) = leading_version(bytes) {
            check_version(version)?;
        }
        let record: JournalRecord = codec::decode_record(bytes)?;
        check_version(record.schema_version)?;
        Ok(record)
    }
}
