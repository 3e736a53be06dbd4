//! The stored form of a snapshot's orders: one byte blob of columns.
//!
//! A sold-out stadium holds one order per party, so orders are most of a
//! snapshot. Stored row by row, every order pays for a full-size order id,
//! payment id, position and Unix-epoch time; stored as columns of deltas,
//! each of those is a byte or two. The blob is, in order:
//!
//! | column      | per order                                               |
//! |-------------|---------------------------------------------------------|
//! | count       | varint, once                                            |
//! | order id    | varint: the first id; then runs of `id - previous - 1`  |
//! | fan         | 8 bytes, little-endian (random ids do not compress)     |
//! | position    | zigzag varint of the delta from the previous order's    |
//! | payment     | zigzag varint of the delta from the previous order's    |
//! | seat count  | runs of 1..=`HOLD_SEATS_MAX`                            |
//! | seats       | zigzag varint per seat: the first seat's delta from the |
//! |             | previous order's first seat, each further seat's delta  |
//! |             | from the seat before it in the order                    |
//! | at          | zigzag varint of the delta from the previous order's    |
//!
//! A run is a value and how many orders in a row have it (two varints, the
//! count at least 1, next to no run of the same value). An event numbers
//! its orders consecutively and often sells in one party size, so those
//! two columns take a few bytes for the whole event, where a byte an order
//! would be nearly a tenth of a sold-out snapshot.
//!
//! Varints are LEB128 (7 bits a byte, low first), zigzag maps small
//! negative deltas to small numbers, and a column's first delta is taken
//! from 0. Seats within an order are zigzag coded although holds produce
//! them sorted: a hold replayed from the journal keeps the journal's order,
//! and a snapshot must not fail to encode over it.
//!
//! Deltas of positions, payments, times and seats are modulo 2^64 (2^32 for
//! seats): every value round-trips, and no input can overflow. Order ids
//! must strictly increase, so their gaps are checked instead.
//!
//! Decoding takes untrusted bytes: it refuses an order count the bytes
//! cannot hold before allocating, overlong or oversized varints, seat
//! counts out of range, runs that are empty, too long or not merged, order
//! ids past `u64::MAX`, and trailing bytes. So every accepted blob is the
//! one encoding of its orders.

use std::fmt;

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::ser::{self, Serializer};

use crate::ids::{FanId, Millis, OrderId, PaymentId, Position, SeatIdx};
use crate::limits;
use crate::snapshot::OrderRecord;

/// The fewest bytes one order takes: fan (8), position, payment, one seat,
/// time. (Its order id and seat count may be part of a run.)
const ORDER_BYTES_MIN: usize = 8 + 1 + 1 + 1 + 1;

/// Bytes of a varint holding any `u64`.
const VARINT_BYTES_MAX: usize = 10;

/// Why orders could not become columns, or bytes orders.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
enum ColumnError {
    #[error("order ids are not strictly increasing at {order}")]
    OrderNotIncreasing { order: OrderId },
    #[error("{order} has {count} seats, not 1..={}", limits::HOLD_SEATS_MAX)]
    SeatCount { order: OrderId, count: u64 },
    #[error(
        "order columns are {size} bytes, more than the limit of {}",
        limits::SNAPSHOT_BYTES_MAX
    )]
    TooLarge { size: usize },
    #[error("order columns claim {count} orders but only {bytes} bytes follow")]
    CountTooLarge { count: u64, bytes: usize },
    #[error("order columns end in the middle of a value")]
    Truncated,
    #[error("order columns hold a varint that is overlong or does not fit")]
    BadVarint,
    #[error("order columns hold a run that is empty, too long or not merged")]
    BadRun,
    #[error("order columns hold an order id past the largest")]
    OrderIdOverflow,
    #[error("order columns hold a seat delta that does not fit a seat index")]
    SeatDelta,
    #[error("order columns have {0} trailing bytes")]
    Trailing(usize),
}

/// `#[serde(with)]` half: orders as one byte blob.
pub(super) fn serialize<S: Serializer>(
    orders: &[OrderRecord],
    serializer: S,
) -> Result<S::Ok, S::Error> {
    let bytes = encode(orders).map_err(ser::Error::custom)?;
    serializer.serialize_bytes(&bytes)
}

/// `#[serde(with)]` half: orders from one byte blob. Binary formats hand
/// the blob over as bytes (bincode borrows it from the input); text
/// formats such as JSON as a sequence of numbers.
pub(super) fn deserialize<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<OrderRecord>, D::Error> {
    deserializer.deserialize_bytes(ColumnsVisitor)
}

struct ColumnsVisitor;

impl<'de> Visitor<'de> for ColumnsVisitor {
    type Value = Vec<OrderRecord>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("order columns as bytes")
    }

    fn visit_bytes<E: de::Error>(self, bytes: &[u8]) -> Result<Self::Value, E> {
        decode(bytes).map_err(E::custom)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut bytes = Vec::new();
        while let Some(byte) = seq.next_element::<u8>()? {
            if bytes.len() == limits::SNAPSHOT_BYTES_MAX {
                return Err(de::Error::custom(ColumnError::TooLarge {
                    size: bytes.len() + 1,
                }));
            }
            bytes.push(byte);
        }
        decode(&bytes).map_err(de::Error::custom)
    }
}

// ---------------------------------------------------------------------------
// Encoding

fn encode(orders: &[OrderRecord]) -> Result<Vec<u8>, ColumnError> {
    check_encodable(orders)?;
    let seats: usize = orders.iter().map(|o| o.seats.len()).sum();
    let mut out = Vec::with_capacity(VARINT_BYTES_MAX + orders.len() * 16 + seats * 2);
    put_varint(&mut out, orders.len() as u64);
    if let Some(first) = orders.first() {
        put_varint(&mut out, first.order.0);
    }
    put_runs(
        &mut out,
        orders.windows(2).map(|w| w[1].order.0 - w[0].order.0 - 1),
    );
    for order in orders {
        out.extend_from_slice(&order.fan.0.to_le_bytes());
    }
    put_deltas(&mut out, orders, |o| o.position.0);
    put_deltas(&mut out, orders, |o| o.payment.0);
    put_runs(&mut out, orders.iter().map(|o| o.seats.len() as u64));
    put_seats(&mut out, orders);
    put_deltas(&mut out, orders, |o| o.at.0);
    Ok(out)
}

/// Orders the columns can hold: strictly increasing ids, 1..=max seats.
fn check_encodable(orders: &[OrderRecord]) -> Result<(), ColumnError> {
    if let Some(w) = orders.windows(2).find(|w| w[0].order >= w[1].order) {
        return Err(ColumnError::OrderNotIncreasing { order: w[1].order });
    }
    match orders.iter().find(|o| !seat_count_ok(o.seats.len() as u64)) {
        Some(o) => Err(ColumnError::SeatCount {
            order: o.order,
            count: o.seats.len() as u64,
        }),
        None => Ok(()),
    }
}

fn seat_count_ok(count: u64) -> bool {
    (1..=limits::HOLD_SEATS_MAX as u64).contains(&count)
}

fn put_deltas(out: &mut Vec<u8>, orders: &[OrderRecord], field: impl Fn(&OrderRecord) -> u64) {
    let mut previous = 0u64;
    for order in orders {
        let value = field(order);
        put_varint(out, zigzag(value.wrapping_sub(previous) as i64));
        previous = value;
    }
}

/// Runs of equal values: each value once, then how many in a row.
fn put_runs(out: &mut Vec<u8>, values: impl Iterator<Item = u64>) {
    let mut run: Option<(u64, u64)> = None;
    for value in values {
        match &mut run {
            Some((current, length)) if *current == value => *length += 1,
            _ => {
                if let Some((current, length)) = run {
                    put_varint(out, current);
                    put_varint(out, length);
                }
                run = Some((value, 1));
            }
        }
    }
    if let Some((current, length)) = run {
        put_varint(out, current);
        put_varint(out, length);
    }
}

fn put_seats(out: &mut Vec<u8>, orders: &[OrderRecord]) {
    let mut previous_first = 0u32;
    for order in orders {
        let mut previous = previous_first;
        for seat in &order.seats {
            put_varint(
                out,
                u64::from(zigzag32(seat.0.wrapping_sub(previous) as i32)),
            );
            previous = seat.0;
        }
        previous_first = order.seats[0].0;
    }
}

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn zigzag(delta: i64) -> u64 {
    ((delta << 1) ^ (delta >> 63)) as u64
}

fn unzigzag(value: u64) -> i64 {
    ((value >> 1) as i64) ^ -((value & 1) as i64)
}

fn zigzag32(delta: i32) -> u32 {
    ((delta << 1) ^ (delta >> 31)) as u32
}

fn unzigzag32(value: u32) -> i32 {
    ((value >> 1) as i32) ^ -((value & 1) as i32)
}

// ---------------------------------------------------------------------------
// Decoding

fn decode(bytes: &[u8]) -> Result<Vec<OrderRecord>, ColumnError> {
    if bytes.len() > limits::SNAPSHOT_BYTES_MAX {
        return Err(ColumnError::TooLarge { size: bytes.len() });
    }
    let mut input = Input { bytes };
    let count = input.varint()?;
    // Refuse a count the bytes cannot hold before allocating for it.
    let bytes_left = input.bytes.len();
    if count > (bytes_left / ORDER_BYTES_MIN) as u64 {
        return Err(ColumnError::CountTooLarge {
            count,
            bytes: bytes_left,
        });
    }
    let mut orders = take_order_ids(&mut input, count as usize)?;
    for order in &mut orders {
        order.fan = FanId(input.u64_le()?);
    }
    take_deltas(&mut input, &mut orders, |o| &mut o.position.0)?;
    take_deltas(&mut input, &mut orders, |o| &mut o.payment.0)?;
    take_runs(&mut input, orders.len(), |i, count| {
        let order = &mut orders[i];
        if !seat_count_ok(count) {
            return Err(ColumnError::SeatCount {
                order: order.order,
                count,
            });
        }
        order.seats = vec![SeatIdx(0); count as usize];
        Ok(())
    })?;
    take_seats(&mut input, &mut orders)?;
    take_deltas(&mut input, &mut orders, |o| &mut o.at.0)?;
    match input.bytes.len() {
        0 => Ok(orders),
        left => Err(ColumnError::Trailing(left)),
    }
}

/// The order id column, as orders with every other field still empty.
fn take_order_ids(input: &mut Input<'_>, count: usize) -> Result<Vec<OrderRecord>, ColumnError> {
    let mut ids = Vec::with_capacity(count);
    if count > 0 {
        ids.push(input.varint()?);
    }
    take_runs(input, count.saturating_sub(1), |i, gap| {
        let id = ids[i]
            .checked_add(gap)
            .and_then(|id| id.checked_add(1))
            .ok_or(ColumnError::OrderIdOverflow)?;
        ids.push(id);
        Ok(())
    })?;
    let empty = |id| OrderRecord {
        order: OrderId(id),
        fan: FanId(0),
        position: Position(0),
        payment: PaymentId(0),
        seats: Vec::new(),
        at: Millis(0),
    };
    Ok(ids.into_iter().map(empty).collect())
}

/// A column of `len` values in runs, handed to `each` with their index.
fn take_runs(
    input: &mut Input<'_>,
    len: usize,
    mut each: impl FnMut(usize, u64) -> Result<(), ColumnError>,
) -> Result<(), ColumnError> {
    let mut done = 0;
    let mut previous = None;
    while done < len {
        let value = input.varint()?;
        let length = input.varint()?;
        if length == 0 || length > (len - done) as u64 || previous == Some(value) {
            return Err(ColumnError::BadRun);
        }
        for i in done..done + length as usize {
            each(i, value)?;
        }
        done += length as usize;
        previous = Some(value);
    }
    Ok(())
}

fn take_deltas(
    input: &mut Input<'_>,
    orders: &mut [OrderRecord],
    field: impl Fn(&mut OrderRecord) -> &mut u64,
) -> Result<(), ColumnError> {
    let mut previous = 0u64;
    for order in orders {
        previous = previous.wrapping_add(unzigzag(input.varint()?) as u64);
        *field(order) = previous;
    }
    Ok(())
}

/// The seat column, into seat lists already sized by the seat counts.
fn take_seats(input: &mut Input<'_>, orders: &mut [OrderRecord]) -> Result<(), ColumnError> {
    let mut previous_first = 0u32;
    for order in orders {
        let mut previous = previous_first;
        for seat in &mut order.seats {
            let delta = u32::try_from(input.varint()?).map_err(|_| ColumnError::SeatDelta)?;
            previous = previous.wrapping_add(unzigzag32(delta) as u32);
            *seat = SeatIdx(previous);
        }
        previous_first = order.seats[0].0;
    }
    Ok(())
}

/// The bytes not read yet.
struct Input<'a> {
    bytes: &'a [u8],
}

impl Input<'_> {
    /// A canonical LEB128 varint: at most 10 bytes, fits a `u64`, and no
    /// trailing zero groups (so each value has exactly one encoding).
    fn varint(&mut self) -> Result<u64, ColumnError> {
        let mut value = 0u64;
        for i in 0..VARINT_BYTES_MAX {
            let (&byte, rest) = self.bytes.split_first().ok_or(ColumnError::Truncated)?;
            self.bytes = rest;
            let group = u64::from(byte & 0x7f);
            // The tenth byte holds bit 63 alone.
            if i == VARINT_BYTES_MAX - 1 && byte > 1 {
                return Err(ColumnError::BadVarint);
            }
            value |= group << (7 * i);
            if byte & 0x80 == 0 {
                if i > 0 && byte == 0 {
                    return Err(ColumnError::BadVarint);
                }
                return Ok(value);
            }
        }
        Err(ColumnError::BadVarint)
    }

    fn u64_le(&mut self) -> Result<u64, ColumnError> {
        let (head, rest) = self
            .bytes
            .split_first_chunk::<8>()
            .ok_or(ColumnError::Truncated)?;
        self.bytes = rest;
        Ok(u64::from_le_bytes(*head))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn varint(bytes: &[u8]) -> Result<u64, ColumnError> {
        let mut input = Input { bytes };
        let value = input.varint()?;
        assert!(input.bytes.is_empty(), "{bytes:?} left bytes unread");
        Ok(value)
    }

    #[test]
    fn varints_round_trip_and_only_canonical_ones_decode() {
        for value in [
            0,
            1,
            127,
            128,
            300,
            u64::from(u32::MAX),
            u64::MAX - 1,
            u64::MAX,
        ] {
            let mut out = Vec::new();
            put_varint(&mut out, value);
            assert_eq!(varint(&out), Ok(value));
        }
        assert_eq!(varint(&[0x80, 0x00]), Err(ColumnError::BadVarint));
        assert_eq!(varint(&[0xff, 0x80, 0x00]), Err(ColumnError::BadVarint));
        assert_eq!(varint(&[0xff; 9]), Err(ColumnError::Truncated));
        let mut past_u64 = [0xff; 10];
        past_u64[9] = 0x02;
        assert_eq!(varint(&past_u64), Err(ColumnError::BadVarint));
        assert_eq!(varint(&[0xff; 11][..]).err(), Some(ColumnError::BadVarint));
    }

    #[test]
    fn zigzag_maps_small_deltas_to_small_numbers_and_back() {
        for (delta, coded) in [(0, 0), (-1, 1), (1, 2), (-2, 3), (i64::MAX, u64::MAX - 1)] {
            assert_eq!(zigzag(delta), coded);
            assert_eq!(unzigzag(coded), delta);
        }
        assert_eq!(unzigzag(u64::MAX), i64::MIN);
        for delta in [0, -1, 1, i32::MIN, i32::MAX] {
            assert_eq!(unzigzag32(zigzag32(delta)), delta);
        }
    }
}
