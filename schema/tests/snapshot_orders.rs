//! A snapshot's orders in their stored form: columns of deltas.
//!
//! Orders round-trip through `EventSnapshot::encode`/`decode`; the order
//! columns, given any bytes or a damaged encoding, are refused without a
//! panic, and whatever they accept is the one encoding of its orders; and
//! a 60,000-seat stadium sold out in parties of one or two stays under
//! 1 MB. Every snapshot here goes through [`check`] or [`decode_columns`].

mod common;
use common::{apply, edits};
use onsale_schema::codec::{self, CodecError};
use onsale_schema::config::{EventConfig, SaleState};
use onsale_schema::snapshot::{EventSnapshot, OrderRecord, RecordError, SCHEMA_VERSION};
use onsale_schema::{
    EventId, FanId, HoldId, Millis, OrderId, PaymentId, Position, SeatIdx, limits,
};
use proptest::collection::{btree_set, vec};
use proptest::prelude::*;
use proptest::sample::Index;

// ---------------------------------------------------------------------------
// Helpers

/// A sold-out snapshot holding `orders` and nothing else that varies
/// (`next_order` too is fixed: only a restore checks it against orders).
fn snapshot(orders: Vec<OrderRecord>) -> EventSnapshot {
    EventSnapshot {
        schema_version: SCHEMA_VERSION,
        event: EventId(7),
        venue_digest: 0x0123_4567_89ab_cdef,
        config: EventConfig::default(),
        sale: SaleState::SoldOut,
        journal_seq: 123_456,
        clock: Millis(1_764_000_000_000),
        counter_ceiling: Position(4_000_000),
        admitted_through: Position(3_000_000),
        waiting: 0,
        next_hold: HoldId(100_000),
        next_payment: PaymentId(100_000),
        next_order: OrderId(1_000_000),
        shoppers: Vec::new(),
        holds: Vec::new(),
        orders,
        voided: Vec::new(),
        pre_queue: Vec::new(),
        draw: None,
        presale_joined: Vec::new(),
        stamp_bits: 0,
    }
}

/// Encode a snapshot of `orders`, check it decodes to itself, and return
/// its bytes.
fn check(orders: &[OrderRecord]) -> Result<Vec<u8>, TestCaseError> {
    let snapshot = snapshot(orders.to_vec());
    let bytes = snapshot.encode().expect("snapshot encodes");
    prop_assert_eq!(EventSnapshot::decode(&bytes), Ok(snapshot));
    Ok(bytes)
}

/// The encoding of [`snapshot`] up to its order columns. After them come
/// the voided payments, the pre-queue, the draw, the presale's fans and
/// the difficulty: none of each, one byte each.
fn prefix() -> Vec<u8> {
    let mut bytes = snapshot(Vec::new()).encode().unwrap();
    // No orders: a blob of one byte (count 0) after its length (1); then
    // no voided payments, pre-queue, draw, presale fans or difficulty.
    assert_eq!(bytes.split_off(bytes.len() - 7), [1, 0, 0, 0, 0, 0, 0]);
    bytes
}

/// The encoded snapshot whose order columns are `columns`.
fn with_columns(columns: &[u8]) -> Vec<u8> {
    let mut bytes = prefix();
    bytes.extend(codec::encode_record(&columns).unwrap());
    bytes.extend([0, 0, 0, 0, 0]);
    bytes
}

/// The order columns of an encoded [`snapshot`].
fn columns_of(bytes: &[u8]) -> Vec<u8> {
    let start = prefix().len();
    codec::decode_record(&bytes[start..bytes.len() - 5]).unwrap()
}

/// Decode order columns (any bytes) through a whole snapshot. Whatever is
/// accepted must encode back to exactly `columns`: one encoding per value.
fn decode_columns(columns: &[u8]) -> Result<Vec<OrderRecord>, RecordError> {
    let decoded = EventSnapshot::decode(&with_columns(columns))?;
    let again = decoded.encode().expect("a decoded snapshot encodes");
    assert_eq!(
        columns_of(&again),
        columns,
        "accepted columns are canonical"
    );
    Ok(decoded.orders)
}

/// The decode error for `columns`, which must be a codec error.
fn refusal(columns: &[u8]) -> String {
    match decode_columns(columns) {
        Err(RecordError::Codec(CodecError::Decode(message))) => message,
        other => panic!("{columns:?} gave {other:?}, not a decode error"),
    }
}

fn varint(mut value: u64) -> Vec<u8> {
    let mut out = Vec::new();
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
    out
}

/// Order columns of one order: id 5, fan 0, position, payment and time 0,
/// then the seat count runs and seat columns given.
fn one_order(seat_counts: &[u8], seats: &[u8]) -> Vec<u8> {
    let mut columns = vec![1, 5];
    columns.extend([0; 8]);
    columns.extend([0, 0]);
    columns.extend(seat_counts);
    columns.extend(seats);
    columns.push(0);
    columns
}

/// Order columns of two orders, ids 5 and 6, seats 0 and 2, everything
/// else 0, with the seat count runs given.
fn two_orders(seat_counts: &[u8]) -> Vec<u8> {
    let mut columns = vec![2, 5, 0, 1];
    columns.extend([0; 16]);
    columns.extend([0; 4]);
    columns.extend(seat_counts);
    columns.extend([0, 4]);
    columns.extend([0, 0]);
    columns
}

fn order(id: u64, seats: &[u32]) -> OrderRecord {
    OrderRecord {
        order: OrderId(id),
        fan: FanId(0x9e37_79b9_7f4a_7c15 ^ id),
        position: Position(1_000 + id),
        payment: PaymentId(id),
        seats: seats.iter().copied().map(SeatIdx).collect(),
        at: Millis(1_764_000_000_000 + id),
    }
}

/// SplitMix64: a deterministic generator for the size cases.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform enough in `low..=high` for sizes.
    fn between(&mut self, low: u64, high: u64) -> u64 {
        low + self.next() % (high - low + 1)
    }

    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            items.swap(i, self.between(0, i as u64) as usize);
        }
    }
}

// ---------------------------------------------------------------------------
// Strategies

/// Strictly increasing order ids: consecutive from a small start (as an
/// event hands them out), with gaps, or spread over all of `u64`.
fn order_ids() -> impl Strategy<Value = Vec<u64>> {
    prop_oneof![
        (0u64..1_000, 0usize..40).prop_map(|(start, n)| (start..start + n as u64).collect()),
        (0u64..1_000, vec(0u64..5, 0..40)).prop_map(|(start, gaps)| {
            gaps.iter()
                .scan(start, |id, gap| {
                    *id += gap + 1;
                    Some(*id)
                })
                .collect()
        }),
        btree_set(any::<u64>(), 0..40).prop_map(|ids| ids.into_iter().collect()),
    ]
}

/// A position, payment or time: near a running value, or anywhere.
fn value() -> impl Strategy<Value = u64> {
    prop_oneof![
        3 => 1_764_000_000_000u64..1_764_000_100_000,
        1 => any::<u64>(),
        1 => Just(0u64),
        1 => Just(u64::MAX),
    ]
}

/// An order's seats: 1..=max sorted distinct, as holds produce them; or,
/// as a journal replayed by hand could, in any order with repeats.
fn seats() -> impl Strategy<Value = Vec<SeatIdx>> {
    let max = limits::HOLD_SEATS_MAX;
    prop_oneof![
        4 => btree_set(any::<u32>(), 1..=max).prop_map(|s| s.into_iter().map(SeatIdx).collect()),
        4 => (0u32..60_000, 1..=max as u32)
            .prop_map(|(first, n)| (first..first + n).map(SeatIdx).collect()),
        1 => vec(any::<u32>().prop_map(SeatIdx), 1..=max),
    ]
}

fn orders() -> impl Strategy<Value = Vec<OrderRecord>> {
    order_ids().prop_flat_map(|ids| {
        let n = ids.len();
        let rest = vec((any::<u64>(), value(), value(), seats(), value()), n);
        (Just(ids), rest).prop_map(|(ids, rest)| {
            ids.into_iter()
                .zip(rest)
                .map(|(id, (fan, position, payment, seats, at))| OrderRecord {
                    order: OrderId(id),
                    fan: FanId(fan),
                    position: Position(position),
                    payment: PaymentId(payment),
                    seats,
                    at: Millis(at),
                })
                .collect()
        })
    })
}

// ---------------------------------------------------------------------------
// Round trips

proptest! {
    #[test]
    fn orders_round_trip(orders in orders()) {
        let bytes = check(&orders)?;
        prop_assert_eq!(decode_columns(&columns_of(&bytes)), Ok(orders));
    }

    #[test]
    fn orders_round_trip_through_json(orders in orders()) {
        let snapshot = snapshot(orders);
        let json = serde_json::to_string(&snapshot).unwrap();
        prop_assert_eq!(serde_json::from_str::<EventSnapshot>(&json).unwrap(), snapshot);
    }
}

#[test]
fn no_orders_and_extreme_orders_round_trip() {
    let extreme = OrderRecord {
        order: OrderId(u64::MAX),
        fan: FanId(u64::MAX),
        position: Position(u64::MAX),
        payment: PaymentId(0),
        seats: vec![SeatIdx(u32::MAX), SeatIdx(0), SeatIdx(u32::MAX)],
        at: Millis(u64::MAX),
    };
    let cases = [
        vec![],
        vec![order(0, &[0])],
        vec![order(0, &[u32::MAX]), extreme.clone()],
        vec![extreme],
    ];
    for orders in cases {
        check(&orders).unwrap();
    }
}

// ---------------------------------------------------------------------------
// Untrusted bytes

proptest! {
    #[test]
    fn arbitrary_columns_never_panic(columns in vec(any::<u8>(), 0..512)) {
        let _ = decode_columns(&columns);
    }

    #[test]
    fn columns_of_plausible_shape_never_panic(
        count in 0u64..8,
        body in vec(any::<u8>(), 0..256),
    ) {
        // A small count gets past the size check into the columns.
        let mut columns = varint(count);
        columns.extend(body);
        let _ = decode_columns(&columns);
    }

    #[test]
    fn damaged_columns_never_panic(orders in orders(), edits in edits()) {
        let columns = columns_of(&check(&orders)?);
        let _ = decode_columns(&apply(&columns, &edits));
    }

    #[test]
    fn damaged_snapshots_never_panic(orders in orders(), edits in edits()) {
        let bytes = apply(&check(&orders)?, &edits);
        if let Ok(snapshot) = EventSnapshot::decode(&bytes) {
            let again = EventSnapshot::decode(&snapshot.encode().unwrap());
            prop_assert_eq!(again, Ok(snapshot));
        }
    }

    #[test]
    fn truncated_or_extended_encodings_are_refused(
        orders in orders(),
        cut in any::<Index>(),
        extra in any::<u8>(),
    ) {
        let bytes = check(&orders)?;
        prop_assert!(EventSnapshot::decode(&bytes[..cut.index(bytes.len())]).is_err());
        let columns = columns_of(&bytes);
        let cut = cut.index(columns.len());
        prop_assert!(decode_columns(&columns[..cut]).is_err(), "prefix of {}", cut);
        let mut longer = columns.clone();
        longer.push(extra);
        prop_assert!(refusal(&longer).contains("1 trailing bytes"));
    }
}

#[test]
fn a_count_the_bytes_cannot_hold_is_refused_before_allocating() {
    for count in [1 << 60, u64::MAX, 1_000_000] {
        let mut columns = varint(count);
        columns.extend([0; 64]);
        let message = refusal(&columns);
        assert!(
            message.contains(&format!("claim {count} orders")),
            "{message}"
        );
    }
    // 12 bytes is the least an order takes (its id and seat count may be
    // in a run): one order in 11 is refused.
    let one = one_order(&[1, 1], &[0]);
    assert_eq!(one.len(), 1 + 15);
    assert!(decode_columns(&one).is_ok());
    assert!(refusal(&one[..12]).contains("claim 1 orders"));
}

#[test]
fn malformed_columns_are_refused() {
    assert_eq!(
        decode_columns(&one_order(&[1, 1], &[0])).unwrap(),
        [OrderRecord {
            order: OrderId(5),
            fan: FanId(0),
            position: Position(0),
            payment: PaymentId(0),
            seats: vec![SeatIdx(0)],
            at: Millis(0),
        }]
    );
    assert!(refusal(&one_order(&[0, 1], &[0])).contains("has 0 seats"));
    assert!(refusal(&one_order(&[17, 1], &[0; 17])).contains("has 17 seats"));
    // A seat delta past u32 (2^32, zigzag coded).
    assert!(refusal(&one_order(&[1, 1], &varint(1 << 32))).contains("seat delta"));
    // Seat delta 0 written overlong.
    assert!(refusal(&one_order(&[1, 1], &[0x80, 0x00])).contains("overlong"));

    // Seat count runs: empty, longer than the orders left, not merged.
    let orders = decode_columns(&two_orders(&[1, 2])).unwrap();
    assert_eq!(orders[1].order, OrderId(6));
    assert_eq!(orders[1].seats, [SeatIdx(2)]);
    assert!(refusal(&two_orders(&[1, 0, 1, 2])).contains("run"));
    assert!(refusal(&two_orders(&[1, 3])).contains("run"));
    assert!(refusal(&two_orders(&[1, 1, 1, 1])).contains("run"));

    // Two orders: u64::MAX, then one more.
    let mut columns = vec![2];
    columns.extend(varint(u64::MAX));
    columns.extend([0, 1]);
    columns.extend([0; 2 * 12]);
    assert!(refusal(&columns).contains("order id past the largest"));
}

#[test]
fn orders_the_columns_cannot_hold_are_refused_when_encoding() {
    let cases: [(&str, Vec<OrderRecord>); 4] = [
        ("ids repeat", vec![order(3, &[1]), order(3, &[2])]),
        ("ids go down", vec![order(3, &[1]), order(2, &[2])]),
        ("no seats", vec![order(3, &[])]),
        (
            "too many seats",
            vec![order(3, &[0; limits::HOLD_SEATS_MAX + 1])],
        ),
    ];
    for (what, orders) in cases {
        let result = snapshot(orders).encode();
        assert!(
            matches!(result, Err(CodecError::Encode(_))),
            "{what}: {result:?}"
        );
    }
}

#[test]
fn a_version_1_snapshot_is_unsupported() {
    let mut bytes = codec::encode_record(&1u32).unwrap();
    bytes.extend(&prefix()[1..]);
    let error = EventSnapshot::decode(&bytes).unwrap_err();
    assert_eq!(error, RecordError::UnsupportedVersion { found: 1 });
    assert!(error.to_string().contains("no longer supported"), "{error}");
}

// ---------------------------------------------------------------------------
// Size: a 60,000-seat stadium sold out

const STADIUM_SEATS: u32 = 60_000;

/// Orders selling out the stadium in parties of `party` adjacent seats, in
/// the order `blocks` gives (first seat of each party). Fan ids are random
/// 64-bit values, times Unix-epoch ms a few ms apart, payments increasing
/// (with the odd decline), positions increasing by random steps.
fn sold_out(party: u32, blocks: &[u32], rng: &mut Rng) -> Vec<OrderRecord> {
    let mut at = 1_764_000_000_000;
    let mut payment = 0;
    let mut position = 0;
    blocks
        .iter()
        .zip(1..)
        .map(|(&first, id)| {
            at += rng.between(0, 50);
            payment += rng.between(1, 2);
            position += rng.between(1, 100);
            OrderRecord {
                order: OrderId(id),
                fan: FanId(rng.next()),
                position: Position(position),
                payment: PaymentId(payment),
                seats: (first..first + party).map(SeatIdx).collect(),
                at: Millis(at),
            }
        })
        .collect()
}

/// Encode the stadium sold out in parties of `party`, with seats sold front
/// to back (as best-available sells them) and in random order (the worst
/// case for the seat column); print and return the larger size.
fn sold_out_size(party: u32) -> usize {
    let mut rng = Rng(u64::from(party));
    let mut blocks: Vec<u32> = (0..STADIUM_SEATS).step_by(party as usize).collect();
    let mut sizes = Vec::new();
    for order in ["front to back", "random"] {
        if order == "random" {
            rng.shuffle(&mut blocks);
        }
        let orders = sold_out(party, &blocks, &mut rng);
        let rows = codec::encode_record(&orders).unwrap().len();
        let bytes = check(&orders).unwrap();
        println!(
            "sold out in parties of {party}, seats {order}: {} orders, snapshot {} bytes \
             ({:.1} per order; orders row by row would take {rows} bytes)",
            orders.len(),
            bytes.len(),
            bytes.len() as f64 / orders.len() as f64,
        );
        sizes.push(bytes.len());
    }
    sizes.into_iter().max().unwrap()
}

#[test]
fn a_stadium_sold_out_in_singles_is_under_1_mb() {
    let size = sold_out_size(1);
    assert!(size <= 1_000_000, "{size} bytes");
}

#[test]
fn a_stadium_sold_out_in_pairs_is_under_1_mb() {
    let size = sold_out_size(2);
    assert!(size <= 1_000_000, "{size} bytes");
}
