//! Rebuilding an event's core from what the store holds: its spec, its
//! snapshot (if it was ever snapshotted), and the journal after it.
//! Nothing stored is believed unchecked: every step that can refuse names
//! what it refused ([`RestoreError`]).

use std::sync::Arc;

use onsale_actors::EventCore;
use onsale_schema::config::ConfigError;
use onsale_schema::snapshot::{EventSnapshot, JournalRecord, RecordError};
use onsale_schema::spec::{EventSpec, SpecError};
use onsale_schema::{Millis, Position};

use crate::store::StoredEvent;

/// Why an event's stored state could not be rebuilt. Every one needs an
/// operator: retrying reads the same bytes again.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error("the stored spec does not decode: {0}")]
    SpecDecode(#[source] SpecError),
    #[error("the stored spec is refused: {0}")]
    Spec(#[source] SpecError),
    #[error("the event cannot start from its spec: {0}")]
    Initial(#[source] ConfigError),
    #[error("the snapshot through journal record {seq} does not decode: {source}")]
    SnapshotDecode { seq: u64, source: RecordError },
    #[error("the snapshot through journal record {seq} is refused: {source}")]
    Snapshot {
        seq: u64,
        source: onsale_actors::RestoreError,
    },
    #[error("journal record {seq} does not decode: {source}")]
    JournalDecode { seq: u64, source: RecordError },
    #[error("the journal record stored at {stored} says it is record {found}")]
    JournalMisfiled { stored: u64, found: u64 },
    #[error("journal record {found} follows record {last}: records are missing or repeated")]
    JournalGap { last: u64, found: u64 },
    #[error("journal record {seq} is refused: {source}")]
    JournalEntry {
        seq: u64,
        source: onsale_actors::RestoreError,
    },
    #[error("the restored event breaks an invariant: {0}")]
    Invariant(String),
}

/// Rebuild an event's core from its stored `spec` bytes and state. `now`
/// (wall clock) starts the clock of an event never snapshotted.
pub fn restore(spec: &[u8], stored: &StoredEvent, now: Millis) -> Result<EventCore, RestoreError> {
    let spec = EventSpec::decode(spec).map_err(RestoreError::SpecDecode)?;
    let venue = Arc::new(spec.venue().map_err(RestoreError::Spec)?);
    let (snapshot, seq) = match &stored.snapshot {
        Some((seq, bytes)) => {
            let snapshot = EventSnapshot::decode(bytes)
                .map_err(|source| RestoreError::SnapshotDecode { seq: *seq, source })?;
            (snapshot, *seq)
        }
        // Never snapshotted: start from the event's initial state.
        None => {
            let core = EventCore::new(spec.event, Arc::clone(&venue), spec.config.clone(), now)
                .map_err(RestoreError::Initial)?;
            (core.snapshot(), 0)
        }
    };
    let mut core = EventCore::restore(venue, &snapshot, Position(stored.counter_ceiling))
        .map_err(|source| RestoreError::Snapshot { seq, source })?;
    for record in &stored.journal {
        let decoded =
            JournalRecord::decode(&record.bytes).map_err(|source| RestoreError::JournalDecode {
                seq: record.seq,
                source,
            })?;
        if decoded.seq != record.seq {
            return Err(RestoreError::JournalMisfiled {
                stored: record.seq,
                found: decoded.seq,
            });
        }
        core.replay(&decoded).map_err(|source| match source {
            onsale_actors::RestoreError::JournalGap { last, found } => {
                RestoreError::JournalGap { last, found }
            }
            source => RestoreError::JournalEntry {
                seq: record.seq,
                source,
            },
        })?;
    }
    // The snapshot was checked as it was restored; the journal's entries
    // one by one as they were applied. This checks what they made together.
    if !stored.journal.is_empty() {
        core.check_invariants().map_err(RestoreError::Invariant)?;
    }
    Ok(core)
}

#[cfg(test)]
mod tests {
    use onsale_schema::snapshot::{JournalEntry, SCHEMA_VERSION};
    use onsale_schema::{EventConfig, EventId, FanId, SaleState};

    use super::*;
    use crate::store::JournalBytes;

    const EVENT: EventId = EventId(3);

    fn spec() -> Vec<u8> {
        EventSpec {
            event: EVENT,
            name: "Restore test".into(),
            city: "Bristol".into(),
            starts_at: Millis(0),
            venue_json: include_str!("../../../venues/club.json").into(),
            config: EventConfig::default(),
        }
        .encode()
        .expect("encodes")
    }

    fn record(seq: u64, entry: JournalEntry) -> JournalBytes {
        let record = JournalRecord {
            schema_version: SCHEMA_VERSION,
            event: EVENT,
            seq,
            at: Millis(1_000),
            entry,
        };
        JournalBytes {
            seq,
            bytes: record.encode().expect("encodes"),
        }
    }

    fn open() -> JournalEntry {
        JournalEntry::Sale {
            state: SaleState::OnSale,
        }
    }

    fn journal(records: Vec<JournalBytes>) -> StoredEvent {
        StoredEvent {
            journal: records,
            ..StoredEvent::default()
        }
    }

    #[test]
    fn an_event_never_snapshotted_restores_from_its_spec_and_journal() {
        let core =
            restore(&spec(), &journal(vec![record(1, open())]), Millis(0)).expect("restores");
        assert_eq!(core.journal_seq(), 1);
    }

    #[test]
    fn a_spec_that_does_not_decode_is_named() {
        let refused = restore(b"not a spec", &StoredEvent::default(), Millis(0));
        assert!(
            matches!(refused, Err(RestoreError::SpecDecode(_))),
            "{refused:?}"
        );
    }

    #[test]
    fn a_snapshot_that_does_not_decode_is_named_with_its_seq() {
        let stored = StoredEvent {
            snapshot: Some((4, b"\xff garbage".to_vec())),
            ..StoredEvent::default()
        };
        let refused = restore(&spec(), &stored, Millis(0));
        assert!(
            matches!(refused, Err(RestoreError::SnapshotDecode { seq: 4, .. })),
            "{refused:?}"
        );
    }

    #[test]
    fn a_missing_journal_record_is_a_gap() {
        let stored = journal(vec![record(1, open()), record(3, open())]);
        let refused = restore(&spec(), &stored, Millis(0));
        assert!(
            matches!(refused, Err(RestoreError::JournalGap { last: 1, found: 3 })),
            "{refused:?}"
        );
    }

    #[test]
    fn a_record_stored_under_another_seq_is_misfiled() {
        let mut misfiled = record(2, open());
        misfiled.seq = 1;
        let refused = restore(&spec(), &journal(vec![misfiled]), Millis(0));
        assert!(
            matches!(
                refused,
                Err(RestoreError::JournalMisfiled {
                    stored: 1,
                    found: 2
                })
            ),
            "{refused:?}"
        );
    }

    #[test]
    fn an_impossible_entry_is_refused_with_its_seq() {
        // A fan who never joined "showed up".
        let entered = JournalEntry::Entered { fan: FanId(9) };
        let refused = restore(&spec(), &journal(vec![record(1, entered)]), Millis(0));
        assert!(
            matches!(refused, Err(RestoreError::JournalEntry { seq: 1, .. })),
            "{refused:?}"
        );
    }

    #[test]
    fn undecodable_journal_bytes_are_named_with_their_seq() {
        let garbage = JournalBytes {
            seq: 1,
            bytes: b"\x01\x02 garbage".to_vec(),
        };
        let refused = restore(&spec(), &journal(vec![garbage]), Millis(0));
        assert!(
            matches!(refused, Err(RestoreError::JournalDecode { seq: 1, .. })),
            "{refused:?}"
        );
    }
}
