//! The feed's sink on NATS JetStream.
//!
//! **Exactly once, in order.** Every message carries `Nats-Msg-Id`
//! (`<event>:<seq>`), and the stream's duplicate window drops a message
//! published again (a retried batch, a relay restarted before it saved its
//! cursor). Publishes are pipelined, so a message could be lost while a
//! later one lands (a broker killed mid-batch): to keep order, each
//! message also names the one before it (`Nats-Expected-Last-Msg-Id`),
//! and the broker refuses a message whose predecessor is not the stream's
//! last. A batch retried after an error starts without that header (its
//! first message is the oldest the relay has not seen stored), so the
//! stream only ever grows by the relay's messages in the relay's order.
//! One relay publishes to a stream, and nothing else does: the chain is
//! stream-wide. A second relay on the same events could not duplicate a
//! message (ids), but the two would break each other's chains, and its
//! first message after each error names no predecessor.
//!
//! **One ack a batch.** Because of that chain, only a batch's last
//! message needs an acknowledgement: the others are plain publishes, and
//! the last one stored proves every one before it was (see
//! `publish_batch`). The broker sends one ack per batch, not per message
//! (every message is acknowledged at first and after an error, so that a
//! refusal is named for the message refused).
//!
//! The connection is made lazily and replaced after any error (what the
//! old one still had queued may be sent when it reconnects: being chained,
//! it lands only in order, and its ids are dropped as repeats); the stream
//! is made if missing (unless told not to) each time.

use std::time::Duration;

use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::stream::{Config, DiscardPolicy, StorageType};
use async_nats::jetstream::{self, Context};
use bytes::Bytes;

use crate::message::FeedMessage;
use crate::sink::{Sink, SinkError};

/// The stream's name by default.
pub const DEFAULT_STREAM: &str = "ONSALE";

/// How long the stream remembers message ids by default: a relay that
/// crashed after publishing and before saving its cursor publishes again
/// within this, usually within seconds.
pub const DEFAULT_DUPLICATE_WINDOW: Duration = Duration::from_secs(120);

/// Where and how the feed publishes.
#[derive(Clone, Debug)]
pub struct NatsConfig {
    /// `nats://host:port`.
    pub url: String,
    pub stream: String,
    /// Subjects are `<prefix>.<event>.<kind>`; the stream takes
    /// `<prefix>.>`.
    pub prefix: String,
    pub duplicate_window: Duration,
    /// Make the stream when it is missing (else: wait for an operator to).
    pub create_stream: bool,
    /// How long to wait for a connection and for each acknowledgement.
    pub timeout: Duration,
}

impl NatsConfig {
    #[must_use]
    pub fn new(url: &str) -> NatsConfig {
        NatsConfig {
            url: url.to_owned(),
            stream: DEFAULT_STREAM.to_owned(),
            prefix: crate::message::DEFAULT_PREFIX.to_owned(),
            duplicate_window: DEFAULT_DUPLICATE_WINDOW,
            create_stream: true,
            timeout: Duration::from_secs(5),
        }
    }
}

/// Publishes to one JetStream stream (see the module docs).
#[derive(Debug)]
pub struct NatsSink {
    config: NatsConfig,
    context: Option<Context>,
    /// The id of the last message the stream stored for us, while nothing
    /// failed since: the next message names it.
    chain: Option<String>,
    /// Acknowledge every message of the next batch (at first and after an
    /// error), not only its last.
    careful: bool,
}

impl NatsSink {
    #[must_use]
    pub fn new(config: NatsConfig) -> NatsSink {
        NatsSink {
            config,
            context: None,
            chain: None,
            careful: true,
        }
    }

    #[must_use]
    pub fn config(&self) -> &NatsConfig {
        &self.config
    }

    fn forget_connection(&mut self) {
        self.context = None;
        self.chain = None;
        self.careful = true;
    }

    /// Connect and make sure the stream exists (made if allowed).
    async fn context(&mut self) -> Result<Context, SinkError> {
        if let Some(context) = &self.context {
            return Ok(context.clone());
        }
        let client = async_nats::ConnectOptions::new()
            .connection_timeout(self.config.timeout)
            .connect(&self.config.url)
            .await
            .map_err(|e| SinkError::Unreachable(format!("{}: {e}", self.config.url)))?;
        let mut context = jetstream::new(client);
        context.set_timeout(self.config.timeout);
        let subject = format!("{}.>", self.config.prefix);
        let found = if self.config.create_stream {
            context
                .get_or_create_stream(Config {
                    name: self.config.stream.clone(),
                    subjects: vec![subject.clone()],
                    duplicate_window: self.config.duplicate_window,
                    storage: StorageType::File,
                    discard: DiscardPolicy::Old,
                    ..Config::default()
                })
                .await
                .map_err(|e| stream_error(&self.config, &subject, &e.to_string()))?
        } else {
            context
                .get_stream(&self.config.stream)
                .await
                .map_err(|e| stream_error(&self.config, &subject, &e.to_string()))?
        };
        let subjects = &found.cached_info().config.subjects;
        if !subjects.iter().any(|s| covers(s, &subject)) {
            return Err(SinkError::NoStream {
                subject,
                detail: format!(
                    "stream {} takes {subjects:?}, not the feed's subjects",
                    self.config.stream
                ),
            });
        }
        self.context = Some(context.clone());
        Ok(context)
    }

    /// Every message but the last goes out as a plain publish (no reply,
    /// no ack to wait for); the last is a JetStream publish whose ack
    /// vouches for the whole batch: each message names its predecessor, so
    /// the broker stores a message only after the one before it, and the
    /// last stored means all were. A message the broker refused makes
    /// every later one refused, down to the last. So after an error (and
    /// at first) a batch is published carefully, every message
    /// acknowledged, so that a refusal is reported in the broker's words
    /// ("maximum messages exceeded") for the message it refused, not as a
    /// broken chain.
    async fn publish_batch(&mut self, batch: &[FeedMessage]) -> Result<(), SinkError> {
        let context = self.context().await?;
        if self.careful {
            let mut acks = Vec::with_capacity(batch.len());
            for message in batch {
                acks.push(self.send_acked(&context, message).await?);
            }
            for (ack, message) in acks.into_iter().zip(batch) {
                ack.await
                    .map_err(|e| publish_error(&self.config, message, e.kind(), &e.to_string()))?;
            }
            self.careful = false;
            return Ok(());
        }
        let Some((last, rest)) = batch.split_last() else {
            return Ok(());
        };
        let client = context.client();
        for message in rest {
            let mut headers = async_nats::HeaderMap::new();
            headers.insert(async_nats::header::NATS_MESSAGE_ID, message.id.as_str());
            if let Some(previous) = &self.chain {
                headers.insert(
                    async_nats::header::NATS_EXPECTED_LAST_MESSAGE_ID,
                    previous.as_str(),
                );
            }
            self.chain = Some(message.id.clone());
            client
                .publish_with_headers(
                    message.subject.clone(),
                    headers,
                    Bytes::copy_from_slice(&message.body),
                )
                .await
                .map_err(|e| SinkError::Unreachable(format!("{}: {e}", self.config.url)))?;
        }
        let ack = self.send_acked(&context, last).await?;
        ack.await
            .map_err(|e| publish_error(&self.config, last, e.kind(), &e.to_string()))?;
        Ok(())
    }

    /// Publish one message chained to the last, as a JetStream publish:
    /// its ack to await.
    async fn send_acked(
        &mut self,
        context: &Context,
        message: &FeedMessage,
    ) -> Result<jetstream::context::PublishAckFuture, SinkError> {
        let mut publish = jetstream::message::PublishMessage::build()
            .payload(Bytes::copy_from_slice(&message.body))
            .message_id(&message.id);
        if let Some(previous) = &self.chain {
            publish = publish.expected_last_message_id(previous);
        }
        self.chain = Some(message.id.clone());
        context
            .send_publish(message.subject.clone(), publish)
            .await
            .map_err(|e| publish_error(&self.config, message, e.kind(), &e.to_string()))
    }
}

impl Sink for NatsSink {
    async fn publish(&mut self, batch: &[FeedMessage]) -> Result<(), SinkError> {
        let published = self.publish_batch(batch).await;
        if published.is_err() {
            self.forget_connection();
        }
        published
    }

    async fn last_id(&mut self) -> Result<Option<String>, SinkError> {
        let context = self.context().await?;
        let unreachable = |e: &dyn std::fmt::Display| SinkError::Unreachable(e.to_string());
        let mut stream = context
            .get_stream(&self.config.stream)
            .await
            .map_err(|e| unreachable(&e))?;
        let last = stream
            .info()
            .await
            .map_err(|e| unreachable(&e))?
            .state
            .last_sequence;
        if last == 0 {
            return Ok(None);
        }
        let message = stream
            .get_raw_message(last)
            .await
            .map_err(|e| unreachable(&e))?;
        Ok(message
            .headers
            .get(async_nats::header::NATS_MESSAGE_ID)
            .map(|id| id.as_str().to_owned()))
    }
}

/// Whether stream subject `pattern` is the feed's `wanted` (`x.>`): a
/// stream taking more (`>`) would mix other publishers' messages into the
/// chain of ids the feed's order rests on.
fn covers(pattern: &str, wanted: &str) -> bool {
    pattern == wanted
}

fn stream_error(config: &NatsConfig, subject: &str, detail: &str) -> SinkError {
    let lower = detail.to_ascii_lowercase();
    if lower.contains("not found") || lower.contains("no responders") {
        SinkError::NoStream {
            subject: subject.to_owned(),
            detail: format!(
                "stream {} does not exist{}: {detail}",
                config.stream,
                if config.create_stream {
                    ""
                } else {
                    " and the relay was told not to make it"
                }
            ),
        }
    } else if lower.contains("timed out") || lower.contains("connection") {
        SinkError::Unreachable(format!("{}: {detail}", config.url))
    } else {
        SinkError::Refused {
            subject: subject.to_owned(),
            id: String::new(),
            detail: format!("stream {}: {detail}", config.stream),
        }
    }
}

fn publish_error(
    config: &NatsConfig,
    message: &FeedMessage,
    kind: PublishErrorKind,
    detail: &str,
) -> SinkError {
    match kind {
        PublishErrorKind::StreamNotFound => SinkError::NoStream {
            subject: message.subject.clone(),
            detail: format!("stream {}: {detail}", config.stream),
        },
        PublishErrorKind::TimedOut | PublishErrorKind::BrokenPipe => {
            SinkError::Unreachable(format!("{}: {detail}", config.url))
        }
        PublishErrorKind::WrongLastMessageId | PublishErrorKind::WrongLastSequence => {
            SinkError::Interleaved(format!("{} on {}: {detail}", message.id, message.subject))
        }
        _ => SinkError::Refused {
            subject: message.subject.clone(),
            id: message.id.clone(),
            detail: detail.to_owned(),
        },
    }
}
