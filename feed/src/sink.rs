//! Where the feed's messages go: a broker behind a small trait.
//!
//! A [`Sink`] publishes a batch in order and returns once the broker has
//! stored every message of it, or fails naming why. The relay moves its
//! cursor only past batches a sink stored whole; a batch that failed is
//! published again from its first message, and the broker drops the
//! repeats by message id. [`crate::nats::NatsSink`] is the one broker here
//! (JetStream); another (Kafka, for sites that run one) is another
//! implementation of this trait.

use std::future::Future;

use crate::message::FeedMessage;

/// Why a batch was not stored whole. Every error is retried by the relay
/// after a pause; none loses a message (the cursor stays before it).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SinkError {
    /// The broker cannot be reached, or did not answer in time.
    #[error("the broker is unreachable: {0}")]
    Unreachable(String),
    /// No stream takes the feed's subjects (deleted, or never made).
    #[error("no stream captures {subject}: {detail}")]
    NoStream { subject: String, detail: String },
    /// The broker answered and refused the message (a full stream with
    /// discard-new, a limit, permissions).
    #[error("the broker refused {id} on {subject}: {detail}")]
    Refused {
        subject: String,
        id: String,
        detail: String,
    },
    /// Another publisher wrote to the stream between our messages; the
    /// batch is published again from its start.
    #[error("the stream moved under us: {0}")]
    Interleaved(String),
}

impl SinkError {
    /// A short label for metrics (`onsale_feed_errors_total{kind}`).
    #[must_use]
    pub fn kind(&self) -> &'static str {
        match self {
            SinkError::Unreachable(_) => "unreachable",
            SinkError::NoStream { .. } => "no_stream",
            SinkError::Refused { .. } => "refused",
            SinkError::Interleaved(_) => "interleaved",
        }
    }
}

/// A broker the feed publishes to.
pub trait Sink: Send + Sync {
    /// Publish `batch` in order; `Ok` once the broker stored all of it.
    /// After an `Err`, a prefix of the batch may be stored: publishing the
    /// batch again stores each message once, in order.
    fn publish(
        &mut self,
        batch: &[FeedMessage],
    ) -> impl Future<Output = Result<(), SinkError>> + Send;

    /// The id of the last message the broker holds, if the broker can
    /// tell (the relay reads it at start to learn how far a relay that
    /// crashed between publishing and saving its cursor got).
    fn last_id(&mut self) -> impl Future<Output = Result<Option<String>, SinkError>> + Send;
}
