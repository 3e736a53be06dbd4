//! Group commit: the thread that makes an event's journal durable.
//!
//! The event actor never waits on the store. It hands each batch of
//! journal records (and counter reservations, and snapshots) to this
//! writer through a channel and keeps serving; the writer takes everything
//! queued while its previous commit ran and commits it as one transaction,
//! then reports the highest durable sequence back. Under load, batches grow
//! by themselves, so throughput does not pay one fsync per sale; when idle,
//! a batch is a single record and latency is one commit.
//!
//! **Capacity.** The channel is unbounded, but the event actor bounds what
//! it sends: it answers `busy` while more than `JOURNAL_PENDING_MAX`
//! records are not yet durable (see `event_actor`). A batch holds at most
//! `BATCH_RECORDS_MAX` records.
//!
//! **Failure.** A failed write is retried with backoff for a bounded time;
//! after that, or at once when fenced, the writer reports the failure and
//! stops. The event actor then stops too, without acknowledging anything
//! that was not stored.

use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use onsale_schema::Position;
use onsale_schema::snapshot::{EventSnapshot, JournalRecord};

/// Records per commit, at most. Bounds a transaction's size (FoundationDB
/// allows 10 MB; a record is ~50 bytes).
pub const BATCH_RECORDS_MAX: usize = 4_096;

/// How long a failing store is retried before the event gives up.
pub const RETRY_FOR: Duration = Duration::from_secs(5);

/// Where an event's durable state goes. Implemented by the cluster over a
/// store and the event's lease: every call is fenced by the lease's epoch.
pub trait EventLog: Send + 'static {
    /// Commit these records (consecutive, ascending) as one transaction.
    fn append(&mut self, records: &[JournalRecord]) -> Result<(), LogError>;
    /// Store a snapshot and drop the journal it includes.
    fn snapshot(&mut self, snapshot: &EventSnapshot) -> Result<(), LogError>;
    /// Make positions below `ceiling` durable; returns the stored ceiling.
    fn reserve_counter(&mut self, ceiling: Position) -> Result<Position, LogError>;
}

/// Why a write did not land.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LogError {
    /// Another owner took the event: stop at once, never retry.
    #[error("fenced: another node owns this event now")]
    Fenced,
    /// The store failed or timed out; the write may be retried.
    #[error("store write failed: {0}")]
    Failed(String),
}

/// Work for the writer, in the order the event produced it.
#[derive(Debug)]
pub enum WriteOp {
    Journal(Vec<JournalRecord>),
    Snapshot(Box<EventSnapshot>),
    Counter(Position),
}

/// What the writer reports back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WriteDone {
    /// Every record up to `seq` is durable.
    Durable { seq: u64 },
    /// The counter ceiling is durable.
    Counter { ceiling: Position },
    /// The snapshot at `seq` is stored.
    Snapshot { seq: u64 },
    /// The writer stopped: nothing after the last report is durable.
    Stopped { error: LogError },
}

/// The sending side of a writer thread.
#[derive(Debug)]
pub struct Writer {
    tx: mpsc::Sender<WriteOp>,
}

impl Writer {
    /// Start a writer thread over `log`, reporting through `report`.
    pub fn spawn(
        name: String,
        log: Box<dyn EventLog>,
        report: impl Fn(WriteDone) + Send + 'static,
    ) -> std::io::Result<Writer> {
        let (tx, rx) = mpsc::channel();
        thread::Builder::new().name(name).spawn(move || {
            // A panic in the store must still stop the event, or its
            // gated replies would wait forever.
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                run(log, &rx, &report);
            }));
            if result.is_err() {
                report(WriteDone::Stopped {
                    error: LogError::Failed("the journal writer panicked".into()),
                });
            }
        })?;
        Ok(Writer { tx })
    }

    /// Queue work. Fails only once the writer has stopped.
    pub fn send(&self, op: WriteOp) -> Result<(), WriteOp> {
        self.tx.send(op).map_err(|e| e.0)
    }
}

fn run(mut log: Box<dyn EventLog>, rx: &mpsc::Receiver<WriteOp>, report: &dyn Fn(WriteDone)) {
    let mut next: Option<WriteOp> = None;
    loop {
        let op = match next.take() {
            Some(op) => op,
            None => match rx.recv() {
                Ok(op) => op,
                Err(_) => return, // the event stopped
            },
        };
        let result = match op {
            WriteOp::Journal(mut records) => {
                // Group commit: take every journal batch already queued.
                while records.len() < BATCH_RECORDS_MAX {
                    match rx.try_recv() {
                        Ok(WriteOp::Journal(more)) => records.extend(more),
                        Ok(other) => {
                            next = Some(other);
                            break;
                        }
                        Err(_) => break,
                    }
                }
                let seq = records.last().map_or(0, |r| r.seq);
                retry(|| log.append(&records)).map(|()| WriteDone::Durable { seq })
            }
            WriteOp::Snapshot(snapshot) => {
                let seq = snapshot.journal_seq;
                retry(|| log.snapshot(&snapshot)).map(|()| WriteDone::Snapshot { seq })
            }
            WriteOp::Counter(ceiling) => {
                retry(|| log.reserve_counter(ceiling)).map(|ceiling| WriteDone::Counter { ceiling })
            }
        };
        match result {
            Ok(done) => report(done),
            Err(error) => {
                report(WriteDone::Stopped { error });
                return;
            }
        }
    }
}

/// Retry a failed write with backoff for up to `RETRY_FOR`; never a fenced one.
fn retry<T>(mut write: impl FnMut() -> Result<T, LogError>) -> Result<T, LogError> {
    let started = Instant::now();
    let mut backoff = Duration::from_millis(5);
    loop {
        match write() {
            Ok(value) => return Ok(value),
            Err(LogError::Fenced) => return Err(LogError::Fenced),
            Err(error) if started.elapsed() >= RETRY_FOR => return Err(error),
            Err(error) => {
                tracing::warn!(%error, ?backoff, "store write failed; retrying");
                thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_millis(500));
            }
        }
    }
}
