//! Signed queue tokens.
//!
//! A queue token names an event, a fan and the fan's position, and is
//! signed with the cluster's key (BLAKE3 keyed hash, 128-bit tag). It is
//! the only record of a waiting fan's place that survives a crash: the
//! store holds the position counter, the fan holds the token. Presenting it
//! after any restart puts the fan back at its position.
//!
//! Text form: 96 lowercase hex characters (48 bytes: event, fan, position,
//! issued-at, each u64 little-endian, then the tag).

use std::fmt;

use crate::ids::{EventId, FanId, Millis, Position};
use crate::limits;

const BODY_BYTES: usize = 32;
const TAG_BYTES: usize = 16;
const TOKEN_BYTES: usize = BODY_BYTES + TAG_BYTES;
/// Length of a queue token's text form.
pub const QUEUE_TOKEN_CHARS: usize = TOKEN_BYTES * 2;

/// Domain separation: a queue token's tag can never verify as another kind.
const CONTEXT: &[u8] = b"onsale queue token v1";

/// The cluster's signing key. Debug output never shows it.
#[derive(Clone)]
pub struct TokenKey([u8; 32]);

impl fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenKey(..)")
    }
}

impl TokenKey {
    #[must_use]
    pub fn from_bytes(bytes: [u8; 32]) -> TokenKey {
        TokenKey(bytes)
    }

    /// Derive a key from a secret of any length (e.g. an environment variable).
    #[must_use]
    pub fn derive(secret: &[u8]) -> TokenKey {
        TokenKey(blake3::derive_key("onsale token key v1", secret))
    }

    fn tag(&self, body: &[u8; BODY_BYTES]) -> [u8; TAG_BYTES] {
        self.tag_in(CONTEXT, body)
    }

    /// A tag over `body` in one context: a tag made in one context never
    /// verifies in another. Other signed kinds (proof-of-work challenges
    /// in [`crate::stamp`]) sign with this in contexts of their own.
    pub(crate) fn tag_in(&self, context: &[u8], body: &[u8]) -> [u8; TAG_BYTES] {
        let mut hasher = blake3::Hasher::new_keyed(&self.0);
        hasher.update(context);
        hasher.update(body);
        let mut tag = [0u8; TAG_BYTES];
        tag.copy_from_slice(&hasher.finalize().as_bytes()[..TAG_BYTES]);
        tag
    }
}

/// The claims in a queue token.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct QueueClaims {
    pub event: EventId,
    pub fan: FanId,
    pub position: Position,
    pub issued_at: Millis,
}

/// Claims whose signature, event, fan and age were checked. Only
/// [`verify`] makes one, so a core that takes this type cannot be handed
/// an unchecked position.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct VerifiedQueueToken(QueueClaims);

impl VerifiedQueueToken {
    #[must_use]
    pub fn claims(&self) -> &QueueClaims {
        &self.0
    }
}

/// Why a token was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("token is malformed")]
    Malformed,
    #[error("token signature does not verify")]
    BadSignature,
    #[error("token is for another event or fan")]
    Mismatch,
    #[error("token has expired")]
    Expired,
}

impl TokenError {
    #[must_use]
    pub fn code(self) -> crate::ErrorCode {
        match self {
            TokenError::Expired => crate::ErrorCode::TokenExpired,
            _ => crate::ErrorCode::InvalidToken,
        }
    }
}

/// Sign claims into a token's text form.
#[must_use]
pub fn sign(key: &TokenKey, claims: &QueueClaims) -> String {
    let body = body(claims);
    let tag = key.tag(&body);
    let mut out = String::with_capacity(QUEUE_TOKEN_CHARS);
    push_hex(&mut out, &body);
    push_hex(&mut out, &tag);
    out
}

/// Check a token presented by `fan` for `event` at time `now`.
pub fn verify(
    key: &TokenKey,
    text: &str,
    event: EventId,
    fan: FanId,
    now: Millis,
) -> Result<VerifiedQueueToken, TokenError> {
    let bytes = decode_hex(text).ok_or(TokenError::Malformed)?;
    let mut body = [0u8; BODY_BYTES];
    body.copy_from_slice(&bytes[..BODY_BYTES]);
    if !tags_equal(&key.tag(&body), &bytes[BODY_BYTES..]) {
        return Err(TokenError::BadSignature);
    }
    let word = |i: usize| word(&body, i);
    let claims = QueueClaims {
        event: EventId(word(0)),
        fan: FanId(word(1)),
        position: Position(word(2)),
        issued_at: Millis(word(3)),
    };
    if claims.event != event || claims.fan != fan {
        return Err(TokenError::Mismatch);
    }
    if now.saturating_sub(claims.issued_at) > limits::QUEUE_TOKEN_TTL_MS {
        return Err(TokenError::Expired);
    }
    Ok(VerifiedQueueToken(claims))
}

/// A fan id for an identity's subject (a login name, an identity
/// provider's subject id): stable for the same subject and key, below
/// [`crate::api::FAN_ID_MAX`] so that JavaScript reads it exactly.
#[must_use]
pub fn derive_fan_id(key: &TokenKey, subject: &str) -> FanId {
    let tag = key.tag_in(b"onsale fan id v1", subject.as_bytes());
    let mut word = [0u8; 8];
    word.copy_from_slice(&tag[..8]);
    FanId((u64::from_le_bytes(word) & crate::api::FAN_ID_MAX).max(1))
}

/// Domain separation for session tokens.
const SESSION_CONTEXT: &[u8] = b"onsale session token v1";
const SESSION_BODY_BYTES: usize = 16;
/// Length of a session token's text form: `s` then 64 hex characters
/// (fan and expiry, each u64 little-endian, then the tag).
pub const SESSION_TOKEN_CHARS: usize = 1 + (SESSION_BODY_BYTES + TAG_BYTES) * 2;

/// Who a session token says the bearer is, and until when.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SessionClaims {
    pub fan: FanId,
    pub expires_at: Millis,
}

/// Sign a fan's session. The gateway issues these after a login (the demo
/// login, or a real identity provider's assertion mapped to a [`FanId`]).
#[must_use]
pub fn sign_session(key: &TokenKey, claims: &SessionClaims) -> String {
    let mut body = [0u8; SESSION_BODY_BYTES];
    body[..8].copy_from_slice(&claims.fan.0.to_le_bytes());
    body[8..].copy_from_slice(&claims.expires_at.0.to_le_bytes());
    let tag = key.tag_in(SESSION_CONTEXT, &body);
    let mut out = String::with_capacity(SESSION_TOKEN_CHARS);
    out.push('s');
    push_hex(&mut out, &body);
    push_hex(&mut out, &tag);
    out
}

/// Check a session token at time `now`.
pub fn verify_session(
    key: &TokenKey,
    text: &str,
    now: Millis,
) -> Result<SessionClaims, TokenError> {
    let hex = text.strip_prefix('s').ok_or(TokenError::Malformed)?;
    let bytes: [u8; SESSION_BODY_BYTES + TAG_BYTES] =
        decode_hex_n(hex).ok_or(TokenError::Malformed)?;
    let (body, tag) = bytes.split_at(SESSION_BODY_BYTES);
    if !tags_equal(&key.tag_in(SESSION_CONTEXT, body), tag) {
        return Err(TokenError::BadSignature);
    }
    let word = |i: usize| word(body, i);
    let claims = SessionClaims {
        fan: FanId(word(0)),
        expires_at: Millis(word(1)),
    };
    if now >= claims.expires_at {
        return Err(TokenError::Expired);
    }
    Ok(claims)
}

/// Domain separation for presale codes.
const PRESALE_CONTEXT: &[u8] = b"onsale presale code v1";
const PRESALE_BODY_BYTES: usize = 16;
/// Length of a presale code's text form: `p` then 64 hex characters
/// (event and fan, each u64 little-endian, then the tag).
pub const PRESALE_CODE_CHARS: usize = 1 + (PRESALE_BODY_BYTES + TAG_BYTES) * 2;

/// A presale code: the event lets this one fan join during its presale
/// (the Verified Fan pattern). Stateless to check (a signature, no store
/// read); the event remembers durably which fans used theirs, so a code
/// makes one place in line, never a second one.
#[must_use]
pub fn sign_presale(key: &TokenKey, event: EventId, fan: FanId) -> String {
    let body = presale_body(event, fan);
    let tag = key.tag_in(PRESALE_CONTEXT, &body);
    let mut out = String::with_capacity(PRESALE_CODE_CHARS);
    out.push('p');
    push_hex(&mut out, &body);
    push_hex(&mut out, &tag);
    out
}

fn presale_body(event: EventId, fan: FanId) -> [u8; PRESALE_BODY_BYTES] {
    let mut body = [0u8; PRESALE_BODY_BYTES];
    body[..8].copy_from_slice(&event.0.to_le_bytes());
    body[8..].copy_from_slice(&fan.0.to_le_bytes());
    body
}

/// Check a presale code presented by `fan` for `event`.
pub fn verify_presale(
    key: &TokenKey,
    text: &str,
    event: EventId,
    fan: FanId,
) -> Result<(), TokenError> {
    let hex = text.strip_prefix('p').ok_or(TokenError::Malformed)?;
    let bytes: [u8; PRESALE_BODY_BYTES + TAG_BYTES] =
        decode_hex_n(hex).ok_or(TokenError::Malformed)?;
    let (body, tag) = bytes.split_at(PRESALE_BODY_BYTES);
    if !tags_equal(&key.tag_in(PRESALE_CONTEXT, body), tag) {
        return Err(TokenError::BadSignature);
    }
    if word(body, 0) != event.0 || word(body, 1) != fan.0 {
        return Err(TokenError::Mismatch);
    }
    Ok(())
}

const HEX: &[u8; 16] = b"0123456789abcdef";

pub(crate) fn push_hex(out: &mut String, bytes: &[u8]) {
    for byte in bytes {
        out.push(char::from(HEX[usize::from(byte >> 4)]));
        out.push(char::from(HEX[usize::from(byte & 0xf)]));
    }
}

/// Constant-time comparison: a tag (or any secret) must not leak byte by
/// byte.
#[must_use]
pub fn tags_equal(expected: &[u8], given: &[u8]) -> bool {
    expected.len() == given.len()
        && expected
            .iter()
            .zip(given)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

/// The `i`-th little-endian u64 of a token body.
fn word(body: &[u8], i: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&body[i * 8..i * 8 + 8]);
    u64::from_le_bytes(w)
}

fn body(claims: &QueueClaims) -> [u8; BODY_BYTES] {
    let mut body = [0u8; BODY_BYTES];
    let words = [
        claims.event.0,
        claims.fan.0,
        claims.position.0,
        claims.issued_at.0,
    ];
    for (i, word) in words.iter().enumerate() {
        body[i * 8..i * 8 + 8].copy_from_slice(&word.to_le_bytes());
    }
    body
}

fn decode_hex(text: &str) -> Option<[u8; TOKEN_BYTES]> {
    decode_hex_n(text)
}

/// `N` bytes from exactly `2 * N` lowercase hex digits.
#[must_use]
pub fn decode_hex_n<const N: usize>(text: &str) -> Option<[u8; N]> {
    let text = text.as_bytes();
    if text.len() != N * 2 {
        return None;
    }
    let nibble = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let mut out = [0u8; N];
    for (i, pair) in text.chunks_exact(2).enumerate() {
        out[i] = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims() -> QueueClaims {
        QueueClaims {
            event: EventId(7),
            fan: FanId(42),
            position: Position(1_000_003),
            issued_at: Millis(1_000),
        }
    }

    fn check(text: &str, fan: u64, now: u64) -> Result<Position, TokenError> {
        let key = TokenKey::derive(b"secret");
        verify(&key, text, EventId(7), FanId(fan), Millis(now)).map(|t| t.claims().position)
    }

    #[test]
    fn a_signed_token_verifies_for_its_fan_and_event_only() {
        let text = sign(&TokenKey::derive(b"secret"), &claims());
        assert_eq!(text.len(), QUEUE_TOKEN_CHARS);
        assert_eq!(check(&text, 42, 2_000), Ok(Position(1_000_003)));
        assert_eq!(check(&text, 43, 2_000), Err(TokenError::Mismatch));
        let late = 1_000 + limits::QUEUE_TOKEN_TTL_MS + 1;
        assert_eq!(check(&text, 42, late), Err(TokenError::Expired));
    }

    #[test]
    fn forged_and_garbled_tokens_are_refused() {
        let forged = sign(&TokenKey::derive(b"other key"), &claims());
        assert_eq!(check(&forged, 42, 2_000), Err(TokenError::BadSignature));
        let mut flipped = sign(&TokenKey::derive(b"secret"), &claims()).into_bytes();
        flipped[40] = if flipped[40] == b'0' { b'1' } else { b'0' };
        let flipped = String::from_utf8(flipped).unwrap();
        assert_eq!(check(&flipped, 42, 2_000), Err(TokenError::BadSignature));
        for junk in ["", "zz", "é", &"0".repeat(QUEUE_TOKEN_CHARS + 2)] {
            assert_eq!(check(junk, 42, 2_000), Err(TokenError::Malformed));
        }
    }

    #[test]
    fn sessions_verify_until_they_expire_and_never_as_queue_tokens() {
        let key = TokenKey::derive(b"secret");
        let claims = SessionClaims {
            fan: FanId(9_007_199_254_740_991),
            expires_at: Millis(5_000),
        };
        let text = sign_session(&key, &claims);
        assert_eq!(text.len(), SESSION_TOKEN_CHARS);
        assert_eq!(verify_session(&key, &text, Millis(4_999)), Ok(claims));
        assert_eq!(
            verify_session(&key, &text, Millis(5_000)),
            Err(TokenError::Expired)
        );
        let other = TokenKey::derive(b"other");
        assert_eq!(
            verify_session(&other, &text, Millis(1)),
            Err(TokenError::BadSignature)
        );
        // A queue token's bytes, prefixed, do not pass as a session.
        let queue = sign(&key, &claims_fixture());
        assert_eq!(
            verify_session(&key, &format!("s{}", &queue[..64]), Millis(1)),
            Err(TokenError::BadSignature)
        );
        for junk in ["", "s", "x", &text[1..], &format!("{text}0")] {
            assert_eq!(
                verify_session(&key, junk, Millis(1)),
                Err(TokenError::Malformed)
            );
        }
    }

    fn claims_fixture() -> QueueClaims {
        claims()
    }

    proptest::proptest! {
        #[test]
        fn verify_never_panics(text in ".{0,120}") {
            let _ = check(&text, 42, 2_000);
            let _ = verify_session(&TokenKey::derive(b"secret"), &text, Millis(1));
        }
    }
}
