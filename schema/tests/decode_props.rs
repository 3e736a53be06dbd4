//! Decoders against untrusted bytes, and the wire forms of messages.
//!
//! Every decoder is fed arbitrary bytes and mutated or truncated valid
//! encodings: none may panic, garbage is refused, and whatever they accept
//! encodes back to itself. Messages round-trip through both wire forms
//! (bincode between nodes, JSON to fans).

mod common;
use common::{apply, edits};
use onsale_schema::codec::{self, CodecError};
use onsale_schema::config::{EventConfig, SaleState};
use onsale_schema::message::{
    Area, Command, DeclineReason, EventOverview, EventOwner, FanStatus, HoldPlaced, HoldRejected,
    HoldRequest, JoinRefused, Joined, PaymentRefused, PaymentSettled, PaymentStarted,
    ProviderAnswer, Push, Reply, SaleCommand, SectionSeats, SectionSummary,
};
use onsale_schema::snapshot::{
    CheckoutRecord, DrawRecord, EventSnapshot, HoldRecord, JournalEntry, JournalRecord,
    OrderRecord, RecordError, ReleaseReason, SCHEMA_VERSION, SCHEMA_VERSION_READ_MIN,
    ShopperRecord,
};
use onsale_schema::{
    ErrorCode, EventId, FanId, HoldId, Millis, OrderId, PaymentId, Position, PriceLevelIdx,
    SeatIdx, SectionIdx, Venue, limits,
};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;
use serde::Serialize;
use serde::de::DeserializeOwned;

// ---------------------------------------------------------------------------
// Strategies

fn fan() -> impl Strategy<Value = FanId> {
    any::<u64>().prop_map(FanId)
}

fn hold() -> impl Strategy<Value = HoldId> {
    any::<u64>().prop_map(HoldId)
}

fn payment() -> impl Strategy<Value = PaymentId> {
    any::<u64>().prop_map(PaymentId)
}

fn millis() -> impl Strategy<Value = Millis> {
    any::<u64>().prop_map(Millis)
}

fn position() -> impl Strategy<Value = Position> {
    any::<u64>().prop_map(Position)
}

fn seat_list() -> impl Strategy<Value = Vec<SeatIdx>> {
    vec(any::<u32>().prop_map(SeatIdx), 0..=limits::HOLD_SEATS_MAX)
}

fn sale_state() -> impl Strategy<Value = SaleState> {
    prop_oneof![
        Just(SaleState::Scheduled),
        Just(SaleState::OnSale),
        Just(SaleState::Paused),
        Just(SaleState::SoldOut),
        Just(SaleState::Closed),
    ]
}

fn area() -> impl Strategy<Value = Area> {
    prop_oneof![
        any::<u16>().prop_map(|s| Area::Section {
            section: SectionIdx(s)
        }),
        any::<u16>().prop_map(|p| Area::PriceLevel {
            price_level: PriceLevelIdx(p)
        }),
        Just(Area::Anywhere),
    ]
}

fn hold_request() -> impl Strategy<Value = HoldRequest> {
    prop_oneof![
        seat_list().prop_map(|seats| HoldRequest::Seats { seats }),
        (any::<u8>(), area()).prop_map(|(count, area)| HoldRequest::Best { count, area }),
    ]
}

fn command() -> impl Strategy<Value = Command> {
    prop_oneof![
        fan().prop_map(|fan| Command::Join { fan }),
        (fan(), "p[0-9a-f]{0,64}|\\PC{0,20}")
            .prop_map(|(fan, code)| Command::JoinWithCode { fan, code }),
        (fan(), "[0-9a-f]{0,96}|\\PC{0,20}")
            .prop_map(|(fan, token)| Command::Resume { fan, token }),
        fan().prop_map(|fan| Command::Leave { fan }),
        fan().prop_map(|fan| Command::Status { fan }),
        Just(Command::Overview),
        any::<u16>().prop_map(|s| Command::SectionSeats {
            section: SectionIdx(s)
        }),
        (fan(), hold_request()).prop_map(|(fan, request)| Command::Hold { fan, request }),
        (fan(), hold()).prop_map(|(fan, hold)| Command::Release { fan, hold }),
        (fan(), hold()).prop_map(|(fan, hold)| Command::SubmitPayment { fan, hold }),
        (payment(), any::<bool>()).prop_map(|(payment, ok)| Command::ProviderAnswer {
            payment,
            answer: if ok {
                ProviderAnswer::Confirmed
            } else {
                ProviderAnswer::Declined
            },
        }),
        prop_oneof![
            Just(SaleCommand::Open),
            Just(SaleCommand::Pause),
            Just(SaleCommand::Close)
        ]
        .prop_map(|command| Command::Sale { command }),
    ]
}

fn fan_status() -> impl Strategy<Value = FanStatus> {
    prop_oneof![
        (position(), any::<u64>())
            .prop_map(|(position, ahead)| FanStatus::Waiting { position, ahead }),
        (position(), millis()).prop_map(|(position, shopping_until)| FanStatus::Admitted {
            position,
            shopping_until
        }),
        (hold(), millis(), any::<bool>()).prop_map(|(hold, deadline, paying)| {
            FanStatus::Holding {
                hold,
                deadline,
                paying,
            }
        }),
        (any::<u64>(), seat_list()).prop_map(|(order, seats)| FanStatus::Purchased {
            tickets: seats.len() as u8,
            order: OrderId(order),
            seats
        }),
        Just(FanStatus::Expired),
        Just(FanStatus::Left),
    ]
}

fn hold_rejected() -> impl Strategy<Value = HoldRejected> {
    prop_oneof![
        Just(HoldRejected::NotInLine),
        Just(HoldRejected::NotAdmitted),
        Just(HoldRejected::SoldOut),
        hold().prop_map(|hold| HoldRejected::AlreadyHolding { hold }),
        any::<u32>().prop_map(|s| HoldRejected::UnknownSeat { seat: SeatIdx(s) }),
        any::<u8>().prop_map(|max| HoldRejected::TicketLimit { max }),
        any::<u32>().prop_map(|max| HoldRejected::FairShare { max }),
        (seat_list(), proptest::option::of(seat_list())).prop_map(|(taken, alternative)| {
            HoldRejected::SeatsUnavailable { taken, alternative }
        }),
        Just(HoldRejected::NotEnoughSeats),
    ]
}

fn reply() -> impl Strategy<Value = Reply> {
    let error_code = proptest::sample::select(ErrorCode::ALL);
    prop_oneof![
        (position(), any::<bool>(), fan_status(), "[0-9a-f]{96}").prop_map(
            |(position, fresh, status, token)| Reply::Joined {
                joined: Joined {
                    position,
                    fresh,
                    status
                },
                token,
            }
        ),
        Just(Reply::JoinRefused {
            refused: JoinRefused::Busy
        }),
        proptest::option::of(fan_status()).prop_map(|status| Reply::Status { status }),
        (hold(), seat_list(), millis(), any::<u64>()).prop_map(
            |(hold, seats, deadline, total_cents)| Reply::HoldPlaced {
                placed: HoldPlaced {
                    hold,
                    seats,
                    deadline,
                    total_cents
                },
            }
        ),
        hold_rejected().prop_map(|rejected| Reply::HoldRejected { rejected }),
        Just(Reply::Released),
        (payment(), hold(), any::<u64>()).prop_map(|(payment, hold, amount_cents)| {
            Reply::PaymentStarted {
                started: PaymentStarted {
                    payment,
                    hold,
                    amount_cents,
                },
            }
        }),
        Just(Reply::PaymentRefused {
            refused: PaymentRefused::Late
        }),
        (hold(), proptest::option::of(millis())).prop_map(|(hold, retry_until)| {
            Reply::PaymentSettled {
                settled: PaymentSettled::Declined { hold, retry_until },
            }
        }),
        sale_state().prop_map(|state| Reply::Sale { state }),
        (error_code, "\\PC{0,40}").prop_map(|(code, message)| Reply::Error { code, message }),
        ("\\PC{0,40}", any::<u64>(), millis()).prop_map(|(node, epoch, lease_expires)| {
            Reply::NotOwner {
                owner: EventOwner {
                    node,
                    epoch,
                    lease_expires,
                },
            }
        }),
    ]
}

fn push() -> impl Strategy<Value = Push> {
    prop_oneof![
        (position(), millis()).prop_map(|(position, decided_at)| Push::AdmittedThrough {
            position,
            decided_at
        }),
        (fan(), position(), millis()).prop_map(|(fan, position, decided_at)| {
            Push::FanAdmitted {
                fan,
                position,
                decided_at,
            }
        }),
        any::<bool>().prop_map(|full| Push::Full { full }),
        Just(Push::SoldOut),
        sale_state().prop_map(|state| Push::Sale { state }),
        (any::<u16>(), seat_list(), any::<bool>()).prop_map(|(s, seats, available)| {
            Push::SeatsChanged {
                section: SectionIdx(s),
                seats,
                available,
            }
        }),
        (fan(), hold(), millis()).prop_map(|(fan, hold, deadline)| Push::HoldExpiring {
            fan,
            hold,
            deadline
        }),
        (fan(), hold()).prop_map(|(fan, hold)| Push::HoldExpired { fan, hold }),
        fan().prop_map(|fan| Push::AdmissionExpired { fan }),
        (fan(), any::<u64>(), seat_list()).prop_map(|(fan, order, seats)| Push::Purchased {
            fan,
            order: OrderId(order),
            seats
        }),
        (
            fan(),
            hold(),
            proptest::option::of(millis()),
            prop_oneof![Just(DeclineReason::Declined), Just(DeclineReason::NoAnswer)]
        )
            .prop_map(|(fan, hold, retry_until, reason)| Push::PaymentDeclined {
                fan,
                hold,
                retry_until,
                reason,
            }),
    ]
}

fn journal_entry() -> impl Strategy<Value = JournalEntry> {
    let reason = prop_oneof![
        Just(ReleaseReason::ByFan),
        Just(ReleaseReason::Expired),
        Just(ReleaseReason::Declined),
        Just(ReleaseReason::Voided),
    ];
    prop_oneof![
        sale_state().prop_map(|state| JournalEntry::Sale { state }),
        (fan(), position(), millis()).prop_map(|(fan, position, at)| JournalEntry::Admitted {
            fan,
            position,
            at
        }),
        (millis(), vec((fan(), position()), 1..40))
            .prop_map(|(at, fans)| JournalEntry::AdmittedMany { at, fans }),
        fan().prop_map(|fan| JournalEntry::Entered { fan }),
        (hold(), fan(), seat_list(), millis()).prop_map(|(hold, fan, seats, deadline)| {
            JournalEntry::HoldPlaced {
                hold,
                fan,
                seats,
                deadline,
            }
        }),
        (hold(), reason).prop_map(|(hold, reason)| JournalEntry::HoldReleased { hold, reason }),
        (hold(), payment(), millis()).prop_map(|(hold, payment, at)| {
            JournalEntry::PaymentSubmitted { hold, payment, at }
        }),
        (hold(), any::<u64>(), millis()).prop_map(|(hold, order, at)| JournalEntry::Sold {
            hold,
            order: OrderId(order),
            at
        }),
        payment().prop_map(|payment| JournalEntry::Refunded { payment }),
        fan().prop_map(|fan| JournalEntry::PreQueued { fan }),
        fan().prop_map(|fan| JournalEntry::PresaleJoined { fan }),
        any::<u8>().prop_map(|bits| JournalEntry::StampDifficulty { bits }),
        (any::<u64>(), position(), any::<u64>())
            .prop_map(|(seed, base, count)| JournalEntry::Drawn { seed, base, count }),
    ]
}

fn journal_record() -> impl Strategy<Value = JournalRecord> {
    (any::<u64>(), any::<u64>(), millis(), journal_entry()).prop_map(|(event, seq, at, entry)| {
        JournalRecord {
            schema_version: SCHEMA_VERSION,
            event: EventId(event),
            seq,
            at,
            entry,
        }
    })
}

// ---------------------------------------------------------------------------
// Fixtures and checks

fn sample_snapshot() -> EventSnapshot {
    EventSnapshot {
        schema_version: SCHEMA_VERSION,
        event: EventId(7),
        venue_digest: 0x0123_4567_89ab_cdef,
        config: EventConfig::default(),
        sale: SaleState::OnSale,
        journal_seq: 42,
        clock: Millis(1_700_000_000_000),
        counter_ceiling: Position(2_000_000),
        admitted_through: Position(120),
        waiting: 5_000,
        next_hold: HoldId(3),
        next_payment: PaymentId(2),
        next_order: OrderId(2),
        shoppers: vec![ShopperRecord {
            fan: FanId(11),
            position: Position(119),
            admitted_at: Millis(1_699_999_990_000),
            entered: true,
        }],
        holds: vec![
            HoldRecord {
                hold: HoldId(1),
                fan: FanId(9),
                seats: vec![SeatIdx(10), SeatIdx(11)],
                deadline: Millis(1_700_000_300_000),
                checkout: CheckoutRecord::Open,
            },
            HoldRecord {
                hold: HoldId(2),
                fan: FanId(10),
                seats: vec![SeatIdx(40)],
                deadline: Millis(1_700_000_100_000),
                checkout: CheckoutRecord::Paying {
                    payment: PaymentId(1),
                    submitted_at: Millis(1_699_999_999_000),
                },
            },
        ],
        orders: vec![OrderRecord {
            order: OrderId(1),
            fan: FanId(8),
            position: Position(100),
            payment: PaymentId(0),
            seats: vec![SeatIdx(1), SeatIdx(2), SeatIdx(3)],
            at: Millis(1_699_999_000_000),
        }],
        voided: vec![PaymentId(5)],
        pre_queue: vec![FanId(3), FanId(8), FanId(12)],
        draw: Some(DrawRecord {
            seed: 0xfeed_beef,
            base: Position(1),
        }),
        presale_joined: vec![FanId(8)],
        stamp_bits: 18,
    }
}

fn sample_journal_record() -> JournalRecord {
    JournalRecord {
        schema_version: SCHEMA_VERSION,
        event: EventId(7),
        seq: 43,
        at: Millis(1_700_000_000_500),
        entry: JournalEntry::HoldPlaced {
            hold: HoldId(3),
            fan: FanId(11),
            seats: vec![SeatIdx(20), SeatIdx(21)],
            deadline: Millis(1_700_000_300_500),
        },
    }
}

fn tiny_venue_json() -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "name": "Tiny Hall",
        "city": "Testville",
        "price_levels": [{ "id": "p", "name": "P", "price_cents": 100 }],
        "sections": [{
            "id": "S", "name": "S", "price_level": "p",
            "map": { "x": 0.0, "y": 0.0, "width": 1.0, "height": 1.0 },
            "rows": [
                { "id": "A", "seats": [{ "id": "1" }, { "id": "2", "accessible": true }] },
                { "id": "B", "seats": [{ "id": "1" }] }
            ]
        }]
    }))
    .unwrap()
}

fn club_json() -> Vec<u8> {
    std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/../venues/club.json")).unwrap()
}

/// A message decoded from untrusted bytes must encode back to itself.
fn message_reencodes<T>(decoded: Result<T, CodecError>) -> Result<(), TestCaseError>
where
    T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
{
    if let Ok(value) = decoded {
        let bytes = codec::encode_message(&value).unwrap();
        prop_assert_eq!(codec::decode_message::<T>(&bytes).unwrap(), value);
    }
    Ok(())
}

/// Feed bytes to every decoder: none may panic, and what they accept must
/// be consistent.
fn decode_everything(bytes: &[u8]) -> Result<(), TestCaseError> {
    if let Ok(venue) = Venue::from_json(bytes) {
        prop_assert_eq!(Venue::from_file(&venue.to_file()).unwrap(), venue);
    }
    message_reencodes(codec::decode_message::<Command>(bytes))?;
    message_reencodes(codec::decode_message::<Reply>(bytes))?;
    message_reencodes(codec::decode_message::<Push>(bytes))?;
    if let Ok(snapshot) = EventSnapshot::decode(bytes) {
        let again = EventSnapshot::decode(&snapshot.encode().unwrap()).unwrap();
        prop_assert_eq!(again, snapshot);
    }
    if let Ok(record) = JournalRecord::decode(bytes) {
        let again = JournalRecord::decode(&record.encode().unwrap()).unwrap();
        prop_assert_eq!(again, record);
    }
    // A stored spec: decoded, then its venue checked (as a node does).
    if let Ok(spec) = onsale_schema::spec::EventSpec::decode(bytes) {
        let again = onsale_schema::spec::EventSpec::decode(&spec.encode().unwrap()).unwrap();
        prop_assert_eq!(&again, &spec);
        let _ = spec.venue();
    }
    Ok(())
}

fn binary_and_json_round_trip<T>(value: &T) -> Result<(), TestCaseError>
where
    T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let bytes = codec::encode_message(value).unwrap();
    prop_assert_eq!(&codec::decode_message::<T>(&bytes).unwrap(), value);
    let json = serde_json::to_string(value).unwrap();
    prop_assert_eq!(&serde_json::from_str::<T>(&json).unwrap(), value);
    Ok(())
}

// ---------------------------------------------------------------------------
// Untrusted bytes

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in vec(any::<u8>(), 0..1024)) {
        decode_everything(&bytes)?;
        // Random bytes are never a venue or a snapshot.
        prop_assert!(Venue::from_json(&bytes).is_err());
        prop_assert!(EventSnapshot::decode(&bytes).is_err());
    }

    #[test]
    fn messages_with_an_unknown_variant_are_refused(
        variant in 32u8..251,
        rest in vec(any::<u8>(), 0..64),
    ) {
        let mut bytes = vec![variant];
        bytes.extend(rest);
        prop_assert!(matches!(codec::decode_message::<Command>(&bytes), Err(CodecError::Decode(_))));
        prop_assert!(matches!(codec::decode_message::<Reply>(&bytes), Err(CodecError::Decode(_))));
        prop_assert!(matches!(codec::decode_message::<Push>(&bytes), Err(CodecError::Decode(_))));
    }

    #[test]
    fn records_of_other_versions_are_refused_by_version(
        version in 0u32..1_000_000,
        rest in vec(any::<u8>(), 0..256),
    ) {
        prop_assume!(!(SCHEMA_VERSION_READ_MIN..=SCHEMA_VERSION).contains(&version));
        let mut bytes = codec::encode_record(&version).unwrap();
        bytes.extend(rest);
        let expected = if version > SCHEMA_VERSION {
            RecordError::FutureVersion { found: version }
        } else {
            RecordError::UnsupportedVersion { found: version }
        };
        prop_assert_eq!(EventSnapshot::decode(&bytes), Err(expected.clone()));
        prop_assert_eq!(JournalRecord::decode(&bytes), Err(expected));
    }

    #[test]
    fn damaged_snapshots_never_panic(edits in edits()) {
        let bytes = apply(&sample_snapshot().encode().unwrap(), &edits);
        decode_everything(&bytes)?;
    }

    #[test]
    fn damaged_journal_records_never_panic(record in journal_record(), edits in edits()) {
        let bytes = apply(&record.encode().unwrap(), &edits);
        decode_everything(&bytes)?;
    }

    #[test]
    fn damaged_messages_never_panic(command in command(), reply in reply(), edits in edits()) {
        decode_everything(&apply(&codec::encode_message(&command).unwrap(), &edits))?;
        decode_everything(&apply(&codec::encode_message(&reply).unwrap(), &edits))?;
    }

    #[test]
    fn damaged_small_venue_files_never_panic(edits in edits()) {
        decode_everything(&apply(&tiny_venue_json(), &edits))?;
    }

    #[test]
    fn truncated_encodings_are_refused(
        command in command(),
        reply in reply(),
        record in journal_record(),
        cut in any::<Index>(),
    ) {
        // Every strict prefix of a valid encoding is refused: the codec is
        // prefix-free, and JSON without its closing brace is not JSON.
        let bytes = codec::encode_message(&command).unwrap();
        prop_assert!(codec::decode_message::<Command>(&bytes[..cut.index(bytes.len())]).is_err());
        let bytes = codec::encode_message(&reply).unwrap();
        prop_assert!(codec::decode_message::<Reply>(&bytes[..cut.index(bytes.len())]).is_err());
        let bytes = record.encode().unwrap();
        prop_assert!(JournalRecord::decode(&bytes[..cut.index(bytes.len())]).is_err());
        let bytes = sample_snapshot().encode().unwrap();
        prop_assert!(EventSnapshot::decode(&bytes[..cut.index(bytes.len())]).is_err());
        let bytes = tiny_venue_json();
        prop_assert!(Venue::from_json(&bytes[..cut.index(bytes.len())]).is_err());
    }

    #[test]
    fn a_trailing_byte_is_refused(command in command(), push in push(), extra in any::<u8>()) {
        let mut bytes = codec::encode_message(&command).unwrap();
        bytes.push(extra);
        prop_assert_eq!(codec::decode_message::<Command>(&bytes), Err(CodecError::Trailing(1)));
        let mut bytes = codec::encode_message(&push).unwrap();
        bytes.push(extra);
        prop_assert_eq!(codec::decode_message::<Push>(&bytes), Err(CodecError::Trailing(1)));
        let mut bytes = sample_snapshot().encode().unwrap();
        bytes.push(extra);
        prop_assert_eq!(
            EventSnapshot::decode(&bytes),
            Err(RecordError::Codec(CodecError::Trailing(1)))
        );
        let mut bytes = sample_journal_record().encode().unwrap();
        bytes.push(extra);
        prop_assert_eq!(
            JournalRecord::decode(&bytes),
            Err(RecordError::Codec(CodecError::Trailing(1)))
        );
    }
}

proptest! {
    // Each case parses a 30 KB venue file.
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn damaged_club_files_never_panic(edits in edits()) {
        decode_everything(&apply(&club_json(), &edits))?;
    }
}

#[test]
fn garbage_is_refused() {
    let garbage: [&[u8]; 6] = [
        b"",
        b"\xff\xff\xff\xff\xff\xff\xff\xff",
        b"hello world",
        b"{\"cmd\":\"join\",\"fan\":7}",
        // Push::SeatsChanged claiming 2^64 - 1 seats.
        b"\x04\x00\xfd\xff\xff\xff\xff\xff\xff\xff\xff",
        // Push::Full with a bool that is neither 0 nor 1; Reply::JoinRefused
        // with an unknown reason; Command::Resume with a short token.
        b"\x01\x07\x07",
    ];
    for bytes in garbage {
        assert!(Venue::from_json(bytes).is_err(), "{bytes:?}");
        assert!(
            codec::decode_message::<Command>(bytes).is_err(),
            "{bytes:?}"
        );
        assert!(codec::decode_message::<Reply>(bytes).is_err(), "{bytes:?}");
        assert!(codec::decode_message::<Push>(bytes).is_err(), "{bytes:?}");
        assert!(EventSnapshot::decode(bytes).is_err(), "{bytes:?}");
        assert!(JournalRecord::decode(bytes).is_err(), "{bytes:?}");
    }
}

#[test]
fn oversized_input_is_refused_before_decoding() {
    let size = limits::MESSAGE_BYTES_MAX + 1;
    let bytes = vec![0; size];
    let too_large = CodecError::TooLarge {
        size,
        max: limits::MESSAGE_BYTES_MAX,
    };
    assert_eq!(
        codec::decode_message::<Command>(&bytes),
        Err(too_large.clone())
    );
    assert_eq!(
        codec::decode_message::<Reply>(&bytes),
        Err(too_large.clone())
    );
    assert_eq!(codec::decode_message::<Push>(&bytes), Err(too_large));

    // A record big enough to be refused, with a current version up front.
    let size = limits::SNAPSHOT_BYTES_MAX + 1;
    let mut bytes = vec![0; size];
    bytes[0] = SCHEMA_VERSION as u8;
    let too_large = CodecError::TooLarge {
        size,
        max: limits::SNAPSHOT_BYTES_MAX,
    };
    assert_eq!(
        EventSnapshot::decode(&bytes),
        Err(RecordError::Codec(too_large.clone()))
    );
    assert_eq!(
        JournalRecord::decode(&bytes),
        Err(RecordError::Codec(too_large))
    );
}

#[test]
fn oversized_messages_are_refused_when_encoding() {
    let push = Push::SeatsChanged {
        section: SectionIdx(0),
        seats: (0..30_000).map(|s| SeatIdx(100_000 + s)).collect(),
        available: true,
    };
    assert!(matches!(
        codec::encode_message(&push),
        Err(CodecError::TooLarge { .. })
    ));
}

// ---------------------------------------------------------------------------
// Versions and round trips of stored records

#[test]
fn snapshots_and_journal_records_round_trip() {
    let snapshot = sample_snapshot();
    assert_eq!(
        EventSnapshot::decode(&snapshot.encode().unwrap()),
        Ok(snapshot)
    );
    let record = sample_journal_record();
    assert_eq!(JournalRecord::decode(&record.encode().unwrap()), Ok(record));
}

/// A version 4 snapshot is a version 5 one without the config's
/// `pre_queue_draw`, `opens_at`, `presale_until`, `stamp_auto_bits` and
/// `stamp_auto_fill_s` and without the trailing pre-queue, draw, presale
/// fans and difficulty: it reads as an event without any of them.
#[test]
fn a_version_4_snapshot_reads_as_an_event_without_a_pre_queue() {
    let mut snapshot = sample_snapshot();
    snapshot.config = EventConfig::default();
    snapshot.pre_queue = Vec::new();
    snapshot.draw = None;
    snapshot.presale_joined = Vec::new();
    snapshot.stamp_bits = 0;
    let v5 = snapshot.encode().unwrap();
    let head = codec::encode_record(&(
        SCHEMA_VERSION,
        snapshot.event,
        snapshot.venue_digest,
        &snapshot.config,
    ))
    .unwrap();
    let mut v4 = v5;
    // Trailing: an empty pre-queue, no draw, no presale fans, no
    // difficulty; in the config: false, None, None, 0, 60.
    v4.truncate(v4.len() - 4);
    v4.drain(head.len() - 5..head.len());
    v4[0] = 4;
    snapshot.schema_version = 4;
    assert_eq!(EventSnapshot::decode(&v4), Ok(snapshot));
}

#[test]
fn a_future_snapshot_is_refused_as_future() {
    let mut snapshot = sample_snapshot();
    snapshot.schema_version = SCHEMA_VERSION + 1;
    let found = SCHEMA_VERSION + 1;
    assert_eq!(
        EventSnapshot::decode(&snapshot.encode().unwrap()),
        Err(RecordError::FutureVersion { found })
    );
    let mut record = sample_journal_record();
    record.schema_version = SCHEMA_VERSION + 1;
    assert_eq!(
        JournalRecord::decode(&record.encode().unwrap()),
        Err(RecordError::FutureVersion { found })
    );
}

proptest! {
    #[test]
    fn journal_records_round_trip(record in journal_record()) {
        prop_assert_eq!(JournalRecord::decode(&record.encode().unwrap()), Ok(record));
    }
}

// ---------------------------------------------------------------------------
// Messages: both wire forms

proptest! {
    #[test]
    fn commands_round_trip(command in command()) {
        binary_and_json_round_trip(&command)?;
    }

    #[test]
    fn replies_round_trip(reply in reply()) {
        binary_and_json_round_trip(&reply)?;
    }

    #[test]
    fn pushes_round_trip(push in push()) {
        binary_and_json_round_trip(&push)?;
    }
}

/// The JSON forms the gateway speaks, pinned: changing one breaks clients.
#[test]
fn json_wire_forms() {
    let commands = [
        (Command::Join { fan: FanId(7) }, r#"{"cmd":"join","fan":7}"#),
        (Command::Overview, r#"{"cmd":"overview"}"#),
        (
            Command::Hold {
                fan: FanId(7),
                request: HoldRequest::Best {
                    count: 2,
                    area: Area::Section {
                        section: SectionIdx(3),
                    },
                },
            },
            r#"{"cmd":"hold","fan":7,"request":{"kind":"best","count":2,"area":{"in":"section","section":3}}}"#,
        ),
        (
            Command::Hold {
                fan: FanId(7),
                request: HoldRequest::Seats {
                    seats: vec![SeatIdx(10), SeatIdx(11)],
                },
            },
            r#"{"cmd":"hold","fan":7,"request":{"kind":"seats","seats":[10,11]}}"#,
        ),
        (
            Command::ProviderAnswer {
                payment: PaymentId(4),
                answer: ProviderAnswer::Confirmed,
            },
            r#"{"cmd":"provider_answer","payment":4,"answer":"confirmed"}"#,
        ),
    ];
    for (command, json) in commands {
        assert_eq!(serde_json::to_string(&command).unwrap(), json);
        assert_eq!(serde_json::from_str::<Command>(json).unwrap(), command);
    }

    let replies = [
        (
            Reply::Joined {
                joined: Joined {
                    position: Position(12),
                    fresh: true,
                    status: FanStatus::Waiting {
                        position: Position(12),
                        ahead: 11,
                    },
                },
                token: "ab12".into(),
            },
            r#"{"reply":"joined","joined":{"position":12,"fresh":true,"status":{"status":"waiting","position":12,"ahead":11}},"token":"ab12"}"#,
        ),
        (Reply::Released, r#"{"reply":"released"}"#),
        (
            Reply::JoinRefused {
                refused: JoinRefused::Full,
            },
            r#"{"reply":"join_refused","refused":"full"}"#,
        ),
        (
            Reply::HoldRejected {
                rejected: HoldRejected::SeatsUnavailable {
                    taken: vec![SeatIdx(5)],
                    alternative: Some(vec![SeatIdx(7), SeatIdx(8)]),
                },
            },
            r#"{"reply":"hold_rejected","rejected":{"reason":"seats_unavailable","taken":[5],"alternative":[7,8]}}"#,
        ),
        (
            Reply::Error {
                code: ErrorCode::SoldOut,
                message: "Every ticket is sold.".into(),
            },
            r#"{"reply":"error","code":"sold_out","message":"Every ticket is sold."}"#,
        ),
        (
            Reply::NotOwner {
                owner: EventOwner {
                    node: "node@127.0.0.1:7071".into(),
                    epoch: 3,
                    lease_expires: Millis(1_796_000_000_000),
                },
            },
            r#"{"reply":"not_owner","owner":{"node":"node@127.0.0.1:7071","epoch":3,"lease_expires":1796000000000}}"#,
        ),
    ];
    for (reply, json) in replies {
        assert_eq!(serde_json::to_string(&reply).unwrap(), json);
        assert_eq!(serde_json::from_str::<Reply>(json).unwrap(), reply);
    }

    assert_eq!(
        serde_json::to_string(&Push::SoldOut).unwrap(),
        r#"{"push":"sold_out"}"#
    );
}

/// Larger replies in both forms, field by field.
#[test]
fn overview_and_section_seats_round_trip() {
    let overview = Reply::Overview {
        overview: EventOverview {
            event: EventId(1),
            sale: SaleState::OnSale,
            capacity: 508,
            sold: 10,
            held: 4,
            waiting: 1_000,
            full: false,
            admitted_through: Position(250),
            stamp_bits: 20,
            sections: vec![SectionSummary {
                section: SectionIdx(0),
                seats: 336,
                available: 322,
                price_min_cents: 4_500,
                price_max_cents: 6_500,
            }],
        },
    };
    let seats = Reply::SectionSeats {
        seats: SectionSeats {
            section: SectionIdx(1),
            first_seat: SeatIdx(336),
            seat_count: 16,
            available: vec![0xff, 0x0f],
        },
    };
    for reply in [overview, seats] {
        let bytes = codec::encode_message(&reply).unwrap();
        assert_eq!(codec::decode_message::<Reply>(&bytes).unwrap(), reply);
        let json = serde_json::to_string(&reply).unwrap();
        assert_eq!(serde_json::from_str::<Reply>(&json).unwrap(), reply);
    }
}

#[test]
fn error_codes_are_snake_case_ascii() {
    for code in ErrorCode::ALL {
        let text = code.as_str();
        assert!(!text.is_empty());
        assert!(
            text.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
            "{text:?}"
        );
        assert!(
            !text.starts_with('_') && !text.ends_with('_') && !text.contains("__"),
            "{text:?}"
        );
        assert_eq!(serde_json::to_string(code).unwrap(), format!("\"{text}\""));
        assert!(!code.description().is_empty());
    }
}
