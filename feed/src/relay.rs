//! The relay: trails every event's durable journal in the store and
//! publishes what matters to a [`Sink`].
//!
//! - **Sales never wait on it.** It reads what the event actors already
//!   made durable; it writes nothing an event reads.
//! - **Its place is durable.** Per event, a [`FeedCursor`] in the store
//!   says which records were published; the store keeps every record the
//!   feed has not read (feed retention, switched on before the relay reads
//!   anything), so a relay, node or broker that crashed resumes exactly
//!   where it stopped.
//! - **Exactly once as the consumer sees it.** Messages have deterministic
//!   ids, the broker drops repeats, and at start the relay asks the broker
//!   for its last message: a relay killed between the broker's ack and its
//!   cursor write does not publish those messages again even after the
//!   broker's duplicate window.
//! - **Bounded.** It reads [`RelayConfig::batch`] records at a time; while
//!   the broker is down it retries with backoff (up to 5 s apart) and keeps
//!   nothing but its cursor; the store keeps at most
//!   `FEED_RETAIN_RECORDS` unread records per event.
//!
//! Metrics: `onsale_feed_lag_seconds{event}` (age of the oldest record not
//! yet published; 0 when caught up), `onsale_feed_published_seq{event}`,
//! `onsale_feed_messages_total`, `onsale_feed_errors_total{kind}`,
//! `onsale_feed_up` (1 while publishing works).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use onsale_cluster::store::{FeedCursor, JournalBytes, Store, StoreError};
use onsale_schema::snapshot::{EventSnapshot, JournalRecord};
use onsale_schema::spec::EventSpec;
use onsale_schema::venue::Venue;
use onsale_schema::{EventId, Millis};
use tokio::sync::watch;

use crate::message::{EventFeed, FeedMessage, parse_message_id};
use crate::sink::{Sink, SinkError};

/// How the relay paces itself.
#[derive(Clone, Debug)]
pub struct RelayConfig {
    /// Subjects are `<prefix>.<event>.<kind>`.
    pub prefix: String,
    /// Records read (and at most messages published) at once per event;
    /// at most [`BATCH_MAX`].
    pub batch: usize,
    /// Pause when every event is caught up.
    pub idle: Duration,
    /// How often the list of events is read again.
    pub events_every: Duration,
}

impl Default for RelayConfig {
    fn default() -> RelayConfig {
        RelayConfig {
            prefix: crate::message::DEFAULT_PREFIX.to_owned(),
            batch: 4_096,
            idle: Duration::from_millis(20),
            events_every: Duration::from_secs(1),
        }
    }
}

/// Why the relay stopped (it stops only when told to, or on these).
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("the store failed: {0}")]
    Store(#[from] StoreError),
}

/// The largest batch: below async-nats' 5,000 acks in flight (a batch
/// published with every message acknowledged holds one permit each; a gap
/// message may come on top).
pub const BATCH_MAX: usize = 4_096;

const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Which events this relay publishes.
pub type EventFilter = Arc<dyn Fn(EventId) -> bool + Send + Sync>;

/// One event's place in the feed.
struct Lane {
    venue: Arc<Venue>,
    /// What the feed knows at `published`; `None`: rebuild from the store.
    feed: Option<EventFeed>,
    published: u64,
    /// The broker holds this event's messages through this seq (learnt at
    /// start): records up to it are read without publishing.
    stored_through: u64,
    /// Store errors in a row, and the event's rest after the last.
    failures: u32,
    resting_until: Option<Instant>,
}

/// The relay (see the module docs).
pub struct Relay<S: Sink> {
    store: Arc<dyn Store>,
    sink: S,
    config: RelayConfig,
    filter: Option<EventFilter>,
    lanes: BTreeMap<EventId, Lane>,
    /// The broker's last message was read at start.
    synced: bool,
    last_error: Option<(String, Instant)>,
    /// The cursor being saved, of the event last published.
    cursor_write: Option<(EventId, tokio::task::JoinHandle<Result<(), StoreError>>)>,
}

impl<S: Sink> std::fmt::Debug for Relay<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay")
            .field("config", &self.config)
            .field("events", &self.lanes.len())
            .finish_non_exhaustive()
    }
}

/// Run a store call on a blocking thread.
async fn blocking<T: Send + 'static>(
    store: &Arc<dyn Store>,
    call: impl FnOnce(&dyn Store) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    let store = Arc::clone(store);
    tokio::task::spawn_blocking(move || call(&*store))
        .await
        .unwrap_or_else(|e| Err(StoreError::Unavailable(format!("store call panicked: {e}"))))
}

fn decode(event: EventId, bytes: &JournalBytes) -> Result<JournalRecord, StoreError> {
    JournalRecord::decode(&bytes.bytes).map_err(|e| {
        StoreError::Corrupt(format!(
            "{event}: journal seq {} does not decode: {e}",
            bytes.seq
        ))
    })
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl<S: Sink> Relay<S> {
    #[must_use]
    pub fn new(store: Arc<dyn Store>, sink: S, mut config: RelayConfig) -> Relay<S> {
        config.batch = config.batch.clamp(1, BATCH_MAX);
        Relay {
            store,
            sink,
            config,
            filter: None,
            lanes: BTreeMap::new(),
            synced: false,
            last_error: None,
            cursor_write: None,
        }
    }

    /// Publish only the events `filter` accepts.
    #[must_use]
    pub fn with_filter(mut self, filter: EventFilter) -> Relay<S> {
        self.filter = Some(filter);
        self
    }

    /// Run until `stop` turns true. Broker and store errors are retried
    /// forever (a store error rests only the event it concerns); only a
    /// store that refuses to keep records for the feed at start ends it.
    pub async fn run(mut self, mut stop: watch::Receiver<bool>) -> Result<(), RelayError> {
        self.retry_store(|store| store.set_feed_retention(true), &mut stop)
            .await?;
        tracing::info!(config = ?self.config, "change feed relay started");
        let mut backoff = BACKOFF_MIN;
        let mut listed: Option<Instant> = None;
        while !*stop.borrow() {
            if listed.is_none_or(|at| at.elapsed() >= self.config.events_every) {
                match self.list_events().await {
                    Ok(()) => listed = Some(Instant::now()),
                    Err(e) => self.report("store", &e.to_string()),
                }
            }
            match self.round().await {
                Ok(busy) => {
                    backoff = BACKOFF_MIN;
                    metrics::gauge!("onsale_feed_up").set(1.0);
                    if !busy {
                        pause(self.config.idle, &mut stop).await;
                    }
                }
                Err(e) => {
                    metrics::gauge!("onsale_feed_up").set(0.0);
                    self.report(e.kind(), &e.to_string());
                    if matches!(e, RelayFault::Sink(_)) {
                        // Before publishing again, learn from the stream's
                        // last message how much of the failed batch it
                        // holds (a chained prefix): that is not published
                        // again, however long the broker's duplicate
                        // window.
                        self.synced = false;
                    }
                    pause(backoff, &mut stop).await;
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
            }
        }
        if let Err(e) = self.cursor_saved().await {
            tracing::warn!(error = %e, "change feed: stopped with a cursor not saved");
        }
        tracing::info!("change feed relay stopped");
        Ok(())
    }

    async fn retry_store(
        &self,
        call: impl Fn(&dyn Store) -> Result<(), StoreError> + Send + Sync + Clone + 'static,
        stop: &mut watch::Receiver<bool>,
    ) -> Result<(), RelayError> {
        loop {
            match blocking(&self.store, call.clone()).await {
                Ok(()) => return Ok(()),
                Err(StoreError::Unavailable(e)) if !*stop.borrow() => {
                    tracing::warn!(error = %e, "change feed: store unavailable, retrying");
                    pause(BACKOFF_MAX, stop).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Log an error when it changes, else at most every 10 s; count it.
    fn report(&mut self, kind: &str, error: &str) {
        let kind = match kind {
            "store" => "store",
            "unreachable" => "unreachable",
            "no_stream" => "no_stream",
            "refused" => "refused",
            "interleaved" => "interleaved",
            _ => "other",
        };
        metrics::counter!("onsale_feed_errors_total", "kind" => kind).increment(1);
        let repeat = self
            .last_error
            .as_ref()
            .is_some_and(|(last, at)| last == error && at.elapsed() < Duration::from_secs(10));
        if !repeat {
            tracing::warn!(error, "change feed: publishing paused, retrying");
            self.last_error = Some((error.to_owned(), Instant::now()));
        }
    }

    async fn list_events(&mut self) -> Result<(), StoreError> {
        let specs = blocking(&self.store, |store| store.event_specs()).await?;
        for (event, spec) in specs {
            if self.lanes.contains_key(&event) || self.filter.as_ref().is_some_and(|f| !f(event)) {
                continue;
            }
            let venue = spec
                .map_err(|e| e.to_string())
                .and_then(|bytes| EventSpec::decode(&bytes).map_err(|e| e.to_string()))
                .and_then(|spec| spec.venue().map_err(|e| e.to_string()));
            match venue {
                Ok(venue) => {
                    self.lanes.insert(
                        event,
                        Lane {
                            venue: Arc::new(venue),
                            feed: None,
                            published: 0,
                            stored_through: 0,
                            failures: 0,
                            resting_until: None,
                        },
                    );
                }
                Err(e) => {
                    tracing::error!(%event, error = %e, "change feed: the event's spec cannot be read; not relayed")
                }
            }
        }
        Ok(())
    }

    /// One pass over every event; whether any had something to publish.
    async fn round(&mut self) -> Result<bool, RelayFault> {
        if !self.synced {
            self.sync().await?;
        }
        let mut busy = false;
        let now = Instant::now();
        let events: Vec<EventId> = self
            .lanes
            .iter()
            .filter(|(_, lane)| lane.resting_until.is_none_or(|until| until <= now))
            .map(|(event, _)| *event)
            .collect();
        for event in events {
            match self.step(event).await {
                Ok(stepped) => {
                    busy |= stepped;
                    self.lanes.get_mut(&event).expect("listed").failures = 0;
                }
                // One event's store trouble (a damaged record) rests that
                // event, with backoff; the others go on.
                Err(RelayFault::Store(e)) => {
                    let lane = self.lanes.get_mut(&event).expect("listed");
                    lane.failures = lane.failures.saturating_add(1);
                    let rest =
                        (BACKOFF_MIN * 2_u32.saturating_pow(lane.failures.min(6))).min(BACKOFF_MAX);
                    lane.resting_until = Some(Instant::now() + rest);
                    lane.feed = None;
                    self.report("store", &format!("{event}: {e}"));
                }
                Err(e) => return Err(e),
            }
        }
        Ok(busy)
    }

    /// Learn from the broker's last message how far the last relay got.
    async fn sync(&mut self) -> Result<(), RelayFault> {
        let last = self.sink.last_id().await?;
        if let Some((event, seq)) = last.as_deref().and_then(parse_message_id) {
            tracing::info!(%event, seq, "change feed: the stream's last message");
            if let Some(lane) = self.lanes.get_mut(&event) {
                lane.stored_through = lane.stored_through.max(seq);
                lane.feed = None;
            } else {
                // Not listed yet: listed now, so that it is not missed.
                self.list_events().await?;
                if let Some(lane) = self.lanes.get_mut(&event) {
                    lane.stored_through = seq;
                }
            }
        }
        self.synced = true;
        Ok(())
    }

    /// Publish the next batch of one event's records; whether there was one.
    async fn step(&mut self, event: EventId) -> Result<bool, RelayFault> {
        if self.lanes[&event].feed.is_none() {
            self.rebuild(event).await?;
        }
        let after = self.lanes[&event].published;
        let batch = self.config.batch;
        let records = blocking(&self.store, move |s| s.read_journal(event, after, batch)).await?;
        let Some(first) = records.first() else {
            metrics::gauge!("onsale_feed_lag_seconds", "event" => event.0.to_string()).set(0.0);
            return Ok(false);
        };
        let mut pending = Vec::new();
        if first.seq > after + 1 {
            tracing::error!(%event, from = after + 1, to = first.seq - 1,
                "change feed: records compacted before the feed read them (the event is older than the feed, or the relay was away longer than the store keeps records)");
            let mut feed = self
                .lanes
                .get_mut(&event)
                .expect("listed")
                .feed
                .take()
                .expect("rebuilt");
            self.seed_from_snapshot(event, &mut feed, first.seq).await?;
            pending.push(feed.gap(after + 1, first.seq - 1, Millis(now_ms())));
            self.lanes.get_mut(&event).expect("listed").feed = Some(feed);
        }
        let lane = self.lanes.get_mut(&event).expect("listed");
        let feed = lane.feed.as_mut().expect("rebuilt");
        let full = records.len() == batch;
        let mut through = after;
        for bytes in &records {
            let record = decode(event, bytes)?;
            if through == after {
                let lag = now_ms().saturating_sub(record.at.0) as f64 / 1000.0;
                metrics::gauge!("onsale_feed_lag_seconds", "event" => event.0.to_string()).set(lag);
            }
            through = record.seq;
            if let Some(message) = feed.apply(&record) {
                pending.push(message);
            }
        }
        self.publish(event, pending, through).await?;
        if !full {
            metrics::gauge!("onsale_feed_lag_seconds", "event" => event.0.to_string()).set(0.0);
        }
        Ok(true)
    }

    /// Publish `messages` (records through `through`) and save the cursor.
    async fn publish(
        &mut self,
        event: EventId,
        messages: Vec<FeedMessage>,
        through: u64,
    ) -> Result<bool, RelayFault> {
        if self
            .cursor_write
            .as_ref()
            .is_some_and(|(writing, _)| *writing != event)
        {
            self.cursor_saved().await?;
        }
        if !messages.is_empty()
            && let Err(e) = self.sink.publish(&messages).await
        {
            // What the feed learnt from these records is forgotten: it is
            // read again from the store's cursor.
            self.lanes.get_mut(&event).expect("listed").feed = None;
            return Err(e.into());
        }
        metrics::counter!("onsale_feed_messages_total").increment(messages.len() as u64);
        let lane = self.lanes.get_mut(&event).expect("listed");
        let feed = lane.feed.as_ref().expect("rebuilt");
        lane.published = through;
        let cursor = FeedCursor {
            published: through,
            last_message: feed.last_message(),
            keep_from: feed.keep_from(through),
        };
        metrics::gauge!("onsale_feed_published_seq", "event" => event.0.to_string())
            .set(through as f64);
        // Saved while the next batch is published (one write in flight).
        self.cursor_saved().await?;
        let store = Arc::clone(&self.store);
        let write = tokio::task::spawn_blocking(move || store.put_feed_cursor(event, cursor));
        self.cursor_write = Some((event, write));
        Ok(true)
    }

    /// Wait for the cursor write in flight, if any. A cursor not saved
    /// means a batch published again after a restart, dropped by the
    /// broker as a repeat; so another event's batch is published only
    /// once the previous event's cursor is saved (the relay's start reads
    /// the broker's last message, which covers that one event only).
    /// A write that failed is an error: the event is read again from its
    /// stored cursor (through what the broker acknowledged, which is not
    /// published again) before anything more is published.
    async fn cursor_saved(&mut self) -> Result<(), StoreError> {
        let Some((event, write)) = self.cursor_write.take() else {
            return Ok(());
        };
        let written = write.await.unwrap_or_else(|e| {
            Err(StoreError::Unavailable(format!(
                "cursor write panicked: {e}"
            )))
        });
        if let Err(e) = &written {
            tracing::warn!(%event, error = %e, "change feed: the cursor could not be saved");
            if let Some(lane) = self.lanes.get_mut(&event) {
                lane.feed = None;
            }
        }
        written
    }

    /// Rebuild what the feed knows of `event` at its stored cursor (or at
    /// what the broker is known to hold): read the kept records again from
    /// the cursor's `keep_from` without publishing.
    async fn rebuild(&mut self, event: EventId) -> Result<(), RelayFault> {
        self.cursor_saved().await?;
        let cursor = blocking(&self.store, move |s| s.feed_cursor(event))
            .await?
            .unwrap_or(FeedCursor {
                published: 0,
                last_message: 0,
                keep_from: 1,
            });
        let lane = &self.lanes[&event];
        // What the broker is known to hold: the stored cursor, what this
        // relay saw acknowledged (a cursor write may have failed), what
        // the stream's last message showed at start.
        let target = cursor
            .published
            .max(lane.stored_through)
            .max(lane.published);
        let mut feed = EventFeed::new(
            event,
            Arc::clone(&lane.venue),
            &self.config.prefix,
            cursor.last_message,
        );
        let mut after = cursor.keep_from.max(1) - 1;
        let mut seeded = false;
        while after < target {
            let limit = self.config.batch;
            let records =
                blocking(&self.store, move |s| s.read_journal(event, after, limit)).await?;
            let Some(first) = records.first() else { break };
            if first.seq > after + 1 && !seeded {
                // Records the feed needed are gone (it was away longer
                // than the store keeps them, or the event is older than
                // the feed): what was open then is in the snapshot.
                self.seed_from_snapshot(event, &mut feed, first.seq).await?;
                seeded = true;
            }
            if first.seq > target {
                break;
            }
            for bytes in records.iter().take_while(|r| r.seq <= target) {
                let record = decode(event, bytes)?;
                if record.seq <= cursor.published {
                    feed.replay(&record);
                } else {
                    // Stored by the broker already (a relay that crashed
                    // before saving its cursor): known, not published.
                    let _ = feed.apply(&record);
                }
                after = record.seq;
            }
            if records.len() < limit || after >= target {
                break;
            }
        }
        if target > cursor.published {
            tracing::info!(%event, from = cursor.published, to = target,
                "change feed: the broker already holds these; not published again");
            // Saved now: another restart must not publish them again
            // (after the broker's duplicate window it would store them).
            let cursor = FeedCursor {
                published: target,
                last_message: feed.last_message(),
                keep_from: feed.keep_from(target),
            };
            blocking(&self.store, move |s| s.put_feed_cursor(event, cursor)).await?;
        }
        let lane = self.lanes.get_mut(&event).expect("listed");
        lane.published = target;
        lane.feed = Some(feed);
        Ok(())
    }

    async fn seed_from_snapshot(
        &mut self,
        event: EventId,
        feed: &mut EventFeed,
        first_kept: u64,
    ) -> Result<(), RelayFault> {
        let stored = blocking(&self.store, move |s| s.load_event(event)).await?;
        if let Some((_, bytes)) = stored.snapshot {
            let snapshot = EventSnapshot::decode(&bytes).map_err(|e| {
                StoreError::Corrupt(format!("{event}: snapshot does not decode: {e}"))
            })?;
            for hold in snapshot.holds {
                // Kept from the record before the first kept: gone, so a
                // rebuild finds the gap and reads the snapshot again.
                feed.know_hold(hold.hold, hold.fan, hold.seats, first_kept - 1);
            }
        }
        Ok(())
    }
}

/// What failed in one round.
#[derive(Debug, thiserror::Error)]
enum RelayFault {
    #[error(transparent)]
    Sink(#[from] SinkError),
    #[error("the store failed: {0}")]
    Store(#[from] StoreError),
}

impl RelayFault {
    fn kind(&self) -> &'static str {
        match self {
            RelayFault::Sink(e) => e.kind(),
            RelayFault::Store(_) => "store",
        }
    }
}

async fn pause(duration: Duration, stop: &mut watch::Receiver<bool>) {
    let _ = tokio::time::timeout(duration, stop.changed()).await;
}
