//! The node RPC: how clients (test drivers, operators' tools, later
//! gateways on other hosts) talk to a node's router over TCP.
//!
//! Framing: each frame is a 4-byte big-endian length, then that many bytes
//! of bincode ([`crate::codec`]). A frame longer than
//! [`limits::RPC_FRAME_BYTES_MAX`] or one that does not decode gets an
//! [`ServerFrame::Error`] and the connection is closed: a peer sending
//! garbage loses its connection, nothing else.
//!
//! A `Response` carries the node's [`Reply`]: the event's answer, an
//! error, or [`Reply::NotOwner`] when another node owns the event (the
//! owner's node name, lease epoch and lease expiry).

use serde::{Deserialize, Serialize};

use crate::error::ErrorCode;
use crate::ids::EventId;
use crate::limits;
use crate::message::{Command, Push, Reply};
use crate::spec::EventSpec;

/// Length of the frame header.
pub const FRAME_HEADER_BYTES: usize = 4;

/// From a client to a node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClientFrame {
    /// A command for one event. `id` is echoed in the response.
    Request {
        id: u64,
        event: EventId,
        command: Command,
    },
    /// Create (or replace) an event. Operators only.
    CreateEvent { id: u64, spec: Box<EventSpec> },
    /// Ask for every push of `event` on this connection.
    Subscribe { event: EventId },
}

/// From a node to a client.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ServerFrame {
    Response {
        id: u64,
        reply: Reply,
    },
    Push {
        event: EventId,
        push: Push,
    },
    /// The connection is about to be closed because of this.
    Error {
        code: ErrorCode,
        message: String,
    },
}

/// Encode a frame with its length header.
pub fn encode_frame<T: Serialize>(frame: &T) -> Result<Vec<u8>, crate::codec::CodecError> {
    let body = crate::codec::encode_rpc(frame)?;
    let mut out = Vec::with_capacity(FRAME_HEADER_BYTES + body.len());
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&body);
    Ok(out)
}

/// Decode a frame body (after its header).
pub fn decode_frame<T: serde::de::DeserializeOwned>(
    body: &[u8],
) -> Result<T, crate::codec::CodecError> {
    crate::codec::decode_rpc(body)
}

/// Read a frame's length from its header, refusing oversized frames
/// before reading (or allocating for) the body.
pub fn frame_len(header: [u8; FRAME_HEADER_BYTES]) -> Result<usize, ErrorCode> {
    let len = u32::from_be_bytes(header) as usize;
    if len > limits::RPC_FRAME_BYTES_MAX {
        return Err(ErrorCode::PayloadTooLarge);
    }
    Ok(len)
}
