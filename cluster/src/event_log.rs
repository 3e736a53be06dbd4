//! The event actor's durable log, over a store and the event's lease.

use std::sync::Arc;

use onsale_actors::journal::{EventLog, LogError};
use onsale_schema::Position;
use onsale_schema::snapshot::{EventSnapshot, JournalRecord};

use crate::store::{EventLease, JournalBytes, Store, StoreError};

/// Every write names the lease, so the store refuses it once another
/// owner has taken the event.
pub struct StoreLog {
    store: Arc<dyn Store>,
    lease: EventLease,
}

impl std::fmt::Debug for StoreLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreLog")
            .field("lease", &self.lease)
            .finish_non_exhaustive()
    }
}

impl StoreLog {
    #[must_use]
    pub fn new(store: Arc<dyn Store>, lease: EventLease) -> StoreLog {
        StoreLog { store, lease }
    }
}

fn log_error(e: StoreError) -> LogError {
    match e {
        StoreError::Fenced { .. } => LogError::Fenced,
        other => LogError::Failed(other.to_string()),
    }
}

impl EventLog for StoreLog {
    fn append(&mut self, records: &[JournalRecord]) -> Result<(), LogError> {
        let encoded = records
            .iter()
            .map(|r| {
                r.encode()
                    .map(|bytes| JournalBytes { seq: r.seq, bytes })
                    .map_err(|e| LogError::Failed(e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        self.store
            .append_journal(&self.lease, &encoded)
            .map_err(log_error)
    }

    fn snapshot(&mut self, snapshot: &EventSnapshot) -> Result<(), LogError> {
        let bytes = snapshot
            .encode()
            .map_err(|e| LogError::Failed(e.to_string()))?;
        self.store
            .put_snapshot(&self.lease, snapshot.journal_seq, &bytes)
            .map_err(log_error)
    }

    fn reserve_counter(&mut self, ceiling: Position) -> Result<Position, LogError> {
        self.store
            .reserve_counter(&self.lease, ceiling.0)
            .map(Position)
            .map_err(log_error)
    }
}
