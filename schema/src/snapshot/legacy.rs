//! Snapshots written before version 5, read as version 5 snapshots of an
//! event without a pre-queue. The layout is bincode's, positional: these
//! structs are the old field lists, kept only for decoding.

use serde::Deserialize;

use super::{EventSnapshot, HoldRecord, OrderRecord, ShopperRecord, order_columns};
use crate::codec::{self, CodecError};
use crate::config::{EventConfig, SaleState};
use crate::ids::{EventId, HoldId, Millis, OrderId, PaymentId, Position};

#[derive(Deserialize)]
struct ConfigV4 {
    tickets_per_fan_max: u8,
    full_factor: u32,
    shoppers_max: u32,
    show_up_window_ms: u64,
    shopping_window_ms: u64,
    checkout_window_ms: u64,
    provider_timeout_ms: u64,
    counter_block: u64,
}

#[derive(Deserialize)]
struct SnapshotV4 {
    schema_version: u32,
    event: EventId,
    venue_digest: u64,
    config: ConfigV4,
    sale: SaleState,
    journal_seq: u64,
    clock: Millis,
    counter_ceiling: Position,
    admitted_through: Position,
    waiting: u64,
    next_hold: HoldId,
    next_payment: PaymentId,
    next_order: OrderId,
    shoppers: Vec<ShopperRecord>,
    holds: Vec<HoldRecord>,
    #[serde(with = "order_columns")]
    orders: Vec<OrderRecord>,
    voided: Vec<PaymentId>,
}

/// Decode a version 2, 3 or 4 snapshot.
pub(super) fn decode_v4(bytes: &[u8]) -> Result<EventSnapshot, CodecError> {
    let old: SnapshotV4 = codec::decode_record(bytes)?;
    let c = old.config;
    Ok(EventSnapshot {
        schema_version: old.schema_version,
        event: old.event,
        venue_digest: old.venue_digest,
        config: EventConfig {
            tickets_per_fan_max: c.tickets_per_fan_max,
            full_factor: c.full_factor,
            shoppers_max: c.shoppers_max,
            show_up_window_ms: c.show_up_window_ms,
            shopping_window_ms: c.shopping_window_ms,
            checkout_window_ms: c.checkout_window_ms,
            provider_timeout_ms: c.provider_timeout_ms,
            counter_block: c.counter_block,
            pre_queue_draw: false,
            opens_at: None,
            presale_until: None,
            stamp_auto_bits: 0,
            stamp_auto_fill_s: 60,
        },
        sale: old.sale,
        journal_seq: old.journal_seq,
        clock: old.clock,
        counter_ceiling: old.counter_ceiling,
        admitted_through: old.admitted_through,
        waiting: old.waiting,
        next_hold: old.next_hold,
        next_payment: old.next_payment,
        next_order: old.next_order,
        shoppers: old.shoppers,
        holds: old.holds,
        orders: old.orders,
        voided: old.voided,
        pre_queue: Vec::new(),
        draw: None,
        presale_joined: Vec::new(),
        stamp_bits: 0,
    })
}
