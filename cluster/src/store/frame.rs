//! The frame every stored value is sealed in: the one home of the checksum
//! both backends write and verify, so that nothing is decoded before it is
//! proven to be the bytes that were written, at the key they were written
//! under.
//!
//! **Layout** (frame version 1):
//!
//! | bytes | what |
//! | --- | --- |
//! | 0 | [`MAGIC`] `0xFF` |
//! | 1 | [`FRAME_VERSION`] `1` |
//! | 2..10 | the first 8 bytes of BLAKE3 over the [`Sealed`] kind, the event, the seq and the payload |
//! | 10.. | the payload (a bincode snapshot, journal record or spec; a counter's `u64` little-endian) |
//!
//! The event and seq are not stored in the frame: the reader supplies them
//! from the key it read, so a value moved to another key (another event,
//! another seq, a flipped bit in a key column) fails like a damaged one.
//!
//! **Why `0xFF`.** Values written before frames (snapshots and journal
//! records start with a bincode varint schema version, specs with a varint
//! event id) never start with `0xFF`: bincode's varint prefixes stop at
//! `0xFE`. So an unframed value is told apart without guessing
//! ([`is_framed`]): FoundationDB, which has no migration pass, reads one
//! unverified; the embedded store seals every old value once when it
//! migrates, and then refuses any value that is not a frame.
//!
//! **Why BLAKE3, 64 bits.** Already in the workspace, and ~1 µs for a
//! 1 kB journal batch of records, ~0.2 ms for a 400 kB snapshot (see the
//! durable bench). 64 bits make an undetected random corruption a 2^-64
//! event; this is a checksum against damage, not a MAC against an
//! adversary who can write the store.

use std::fmt;

use onsale_schema::EventId;

/// First byte of every frame.
pub const MAGIC: u8 = 0xFF;
/// The frame layout this build writes and reads.
pub const FRAME_VERSION: u8 = 1;
/// Bytes before the payload.
pub const HEADER_BYTES: usize = 10;
const CHECKSUM_BYTES: usize = 8;

/// What a sealed value is (bound into its checksum, so a snapshot cannot
/// pass for a journal record).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Sealed {
    Snapshot,
    JournalRecord,
    Spec,
    Counter,
}

impl Sealed {
    /// A label for logs and the `kind` of `onsale_store_corrupt_total`.
    #[must_use]
    pub fn label(self) -> &'static str {
        match self {
            Sealed::Snapshot => "snapshot",
            Sealed::JournalRecord => "journal",
            Sealed::Spec => "spec",
            Sealed::Counter => "counter",
        }
    }

    fn domain(self) -> u8 {
        match self {
            Sealed::Snapshot => 1,
            Sealed::JournalRecord => 2,
            Sealed::Spec => 3,
            Sealed::Counter => 4,
        }
    }
}

impl fmt::Display for Sealed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Sealed::Snapshot => "snapshot",
            Sealed::JournalRecord => "journal record",
            Sealed::Spec => "event spec",
            Sealed::Counter => "counter ceiling",
        })
    }
}

/// Why a stored value failed its frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("checksum mismatch")]
    Checksum,
    #[error("not a frame (shorter than its header, or no frame magic)")]
    NotFramed,
    #[error("frame version {0}, newer than this build reads ({FRAME_VERSION})")]
    FutureVersion(u8),
}

fn checksum(kind: Sealed, event: EventId, seq: u64, payload: &[u8]) -> [u8; CHECKSUM_BYTES] {
    let mut hasher = blake3::Hasher::new();
    hasher.update(&[FRAME_VERSION, kind.domain()]);
    hasher.update(&event.0.to_le_bytes());
    hasher.update(&seq.to_le_bytes());
    hasher.update(payload);
    let hash = hasher.finalize();
    let mut out = [0; CHECKSUM_BYTES];
    out.copy_from_slice(&hash.as_bytes()[..CHECKSUM_BYTES]);
    out
}

/// Seal `payload`, stored under (`event`, `seq`) as a `kind`. Values
/// without a seq (specs, counters) pass 0.
#[must_use]
pub fn seal(kind: Sealed, event: EventId, seq: u64, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_BYTES + payload.len());
    seal_into(&mut out, kind, event, seq, payload);
    out
}

/// [`seal`] into `out` (cleared first), to reuse one buffer for many.
pub fn seal_into(out: &mut Vec<u8>, kind: Sealed, event: EventId, seq: u64, payload: &[u8]) {
    out.clear();
    out.reserve(HEADER_BYTES + payload.len());
    out.push(MAGIC);
    out.push(FRAME_VERSION);
    out.extend_from_slice(&checksum(kind, event, seq, payload));
    out.extend_from_slice(payload);
}

/// [`open`] a frame read into its own buffer, returning the buffer with
/// the header removed (no copy of the payload into a new allocation).
pub fn open_owned(
    kind: Sealed,
    event: EventId,
    seq: u64,
    mut stored: Vec<u8>,
) -> Result<Vec<u8>, FrameError> {
    open(kind, event, seq, &stored)?;
    stored.drain(..HEADER_BYTES);
    Ok(stored)
}

/// The payload of a frame read under (`event`, `seq`), once its checksum
/// proves it is what was sealed there.
pub fn open(kind: Sealed, event: EventId, seq: u64, stored: &[u8]) -> Result<&[u8], FrameError> {
    if stored.len() < HEADER_BYTES || stored[0] != MAGIC {
        return Err(FrameError::NotFramed);
    }
    if stored[1] != FRAME_VERSION {
        return Err(FrameError::FutureVersion(stored[1]));
    }
    let payload = &stored[HEADER_BYTES..];
    if stored[2..HEADER_BYTES] != checksum(kind, event, seq, payload) {
        return Err(FrameError::Checksum);
    }
    Ok(payload)
}

/// Whether `stored` is a frame at all (rather than a value written before
/// frames): it starts with [`MAGIC`]. Only a backend without a migration
/// pass asks (see the module docs).
#[must_use]
pub fn is_framed(stored: &[u8]) -> bool {
    stored.first() == Some(&MAGIC)
}

/// A counter ceiling, sealed.
#[must_use]
pub fn seal_counter(event: EventId, ceiling: u64) -> Vec<u8> {
    seal(Sealed::Counter, event, 0, &ceiling.to_le_bytes())
}

/// A sealed counter ceiling, verified.
pub fn open_counter(event: EventId, stored: &[u8]) -> Result<u64, FrameError> {
    let payload = open(Sealed::Counter, event, 0, stored)?;
    let bytes: [u8; 8] = payload.try_into().map_err(|_| FrameError::Checksum)?;
    Ok(u64::from_le_bytes(bytes))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const E: EventId = EventId(7);

    #[test]
    fn a_sealed_value_opens_to_its_payload() {
        let sealed = seal(Sealed::JournalRecord, E, 12, b"payload");
        assert_eq!(sealed.len(), HEADER_BYTES + 7);
        assert_eq!(
            open(Sealed::JournalRecord, E, 12, &sealed),
            Ok(&b"payload"[..])
        );
        assert_eq!(open_counter(E, &seal_counter(E, 99)), Ok(99));
    }

    #[test]
    fn a_value_under_another_key_or_kind_fails_its_checksum() {
        let sealed = seal(Sealed::JournalRecord, E, 12, b"payload");
        let fails = |kind, event, seq| open(kind, event, seq, &sealed) == Err(FrameError::Checksum);
        assert!(fails(Sealed::JournalRecord, E, 13));
        assert!(fails(Sealed::JournalRecord, EventId(8), 12));
        assert!(fails(Sealed::Snapshot, E, 12));
    }

    #[test]
    fn unframed_values_open_only_as_legacy() {
        let old = [4_u8, 7, 1, 2, 3];
        assert_eq!(
            open(Sealed::Snapshot, E, 1, &old),
            Err(FrameError::NotFramed)
        );
        assert_eq!(
            open(Sealed::Snapshot, E, 1, &[]),
            Err(FrameError::NotFramed)
        );
        assert!(!is_framed(&old));
        assert!(is_framed(&seal(Sealed::Snapshot, E, 1, &old)));
        let mut future = seal(Sealed::Spec, E, 0, b"x");
        future[1] = FRAME_VERSION + 1;
        assert_eq!(
            open(Sealed::Spec, E, 0, &future),
            Err(FrameError::FutureVersion(FRAME_VERSION + 1))
        );
    }

    proptest! {
        /// Every single-bit flip anywhere in a frame is refused.
        #[test]
        fn every_bit_flip_is_refused(
            payload in proptest::collection::vec(any::<u8>(), 0..256),
            seq in any::<u64>(),
            bit in any::<proptest::sample::Index>(),
        ) {
            let mut sealed = seal(Sealed::JournalRecord, E, seq, &payload);
            let bit = bit.index(sealed.len() * 8);
            sealed[bit / 8] ^= 1 << (bit % 8);
            prop_assert!(open(Sealed::JournalRecord, E, seq, &sealed).is_err());
        }

        /// Arbitrary bytes never panic the reader, and what opens was sealed.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(payload) = open(Sealed::Spec, E, 0, &bytes) {
                prop_assert_eq!(seal(Sealed::Spec, E, 0, payload), bytes.clone());
            }
            let _ = open_counter(E, &bytes);
            let _ = open_owned(Sealed::Snapshot, E, 3, bytes.clone());
        }
    }
}
