//! What crosses the mesh: batches of frames from one node to another.
//!
//! A batch is the bytes of one `MeshMsg::Frames` cast: the sender's node
//! name, then frames, each a 4-byte big-endian length and a bincode body
//! (`onsale_schema::codec`, the RPC limit per frame). Each frame is encoded
//! and decoded on its own, so one frame that cannot be encoded (an audit
//! larger than the limit) or decoded does not take its batch with it.
//! Bytes from a peer are untrusted: every length is checked before it is
//! used, and nothing here panics on them.

use onsale_schema::codec::{self, CodecError};
use onsale_schema::message::{Command, EventOwner, Push, Reply};
use onsale_schema::spec::EventSpec;
use onsale_schema::{EventId, limits};
use serde::{Deserialize, Serialize};

/// Longest node name a batch may carry.
pub const NAME_BYTES_MAX: usize = 255;

/// Bytes a batch collects before it is sent (a batch may exceed it by one
/// frame).
pub const BATCH_BYTES: usize = 256 * 1024;

/// One message between nodes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Frame {
    /// Do this on the event (or create it), and answer `Answer { id }`.
    /// `hops` counts the nodes that forwarded it so far: a node forwards
    /// a call at most [`super::HOPS_MAX`] times.
    Call {
        id: u64,
        hops: u8,
        request: Request,
    },
    Answer {
        id: u64,
        reply: Reply,
    },
    /// Pushes of events the sender owns, for the receiver's fans.
    Pushes {
        pushes: Vec<(EventId, Push)>,
    },
    /// Liveness: answered with `Pong`, so a peer that stops answering is
    /// noticed even when its socket stays open (a stopped process).
    Ping {
        nonce: u64,
    },
    Pong {
        nonce: u64,
    },
}

/// What a call asks for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    Command {
        event: EventId,
        command: Command,
    },
    Create {
        spec: Box<EventSpec>,
    },
    /// Move the event (from the owner, the receiver) to node `to`.
    /// Answered with the new owner as `Reply::NotOwner`, or an error.
    Move {
        event: EventId,
        to: String,
    },
    /// Take the event over from `over` (the owner handing it over, frozen
    /// and flushed): acquire the lease past it with epoch + 1, restore,
    /// serve. Answered with the event's overview, or an error.
    Adopt {
        event: EventId,
        over: EventOwner,
    },
    /// The receiver's own account, for operators: answered with
    /// `Reply::NodeStatus`, with its events' overviews if `events`.
    Status {
        events: bool,
    },
}

/// Why a batch or a frame was refused.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("the batch ends inside its {0}")]
    Truncated(&'static str),
    #[error("a frame of {0} bytes is over the limit")]
    TooLarge(usize),
    #[error("the sender's name is not UTF-8")]
    Name,
    #[error("a frame does not decode: {0}")]
    Codec(#[from] CodecError),
}

/// A batch being filled.
#[derive(Debug)]
pub struct BatchWriter {
    bytes: Vec<u8>,
    frames: usize,
}

impl BatchWriter {
    /// A batch from `sender` (names longer than [`NAME_BYTES_MAX`] are cut).
    #[must_use]
    pub fn new(sender: &str) -> BatchWriter {
        let name = &sender.as_bytes()[..sender.len().min(NAME_BYTES_MAX)];
        let mut bytes = Vec::with_capacity(4096);
        bytes.push(name.len() as u8);
        bytes.extend_from_slice(name);
        BatchWriter { bytes, frames: 0 }
    }

    /// Append an encoded frame.
    pub fn push_encoded(&mut self, frame: &[u8]) {
        self.bytes
            .extend_from_slice(&(frame.len() as u32).to_be_bytes());
        self.bytes.extend_from_slice(frame);
        self.frames += 1;
    }

    /// Frames in the batch.
    #[must_use]
    pub fn frames(&self) -> usize {
        self.frames
    }

    /// Whether the batch is big enough to send now.
    #[must_use]
    pub fn is_full(&self) -> bool {
        self.bytes.len() >= BATCH_BYTES
    }

    #[must_use]
    pub fn finish(self) -> Vec<u8> {
        self.bytes
    }
}

/// Encode one frame. A reply too large to encode becomes an error reply
/// with the same id, so the caller still hears back.
pub fn encode(frame: &Frame) -> Result<Vec<u8>, CodecError> {
    match codec::encode_rpc(frame) {
        Ok(bytes) => Ok(bytes),
        Err(e) => match frame {
            Frame::Answer { id, .. } => codec::encode_rpc(&Frame::Answer {
                id: *id,
                reply: Reply::error(
                    onsale_schema::ErrorCode::PayloadTooLarge,
                    format!("the answer is too large to cross the mesh: {e}"),
                ),
            }),
            _ => Err(e),
        },
    }
}

/// The sender of a batch and its frames, each decoded on its own.
pub fn decode(batch: &[u8]) -> Result<(String, Vec<Result<Frame, WireError>>), WireError> {
    let (&len, rest) = batch
        .split_first()
        .ok_or(WireError::Truncated("name length"))?;
    let len = usize::from(len);
    if rest.len() < len {
        return Err(WireError::Truncated("name"));
    }
    let (name, mut rest) = rest.split_at(len);
    let name = std::str::from_utf8(name)
        .map_err(|_| WireError::Name)?
        .to_owned();
    let mut frames = Vec::new();
    while !rest.is_empty() {
        if rest.len() < 4 {
            return Err(WireError::Truncated("frame length"));
        }
        let (head, tail) = rest.split_at(4);
        let size = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
        if size > limits::RPC_FRAME_BYTES_MAX {
            return Err(WireError::TooLarge(size));
        }
        if tail.len() < size {
            return Err(WireError::Truncated("frame"));
        }
        let (body, tail) = tail.split_at(size);
        frames.push(codec::decode_rpc::<Frame>(body).map_err(WireError::from));
        rest = tail;
    }
    Ok((name, frames))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> Vec<Frame> {
        vec![
            Frame::Call {
                id: 7,
                hops: 1,
                request: Request::Command {
                    event: EventId(3),
                    command: Command::Overview,
                },
            },
            Frame::Answer {
                id: 7,
                reply: Reply::error(onsale_schema::ErrorCode::Busy, "later"),
            },
            Frame::Pushes {
                pushes: vec![(EventId(3), Push::SoldOut)],
            },
            Frame::Ping { nonce: 9 },
        ]
    }

    #[test]
    fn a_batch_round_trips() {
        let mut batch = BatchWriter::new("node-a");
        for frame in sample() {
            batch.push_encoded(&encode(&frame).expect("encodes"));
        }
        let (name, frames) = decode(&batch.finish()).expect("decodes");
        assert_eq!(name, "node-a");
        let frames: Vec<Frame> = frames.into_iter().map(|f| f.expect("frame")).collect();
        assert_eq!(frames, sample());
    }

    #[test]
    fn an_oversized_length_is_refused_before_reading() {
        let mut bytes = BatchWriter::new("n").finish();
        bytes.extend_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(decode(&bytes), Err(WireError::TooLarge(_))));
    }

    proptest! {
        /// Garbage never panics; a cut batch is refused or yields frames
        /// that were in it.
        #[test]
        fn garbage_is_refused_without_panicking(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode(&bytes);
        }

        #[test]
        fn damaged_batches_never_panic(cut in 0usize..200, flip in any::<(usize, u8)>()) {
            let mut batch = BatchWriter::new("node-a");
            for frame in sample() {
                batch.push_encoded(&encode(&frame).expect("encodes"));
            }
            let mut bytes = batch.finish();
            let at = flip.0 % bytes.len();
            bytes[at] ^= flip.1;
            bytes.truncate(cut.min(bytes.len()));
            let _ = decode(&bytes);
        }
    }
}
