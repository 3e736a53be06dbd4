//! The node RPC: how clients (test drivers, operators' tools, later
//! gateways on other hosts) talk to a node's router over TCP.
//!
//! Framing: each frame is a 4-byte big-endian length, then that many bytes
//! of bincode ([`crate::codec`]). A frame longer than
//! [`limits::RPC_FRAME_BYTES_MAX`] or one that does not decode gets an
//! [`ServerFrame::Error`] and the connection is closed: a peer sending
//! garbage loses its connection, nothing else.
//!
//! Credential: on accept the node sends [`ServerFrame::Challenge`] with a
//! fresh nonce; the client's first frame must be [`ClientFrame::Hello`]
//! with [`hello_proof`] of that nonce under the cluster secret (the
//! operators' token), within [`limits::RPC_HELLO_TIMEOUT_MS`] and
//! [`limits::RPC_HELLO_BYTES_MAX`]. Anything else gets an `Error`
//! (`unauthorized`) and the connection is closed. The secret never
//! crosses the wire and a proof is good for one connection only.
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
    /// The first frame of every connection: [`hello_proof`] of the
    /// node's challenge. (Appended: the codec numbers variants in order.)
    Hello { proof: [u8; PROOF_BYTES] },
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
    /// The first frame of every connection: the nonce the client's
    /// `Hello` must prove the cluster secret over.
    Challenge {
        nonce: [u8; NONCE_BYTES],
    },
}

/// Length of a challenge's nonce.
pub const NONCE_BYTES: usize = 32;
/// Length of a hello's proof.
pub const PROOF_BYTES: usize = 32;

/// The proof that a client holds the cluster `secret`: a BLAKE3 keyed
/// hash of the node's `nonce` under a key derived from the secret.
#[must_use]
pub fn hello_proof(secret: &[u8], nonce: &[u8; NONCE_BYTES]) -> [u8; PROOF_BYTES] {
    let key = blake3::derive_key("onsale node rpc hello v1", secret);
    *blake3::keyed_hash(&key, nonce).as_bytes()
}

/// A challenge nonce: unpredictable without the `secret` and, as long as
/// `unique` never repeats (a counter, the clock and the process id), never
/// reused.
#[must_use]
pub fn challenge_nonce(secret: &[u8], unique: &[u8]) -> [u8; NONCE_BYTES] {
    let key = blake3::derive_key("onsale node rpc nonce v1", secret);
    *blake3::keyed_hash(&key, unique).as_bytes()
}

/// Whether `proof` answers `nonce` under `secret` (constant time).
#[must_use]
pub fn hello_holds(secret: &[u8], nonce: &[u8; NONCE_BYTES], proof: &[u8; PROOF_BYTES]) -> bool {
    crate::token::tags_equal(&hello_proof(secret, nonce), proof)
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
