//! The binary codec: bincode 2 (standard config, varint integers) over
//! serde, with a byte limit on every decode.
//!
//! Bytes from a peer, a client or the store are untrusted: decoding returns
//! an error, never panics, never allocates more than the limit, and refuses
//! trailing bytes so that a message cannot smuggle a second one.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::limits;

/// Why bytes could not be decoded (or a value encoded).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error("input is {size} bytes, more than the limit of {max}")]
    TooLarge { size: usize, max: usize },
    #[error("input could not be decoded: {0}")]
    Decode(String),
    #[error("input has {0} trailing bytes after the value")]
    Trailing(usize),
    #[error("value could not be encoded: {0}")]
    Encode(String),
}

macro_rules! config_with_limit {
    ($max:expr) => {
        bincode::config::standard().with_limit::<{ $max }>()
    };
}

/// Encode a message (command, reply, push) and check it fits the limit.
pub fn encode_message<T: Serialize>(value: &T) -> Result<Vec<u8>, CodecError> {
    encode_limited(value, limits::MESSAGE_BYTES_MAX)
}

/// Decode a message from untrusted bytes.
pub fn decode_message<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    check_size(bytes, limits::MESSAGE_BYTES_MAX)?;
    finish(
        bytes.len(),
        bincode::serde::decode_from_slice(bytes, config_with_limit!(limits::MESSAGE_BYTES_MAX)),
    )
}

/// Encode a node RPC frame body.
pub fn encode_rpc<T: Serialize>(value: &T) -> Result<Vec<u8>, CodecError> {
    encode_limited(value, limits::RPC_FRAME_BYTES_MAX)
}

/// Decode a node RPC frame body from untrusted bytes.
pub fn decode_rpc<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    check_size(bytes, limits::RPC_FRAME_BYTES_MAX)?;
    finish(
        bytes.len(),
        bincode::serde::decode_from_slice(bytes, config_with_limit!(limits::RPC_FRAME_BYTES_MAX)),
    )
}

/// Encode a stored record (snapshot, journal entry).
pub fn encode_record<T: Serialize>(value: &T) -> Result<Vec<u8>, CodecError> {
    encode_limited(value, limits::SNAPSHOT_BYTES_MAX)
}

/// Decode a stored record from bytes that may be corrupt or truncated.
pub fn decode_record<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    check_size(bytes, limits::SNAPSHOT_BYTES_MAX)?;
    finish(
        bytes.len(),
        bincode::serde::decode_from_slice(bytes, config_with_limit!(limits::SNAPSHOT_BYTES_MAX)),
    )
}

fn encode_limited<T: Serialize>(value: &T, max: usize) -> Result<Vec<u8>, CodecError> {
    let bytes = bincode::serde::encode_to_vec(value, bincode::config::standard())
        .map_err(|e| CodecError::Encode(e.to_string()))?;
    check_size(&bytes, max)?;
    Ok(bytes)
}

fn check_size(bytes: &[u8], max: usize) -> Result<(), CodecError> {
    if bytes.len() > max {
        return Err(CodecError::TooLarge {
            size: bytes.len(),
            max,
        });
    }
    Ok(())
}

fn finish<T>(
    len: usize,
    result: Result<(T, usize), bincode::error::DecodeError>,
) -> Result<T, CodecError> {
    let (value, read) = result.map_err(|e| CodecError::Decode(e.to_string()))?;
    if read != len {
        return Err(CodecError::Trailing(len - read));
    }
    Ok(value)
}
