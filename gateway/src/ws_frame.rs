//! A fan's websocket frames: read without a standing buffer, written
//! whole and several at a time.
//!
//! fastwebsockets does the handshake, but its reader keeps an 8 KiB buffer for the life of each connection, and
//! fan connections are mostly idle: with 19,000 fans waiting that buffer
//! was more than half of the gateway's memory per fan (10.2 KB per fan
//! with it, 4.4 KB without; `scripts/bench-websockets.sh`). Fans send a
//! few tiny frames, so this reader reads each frame's header into the
//! stack and allocates exactly its payload, and nothing while it waits.
//!
//! It accepts what RFC 6455 allows a client to send: masked frames,
//! control frames of at most 125 bytes and never fragmented, reserved bits
//! clear (no extensions are negotiated), known opcodes. Payloads longer
//! than the caller's limit are refused from the header, before anything
//! is allocated.
//!
//! Frames the gateway sends are made whole (header and payload in one
//! buffer) where the push is encoded, once per push however many fans get
//! it; a connection writes everything queued for it with one `write`. When
//! an event says "the sale is open" and "admitted through P" in one breath,
//! each of 19,000 fans gets both in one segment: fastwebsockets' writer
//! made that two system calls per fan, and on loopback each costs about
//! 19 µs of the gateway's CPU (mostly the receiving side's TCP work, which
//! runs on the sender's core).

use bytes::Bytes;
use fastwebsockets::OpCode;
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Room left in front of an encoded payload for the longest server header
/// (2 bytes + an 8-byte length; server frames are not masked).
const HEADER_ROOM: usize = 10;

/// `value` as JSON in a whole, unmasked text frame.
pub fn json_frame<T: Serialize>(value: &T) -> Bytes {
    let mut buf = vec![0u8; HEADER_ROOM];
    serde_json::to_writer(&mut buf, value).expect("pushes always encode");
    framed(buf, OpCode::Text)
}

/// A whole, unmasked frame of `opcode` around `payload`.
pub fn frame(opcode: OpCode, payload: &[u8]) -> Bytes {
    let mut buf = Vec::with_capacity(HEADER_ROOM + payload.len());
    buf.resize(HEADER_ROOM, 0);
    buf.extend_from_slice(payload);
    framed(buf, opcode)
}

/// Write the header into the room in front of `buf`'s payload.
fn framed(mut buf: Vec<u8>, opcode: OpCode) -> Bytes {
    let len = buf.len() - HEADER_ROOM;
    let first = 0x80 | opcode as u8; // FIN: the gateway never fragments
    let start = match len {
        0..=125 => {
            buf[8] = first;
            buf[9] = len as u8;
            8
        }
        126..=0xffff => {
            buf[6] = first;
            buf[7] = 126;
            buf[8..10].copy_from_slice(&(len as u16).to_be_bytes());
            6
        }
        _ => {
            buf[0] = first;
            buf[1] = 127;
            buf[2..10].copy_from_slice(&(len as u64).to_be_bytes());
            0
        }
    };
    Bytes::from(buf).slice(start..)
}

/// Write whole frames, all of them in one `write` when the socket has
/// room (one frame goes as it is; several are joined first).
pub async fn write_frames<W: AsyncWrite + Unpin>(
    io: &mut W,
    frames: &[Bytes],
) -> std::io::Result<()> {
    match frames {
        [] => Ok(()),
        [one] => io.write_all(one).await,
        many => {
            let mut joined = Vec::with_capacity(many.iter().map(Bytes::len).sum());
            for frame in many {
                joined.extend_from_slice(frame);
            }
            io.write_all(&joined).await
        }
    }
}

/// A frame from a fan, unmasked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientFrame {
    pub opcode: OpCode,
    pub fin: bool,
    pub payload: Vec<u8>,
}

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The connection ended (cleanly or not) before a whole frame.
    #[error("the connection ended: {0}")]
    Closed(#[from] std::io::Error),
    /// The header announces more than the limit; nothing was read of it.
    #[error("a frame of {len} bytes is over the limit of {max}")]
    TooLarge { len: u64, max: usize },
    /// Not a frame a client may send.
    #[error("protocol error: {0}")]
    Protocol(&'static str),
}

/// Read one frame of at most `max` payload bytes from `io`. A frame over
/// `max` but within `skip_max` is read and thrown away (nothing allocated)
/// before it is refused, so that the fan still reads the gateway's close
/// frame; one over `skip_max` is refused from its header.
///
/// Cancel safety: none (a cancelled read loses its place in the stream).
/// Poll the returned future to completion, e.g. from a stream that owns
/// the reader, as `ws.rs` does.
pub async fn read_frame<R: AsyncRead + Unpin>(
    io: &mut R,
    max: usize,
    skip_max: usize,
) -> Result<ClientFrame, FrameError> {
    let mut head = [0u8; 2];
    io.read_exact(&mut head).await?;
    let fin = head[0] & 0x80 != 0;
    if head[0] & 0x70 != 0 {
        return Err(FrameError::Protocol("reserved bits set"));
    }
    let opcode = match head[0] & 0x0f {
        0x0 => OpCode::Continuation,
        0x1 => OpCode::Text,
        0x2 => OpCode::Binary,
        0x8 => OpCode::Close,
        0x9 => OpCode::Ping,
        0xA => OpCode::Pong,
        _ => return Err(FrameError::Protocol("unknown opcode")),
    };
    if head[1] & 0x80 == 0 {
        return Err(FrameError::Protocol("client frames must be masked"));
    }
    let len = match head[1] & 0x7f {
        126 => {
            let mut ext = [0u8; 2];
            io.read_exact(&mut ext).await?;
            u64::from(u16::from_be_bytes(ext))
        }
        127 => {
            let mut ext = [0u8; 8];
            io.read_exact(&mut ext).await?;
            u64::from_be_bytes(ext)
        }
        short => u64::from(short),
    };
    let control = matches!(opcode, OpCode::Close | OpCode::Ping | OpCode::Pong);
    if control && (!fin || len > 125) {
        return Err(FrameError::Protocol(
            "control frames are unfragmented and at most 125 bytes",
        ));
    }
    if len > max.max(skip_max) as u64 {
        return Err(FrameError::TooLarge { len, max });
    }
    let mut mask = [0u8; 4];
    io.read_exact(&mut mask).await?;
    if len > max as u64 {
        let mut left = len;
        let mut sink = [0u8; 512];
        while left > 0 {
            let chunk = left.min(sink.len() as u64) as usize;
            io.read_exact(&mut sink[..chunk]).await?;
            left -= chunk as u64;
        }
        return Err(FrameError::TooLarge { len, max });
    }
    let mut payload = vec![0u8; len as usize];
    io.read_exact(&mut payload).await?;
    for (i, byte) in payload.iter_mut().enumerate() {
        *byte ^= mask[i % 4];
    }
    Ok(ClientFrame {
        opcode,
        fin,
        payload,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client frame as a browser would send it.
    fn masked(first: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
        let mut out = vec![first];
        match payload.len() {
            n if n < 126 => out.push(0x80 | n as u8),
            n if n <= 0xffff => {
                out.push(0x80 | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(0x80 | 127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        out
    }

    async fn read(bytes: &[u8], max: usize) -> Result<ClientFrame, FrameError> {
        let mut io = bytes;
        read_frame(&mut io, max, max).await
    }

    #[tokio::test]
    async fn masked_frames_of_every_length_form_are_read() {
        for len in [0usize, 5, 125, 126, 300, 65_535, 65_536, 70_000] {
            let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let frame = read(&masked(0x81, &payload, [1, 2, 3, 4]), 100_000)
                .await
                .unwrap();
            assert_eq!(frame.opcode, OpCode::Text);
            assert!(frame.fin);
            assert_eq!(frame.payload, payload, "len {len}");
        }
        let ping = read(&masked(0x89, b"hi", [9, 9, 9, 9]), 10).await.unwrap();
        assert_eq!((ping.opcode, ping.payload), (OpCode::Ping, b"hi".to_vec()));
        let fragment = read(&masked(0x01, b"part", [0; 4]), 10).await.unwrap();
        assert!(!fragment.fin);
    }

    #[tokio::test]
    async fn frames_a_client_may_not_send_are_refused() {
        let unmasked = [0x81, 0x02, b'h', b'i'];
        assert!(matches!(
            read(&unmasked, 10).await,
            Err(FrameError::Protocol(_))
        ));
        let reserved = masked(0xC1, b"x", [0; 4]);
        assert!(matches!(
            read(&reserved, 10).await,
            Err(FrameError::Protocol(_))
        ));
        let opcode = masked(0x83, b"x", [0; 4]);
        assert!(matches!(
            read(&opcode, 10).await,
            Err(FrameError::Protocol(_))
        ));
        let long_ping = masked(0x89, &[0; 126], [0; 4]);
        assert!(matches!(
            read(&long_ping, 1_000).await,
            Err(FrameError::Protocol(_))
        ));
        let fragmented_close = masked(0x08, b"", [0; 4]);
        assert!(matches!(
            read(&fragmented_close, 10).await,
            Err(FrameError::Protocol(_))
        ));
    }

    #[tokio::test]
    async fn oversized_frames_are_refused_from_the_header() {
        // Claims 2^63 bytes: refused without allocating or reading on.
        let mut huge = vec![0x81, 0x80 | 127];
        huge.extend_from_slice(&(1u64 << 63).to_be_bytes());
        assert!(matches!(
            read(&huge, 4_096).await,
            Err(FrameError::TooLarge { .. })
        ));
        let big = masked(0x81, &[b' '; 5_000], [7; 4]);
        assert!(matches!(
            read(&big, 4_096).await,
            Err(FrameError::TooLarge { len: 5_000, .. })
        ));
    }

    #[tokio::test]
    async fn frames_between_the_limits_are_read_and_thrown_away() {
        let mut bytes = masked(0x81, &[b' '; 5_000], [7; 4]);
        bytes.extend(masked(0x81, b"next", [1; 4]));
        let mut io = bytes.as_slice();
        assert!(matches!(
            read_frame(&mut io, 4_096, 65_536).await,
            Err(FrameError::TooLarge { len: 5_000, .. })
        ));
        let next = read_frame(&mut io, 4_096, 65_536).await.unwrap();
        assert_eq!(next.payload, b"next");
    }

    #[tokio::test]
    async fn truncated_frames_end_the_connection() {
        let whole = masked(0x81, b"hello", [1, 2, 3, 4]);
        for cut in 0..whole.len() {
            assert!(matches!(
                read(&whole[..cut], 100).await,
                Err(FrameError::Closed(_))
            ));
        }
    }

    /// Parse a server frame (unmasked) back: opcode, payload, bytes used.
    fn parse_server(bytes: &[u8]) -> (u8, Vec<u8>, usize) {
        assert_eq!(bytes[1] & 0x80, 0, "server frames are not masked");
        let (len, at) = match bytes[1] & 0x7f {
            126 => (u16::from_be_bytes([bytes[2], bytes[3]]) as usize, 4),
            127 => (
                u64::from_be_bytes(bytes[2..10].try_into().unwrap()) as usize,
                10,
            ),
            n => (n as usize, 2),
        };
        (bytes[0], bytes[at..at + len].to_vec(), at + len)
    }

    #[test]
    fn server_frames_use_the_shortest_length_form() {
        for (len, header) in [
            (0usize, 2usize),
            (125, 2),
            (126, 4),
            (65_535, 4),
            (65_536, 10),
        ] {
            let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let bytes = frame(OpCode::Text, &payload);
            assert_eq!(bytes.len(), header + len, "len {len}");
            assert_eq!(parse_server(&bytes), (0x81, payload, header + len));
        }
        assert_eq!(&frame(OpCode::Close, &[3, 232])[..], &[0x88, 2, 3, 232]);
        assert_eq!(&frame(OpCode::Ping, &[])[..], &[0x89, 0]);
        let json = json_frame(&serde_json::json!({"push": "sold_out"}));
        assert_eq!(parse_server(&json).1, br#"{"push":"sold_out"}"#);
    }

    #[tokio::test]
    async fn several_frames_go_out_as_one_write_and_read_back_in_order() {
        let frames = [
            json_frame(&"one"),
            frame(OpCode::Text, &[b'x'; 300]),
            frame(OpCode::Pong, b"p"),
        ];
        let mut out = Vec::new();
        write_frames(&mut out, &frames).await.unwrap();
        let mut rest = out.as_slice();
        for want in &frames {
            let (_, payload, used) = parse_server(rest);
            assert_eq!(payload, parse_server(want).1);
            rest = &rest[used..];
        }
        assert!(rest.is_empty());
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
            let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
            let _ = runtime.block_on(read(&bytes, 64));
        }

        #[test]
        fn every_masked_frame_round_trips(
            payload in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400),
            mask in proptest::prelude::any::<[u8; 4]>(),
        ) {
            let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
            let frame = runtime.block_on(read(&masked(0x82, &payload, mask), 400)).unwrap();
            proptest::prop_assert_eq!(frame.payload, payload);
        }
    }
}
