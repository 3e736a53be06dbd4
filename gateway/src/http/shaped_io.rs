//! A connection's socket as hyper sees it, with hyper's own error answers
//! put in the documented shape.
//!
//! hyper answers a request it cannot parse by itself (400 for a garbled
//! head, 414 for a long URI, 431 for a head over `max_buf_size`) with an
//! empty body and then closes; no service sees that request, so nothing
//! else can shape the answer. This wrapper recognises such a head on its
//! way out (one of those statuses, no `content-type`, `content-length: 0`:
//! every answer of the gateway's own routes carries a content type) and
//! writes the same status with a JSON error body in its place. Everything
//! else passes through untouched, and a websocket takes the inner socket
//! back with [`ShapedIo::into_inner`].

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use axum::http::StatusCode;
use onsale_schema::ErrorCode;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A socket whose automatic error answers are rewritten (module doc).
#[derive(Debug)]
pub struct ShapedIo<S> {
    inner: S,
    /// A replacement being written, how much of it is written, and how
    /// many of the caller's bytes it stands for.
    replacing: Option<(Vec<u8>, usize, usize)>,
}

impl<S> ShapedIo<S> {
    pub fn new(inner: S) -> ShapedIo<S> {
        ShapedIo {
            inner,
            replacing: None,
        }
    }

    pub fn into_inner(self) -> S {
        self.inner
    }
}

/// The JSON answer standing for hyper's automatic answer at the start of
/// `buf`, and the length of hyper's head, if `buf` starts with one.
fn replacement(buf: &[u8]) -> Option<(Vec<u8>, usize)> {
    let rest = buf.strip_prefix(b"HTTP/1.1 ")?;
    let code = match rest.get(..4)? {
        b"400 " => ErrorCode::BadRequest,
        b"414 " => ErrorCode::BadRequest,
        b"431 " => ErrorCode::HeadersTooLarge,
        _ => return None,
    };
    let head_len = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&buf[..head_len]).to_ascii_lowercase();
    if head.contains("\r\ncontent-type:") || !head.contains("\r\ncontent-length: 0\r\n") {
        return None;
    }
    let status = StatusCode::from_bytes(&rest[..3]).ok()?;
    let message = match code {
        ErrorCode::HeadersTooLarge => format!(
            "the request line and headers are over {} bytes",
            onsale_schema::limits::HTTP_HEAD_BYTES_MAX
        ),
        _ => "the request line or headers could not be parsed".to_owned(),
    };
    let body = serde_json::json!({"reply": "error", "code": code, "message": message}).to_string();
    let answer = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
         connection: close\r\n\r\n{body}",
        status.as_str(),
        status.canonical_reason().unwrap_or(""),
        body.len()
    );
    Some((answer.into_bytes(), head_len))
}

impl<S: AsyncWrite + Unpin> ShapedIo<S> {
    /// Write the rest of a replacement; ready with the caller's byte count
    /// once all of it is written.
    fn poll_replace(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let Some((answer, written, stands_for)) = self.replacing.as_mut() else {
            unreachable!("only called while replacing");
        };
        while *written < answer.len() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &answer[*written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            *written += n;
        }
        let stands_for = *stands_for;
        self.replacing = None;
        Poll::Ready(Ok(stands_for))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for ShapedIo<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for ShapedIo<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.replacing.is_none() {
            match replacement(buf) {
                Some((answer, head_len)) => self.replacing = Some((answer, 0, head_len)),
                None => return Pin::new(&mut self.inner).poll_write(cx, buf),
            }
        }
        self.poll_replace(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let first = bufs.iter().find(|b| !b.is_empty());
        let automatic = first.is_some_and(|b| replacement(b).is_some());
        if self.replacing.is_some() || automatic {
            let first = first.map_or(&[][..], |b| &b[..]);
            return self.poll_write(cx, first);
        }
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_hypers_bodiless_error_heads_are_replaced() {
        let automatic =
            b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\ndate: x\r\n\r\n";
        let (answer, head_len) = replacement(automatic).expect("replaced");
        assert_eq!(head_len, automatic.len());
        let answer = String::from_utf8(answer).unwrap();
        assert!(answer.starts_with("HTTP/1.1 431 "), "{answer}");
        let body = answer.split_once("\r\n\r\n").unwrap().1;
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(json["code"], "headers_too_large");
        assert_eq!(json["reply"], "error");
        // The gateway's own answers, and other statuses, pass.
        let own = b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: 0\r\n\r\n";
        assert!(replacement(own).is_none());
        assert!(replacement(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").is_none());
        assert!(replacement(b"HTTP/1.1 431 ").is_none());
    }
}
