//! Proof of work at join, the gateway's side: issuing challenges and
//! checking stamps before a join reaches its event (`onsale_schema::stamp`
//! has the primitive, its byte layout and its costs).
//!
//! The difficulty is the event's (`EventOverview::stamp_bits`, pushed as
//! `Push::Stamp`): an operator's setting or the event's automatic rule,
//! the same on every gateway. A challenge is bound to the fan, the event
//! and a nonce from this gateway, and a stamp is spent here once
//! ([`SpentStamps`], bounded). A stamp replayed at another gateway gains
//! nothing: it names its fan, and a fan's second join only gets its first
//! place back.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::http::HeaderMap;
use onsale_schema::stamp::{self, Challenge, Difficulty, SpentStamps, StampRefused};
use onsale_schema::token::TokenKey;
use onsale_schema::{ErrorCode, EventId, FanId, Millis};

use crate::reply::ApiError;

/// The header a join carries its stamp in: `<challenge>.<counter>`.
pub const STAMP_HEADER: &str = "x-onsale-stamp";

/// Challenges issued and stamps spent by this gateway.
#[derive(Debug)]
pub struct StampDesk {
    /// Makes each challenge's nonce (with a count): random per process.
    nonce_key: [u8; 32],
    issued: AtomicU64,
    spent: Mutex<SpentStamps>,
}

impl Default for StampDesk {
    fn default() -> Self {
        StampDesk::new(random_key())
    }
}

impl StampDesk {
    #[must_use]
    pub fn new(nonce_key: [u8; 32]) -> StampDesk {
        StampDesk {
            nonce_key,
            issued: AtomicU64::new(0),
            spent: Mutex::new(SpentStamps::new()),
        }
    }

    /// A challenge for `fan` to join `event` with `bits` of work.
    pub fn issue(
        &self,
        key: &TokenKey,
        event: EventId,
        fan: FanId,
        bits: u8,
        now: Millis,
    ) -> String {
        let n = self.issued.fetch_add(1, Ordering::Relaxed);
        let mut nonce = [0u8; stamp::NONCE_BYTES];
        nonce.copy_from_slice(
            &blake3::keyed_hash(&self.nonce_key, &n.to_le_bytes()).as_bytes()[..stamp::NONCE_BYTES],
        );
        let challenge = Challenge {
            event,
            fan,
            difficulty: Difficulty::from_bits(bits).unwrap_or(Difficulty::NONE),
            issued_at: now,
            nonce,
        };
        stamp::issue(key, &challenge)
    }

    /// Check the stamp a join carries when `bits` of work are asked for,
    /// and spend it.
    pub fn check(
        &self,
        key: &TokenKey,
        headers: &HeaderMap,
        (event, fan): (EventId, FanId),
        bits: u8,
        now: Millis,
    ) -> Result<(), ApiError> {
        let Some(value) = headers.get(STAMP_HEADER) else {
            return Err(ApiError::new(
                ErrorCode::StampRequired,
                format!("joining now takes a proof of work of {bits} bits"),
            ));
        };
        let parsed = value
            .to_str()
            .ok()
            .and_then(|v| v.split_once('.'))
            .and_then(|(c, n)| Some((c, n.parse::<u64>().ok()?)));
        let Some((challenge, counter)) = parsed else {
            return Err(refused(StampRefused::Malformed));
        };
        let verified = stamp::verify(key, challenge, counter, event, fan, now).map_err(refused)?;
        if verified.challenge().difficulty.bits() < bits {
            // The difficulty rose since the challenge was issued.
            return Err(refused(StampRefused::Insufficient));
        }
        self.spent
            .lock()
            .expect("not poisoned")
            .spend(&verified, now)
            .map_err(refused)
    }
}

fn refused(why: StampRefused) -> ApiError {
    let code = match why {
        StampRefused::Malformed => ErrorCode::StampMalformed,
        StampRefused::Forged => ErrorCode::StampForged,
        StampRefused::WrongEvent => ErrorCode::StampWrongEvent,
        StampRefused::WrongFan => ErrorCode::StampWrongFan,
        StampRefused::Stale => ErrorCode::StampStale,
        StampRefused::Future => ErrorCode::StampFuture,
        StampRefused::Insufficient => ErrorCode::StampInsufficient,
        StampRefused::Replayed => ErrorCode::StampReplayed,
        StampRefused::Busy => ErrorCode::StampBusy,
    };
    debug_assert_eq!(code.as_str(), why.as_str());
    ApiError::new(code, why.to_string())
}

/// 32 bytes of the OS's randomness, or (if it cannot be read) of the
/// standard library's per-process random hash keys and the clock.
fn random_key() -> [u8; 32] {
    use std::io::Read;
    let mut key = [0u8; 32];
    let read = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut key));
    if read.is_err() {
        use std::hash::{BuildHasher, Hasher};
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u64(onsale_actors::clock::wall_now().0);
        key = *blake3::hash(&hasher.finish().to_le_bytes()).as_bytes();
    }
    key
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    const EVENT: EventId = EventId(3);
    const FAN: FanId = FanId(77);
    const NOW: Millis = Millis(1_800_000_000_000);

    fn with_stamp(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(STAMP_HEADER, HeaderValue::from_str(value).unwrap());
        headers
    }

    fn code(result: Result<(), ApiError>) -> Option<ErrorCode> {
        result.err().map(|e| e.code)
    }

    #[test]
    fn a_solved_stamp_passes_once_and_others_are_refused() {
        let key = TokenKey::derive(b"desk");
        let desk = StampDesk::new([7; 32]);
        let challenge = desk.issue(&key, EVENT, FAN, 8, NOW);
        let counter = stamp::solve(&challenge, 1 << 20).expect("8 bits solve fast");
        let headers = with_stamp(&format!("{challenge}.{counter}"));
        let check = |h: &HeaderMap, bits| desk.check(&key, h, (EVENT, FAN), bits, NOW);
        assert_eq!(
            code(check(&HeaderMap::new(), 8)),
            Some(ErrorCode::StampRequired)
        );
        assert_eq!(
            code(check(&with_stamp("nonsense"), 8)),
            Some(ErrorCode::StampMalformed)
        );
        assert_eq!(code(check(&headers, 9)), Some(ErrorCode::StampInsufficient));
        assert_eq!(
            code(desk.check(&key, &headers, (EVENT, FanId(78)), 8, NOW)),
            Some(ErrorCode::StampWrongFan)
        );
        assert_eq!(code(check(&headers, 8)), None);
        assert_eq!(code(check(&headers, 8)), Some(ErrorCode::StampReplayed));
        let other = TokenKey::derive(b"another cluster");
        let forged = desk.issue(&other, EVENT, FAN, 0, NOW);
        assert_eq!(
            code(check(&with_stamp(&format!("{forged}.0")), 0)),
            Some(ErrorCode::StampForged)
        );
        // Each challenge is new.
        assert_ne!(desk.issue(&key, EVENT, FAN, 8, NOW), challenge);
    }
}
