//! Proof-of-work stamps for joining an event under pressure.
//!
//! When an event is under pressure the gateway answers a join with a
//! *challenge*: signed claims naming the event, the fan, a *difficulty*
//! (leading zero bits, 0 to 32, set by the operator), the time it was
//! issued and 16 random bytes. The fan's page solves it in a Web Worker
//! (`gateway/assets/stamp-worker.js`) and joins again with the challenge
//! and its *counter*: together they are the *stamp*. Solving costs the fan
//! 2^difficulty hashes on average; checking costs the gateway one keyed
//! BLAKE3 block and one SHA-256 of ~120 bytes.
//!
//! Nothing here does I/O, reads a clock or draws random numbers: the
//! gateway passes `now` and the random bytes in.
//!
//! # Text form of a challenge
//!
//! 114 lowercase hex characters, 57 bytes:
//!
//! | bytes  | hex chars | field                                       |
//! |--------|-----------|---------------------------------------------|
//! | 0..8   | 0..16     | event id, u64 little-endian                 |
//! | 8..16  | 16..32    | fan id, u64 little-endian                   |
//! | 16..24 | 32..48    | issued at, ms, u64 little-endian            |
//! | 24     | 48..50    | difficulty, leading zero bits (0..=32)      |
//! | 25..41 | 50..82    | random bytes (the nonce)                    |
//! | 41..57 | 82..114   | tag: keyed BLAKE3 of bytes 0..41, truncated |
//!
//! The tag is made with the cluster's [`TokenKey`] in a context of its own
//! (`"onsale stamp challenge v1"`), so no queue or session token verifies
//! as a challenge, nor a challenge as one of them.
//!
//! # The work (both sides hash exactly this)
//!
//! ```text
//! SHA-256( challenge || ":" || decimal(counter) )
//! ```
//!
//! `challenge` is the 114 ASCII characters of the text form above, `":"`
//! the single byte 0x3a, and `decimal(counter)` the counter (a u64; the
//! page stays below 2^53) in ASCII decimal without leading zeros ("0",
//! "7", "1048576"). The stamp is good when the digest, read as a
//! big-endian bit string, begins with at least `difficulty` zero bits.
//! Difficulty 0 asks for no work: any counter, 0 included, passes. The
//! layout is named by [`LAYOUT`], which the worker repeats word for word.
//!
//! The first 64 bytes of the input never change for a challenge, so a
//! solver compresses them once; each try then costs one SHA-256 block
//! (counters below 10,000) or two, the second holding only padding and the
//! length, whose message schedule the worker makes once per digit count.
//! A native solver can shave a little more (the first rounds of the
//! second block are fixed too); no choice of counter makes a try cheaper
//! than about one and a half compressions past 10,000 tries.
//!
//! # Checks, in order
//!
//! [`verify`]: the text decodes ([`StampRefused::Malformed`]), the tag is
//! ours ([`Forged`](StampRefused::Forged)), it names this event and fan
//! ([`WrongEvent`](StampRefused::WrongEvent),
//! [`WrongFan`](StampRefused::WrongFan)), it was issued at most
//! [`limits::STAMP_TTL_MS`] ago ([`Stale`](StampRefused::Stale)) and at
//! most [`limits::STAMP_CLOCK_SKEW_MS`] ahead
//! ([`Future`](StampRefused::Future)), and the digest has enough zero
//! bits ([`Insufficient`](StampRefused::Insufficient)). Verification
//! allocates nothing. Then [`SpentStamps::spend`] refuses a stamp whose
//! nonce it has seen ([`Replayed`](StampRefused::Replayed)), or every new
//! stamp while it is full of live ones ([`Busy`](StampRefused::Busy)).
//!
//! A spent set belongs to one gateway: behind several gateways, one
//! solution could be replayed once at each. That buys nothing a fan could
//! not have anyway, since a stamp names its fan and event and a fan's
//! second join only returns the position of the first.
//!
//! # Cost on a phone-class CPU vs a bot farm
//!
//! Measured on one core of a 2-core Xeon VM with SHA extensions, shared
//! with other work (`taskset -c 1 cargo bench -p onsale-schema --bench
//! stamp`): the gateway verifies ~1.6 M stamps/s (~0.62 µs each) and
//! verifies and spends ~1.4 M/s, against a target of 200,000. Rust solves
//! at ~8 M tries/s (`solve_tries`), and the worker, run by node 20 on the
//! same core, at ~1.1-1.7 M tries/s. Assume a desktop browser does 1-3
//! M tries/s and a phone 3-5 times less: 0.4 M/s below. The number of
//! tries is geometric: the slowest 1 fan in 100 takes 4.6 times the mean.
//!
//! | bits | mean tries | phone (0.4 M/s) | node here (1.4 M/s) | Rust core (8 M/s) |
//! |------|------------|-----------------|---------------------|-------------------|
//! | 16   | 65 k       | 0.16 s          | 47 ms               | 8 ms              |
//! | 20   | 1.0 M      | 2.6 s           | 0.75 s              | 0.13 s            |
//! | 22   | 4.2 M      | 10 s            | 3.0 s               | 0.52 s            |
//! | 24   | 17 M       | 42 s            | 12 s                | 2.1 s             |
//!
//! A stamp does not stop a bot; it prices each join, per account and per
//! event. At 20 bits one native core makes ~8 stamps/s, so 10,000
//! accounts joining one sale cost ~21 core-minutes, and joining at 1,000
//! fresh accounts a second takes ~125 cores (~500 at 22 bits), while a
//! fan on a phone waits a few seconds once. That prices out scripts on a
//! few rented machines, not a determined farm: SHA-256 is what mining
//! hardware is built for, and one high-end GPU does on the order of 10^10
//! hashes/s (~10,000 stamps/s at 20 bits). Raise the difficulty while a
//! sale is flooded and lower it after; above ~22 bits slow phones start to
//! miss [`limits::STAMP_TTL_MS`] (at 24 bits ~6% of them would). Accounts
//! and the per-fan limits behind the join stay the real defence; the
//! stamp makes each attempt cost something.

use std::collections::{BTreeMap, HashSet};

use sha2::{Digest, Sha256};

use crate::ids::{EventId, FanId, Millis};
use crate::limits;
use crate::token::{TokenKey, decode_hex_n, push_hex, tags_equal};

/// The hash layout, word for word as `gateway/assets/stamp-worker.js`
/// declares it (a test holds them together).
pub const LAYOUT: &str = "sha256(challenge ':' decimal(counter)) v1";
/// The byte between a challenge and its counter in the hashed input.
pub const SEPARATOR: u8 = b':';

/// Random bytes in a challenge.
pub const NONCE_BYTES: usize = 16;
const BODY_BYTES: usize = 8 + 8 + 8 + 1 + NONCE_BYTES;
const TAG_BYTES: usize = 16;
const CHALLENGE_BYTES: usize = BODY_BYTES + TAG_BYTES;
/// Length of a challenge's text form.
pub const CHALLENGE_CHARS: usize = CHALLENGE_BYTES * 2;

/// Domain separation: a challenge's tag never verifies as a token's.
const CONTEXT: &[u8] = b"onsale stamp challenge v1";

/// Digits of `u64::MAX`.
const DECIMAL_DIGITS_MAX: usize = 20;

/// Leading zero bits a stamp's digest must have: 0 (no work) to 32.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Difficulty(u8);

impl Difficulty {
    /// No work: any counter passes.
    pub const NONE: Difficulty = Difficulty(0);
    /// 2^32 tries, about an hour of a phone: more is never useful.
    pub const BITS_MAX: u8 = 32;

    /// `None` above [`Difficulty::BITS_MAX`].
    #[must_use]
    pub fn from_bits(bits: u8) -> Option<Difficulty> {
        (bits <= Difficulty::BITS_MAX).then_some(Difficulty(bits))
    }

    #[must_use]
    pub fn bits(self) -> u8 {
        self.0
    }

    /// Mean number of tries to solve a challenge: 2^bits.
    #[must_use]
    pub fn expected_tries(self) -> u64 {
        1 << self.0
    }

    fn is_met_by(self, digest: &[u8; 32]) -> bool {
        let head = u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]]);
        head.leading_zeros() >= u32::from(self.0)
    }
}

/// The claims of a challenge, as the gateway issues it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Challenge {
    pub event: EventId,
    pub fan: FanId,
    pub difficulty: Difficulty,
    pub issued_at: Millis,
    /// Random bytes from the caller: they make each challenge unique and
    /// name it in [`SpentStamps`].
    pub nonce: [u8; NONCE_BYTES],
}

/// A stamp whose tag, event, fan, age and work were checked. Only
/// [`verify`] makes one; [`SpentStamps::spend`] takes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct VerifiedStamp(Challenge);

impl VerifiedStamp {
    #[must_use]
    pub fn challenge(&self) -> &Challenge {
        &self.0
    }
}

/// Why a stamp was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
pub enum StampRefused {
    #[error("the stamp's challenge is malformed")]
    Malformed,
    #[error("the stamp's challenge was not issued by this cluster")]
    Forged,
    #[error("the stamp is for another event")]
    WrongEvent,
    #[error("the stamp is for another fan")]
    WrongFan,
    #[error("the stamp's challenge has expired")]
    Stale,
    #[error("the stamp's challenge was issued in the future")]
    Future,
    #[error("the stamp does not have enough leading zero bits")]
    Insufficient,
    #[error("the stamp was spent already")]
    Replayed,
    #[error("too many stamps spent recently; retry shortly")]
    Busy,
}

impl StampRefused {
    /// Every refusal, in declaration order.
    pub const ALL: &'static [StampRefused] = &[
        StampRefused::Malformed,
        StampRefused::Forged,
        StampRefused::WrongEvent,
        StampRefused::WrongFan,
        StampRefused::Stale,
        StampRefused::Future,
        StampRefused::Insufficient,
        StampRefused::Replayed,
        StampRefused::Busy,
    ];

    /// The stable code a client sees. A client answers `stamp_stale`,
    /// `stamp_future` and `stamp_replayed` by asking for a new challenge,
    /// and `stamp_busy` by retrying later; the others are bugs or forgery.
    /// Codes are never renamed or reused.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            StampRefused::Malformed => "stamp_malformed",
            StampRefused::Forged => "stamp_forged",
            StampRefused::WrongEvent => "stamp_wrong_event",
            StampRefused::WrongFan => "stamp_wrong_fan",
            StampRefused::Stale => "stamp_stale",
            StampRefused::Future => "stamp_future",
            StampRefused::Insufficient => "stamp_insufficient",
            StampRefused::Replayed => "stamp_replayed",
            StampRefused::Busy => "stamp_busy",
        }
    }
}

/// A challenge's text form, signed with the cluster's key.
#[must_use]
pub fn issue(key: &TokenKey, challenge: &Challenge) -> String {
    let body = body(challenge);
    let mut out = String::with_capacity(CHALLENGE_CHARS);
    push_hex(&mut out, &body);
    push_hex(&mut out, &key.tag_in(CONTEXT, &body));
    out
}

/// Check a stamp (a challenge's text and the fan's counter) presented by
/// `fan` joining `event` at `now`. Allocates nothing; spend the result in
/// [`SpentStamps`] before admitting the join.
pub fn verify(
    key: &TokenKey,
    challenge_text: &str,
    counter: u64,
    event: EventId,
    fan: FanId,
    now: Millis,
) -> Result<VerifiedStamp, StampRefused> {
    let (body, tag) = decode(challenge_text).ok_or(StampRefused::Malformed)?;
    if !tags_equal(&key.tag_in(CONTEXT, &body), &tag) {
        return Err(StampRefused::Forged);
    }
    let challenge = claims(&body).ok_or(StampRefused::Malformed)?;
    if challenge.event != event {
        return Err(StampRefused::WrongEvent);
    }
    if challenge.fan != fan {
        return Err(StampRefused::WrongFan);
    }
    if challenge.issued_at > now.saturating_add_ms(limits::STAMP_CLOCK_SKEW_MS) {
        return Err(StampRefused::Future);
    }
    if now.saturating_sub(challenge.issued_at) > limits::STAMP_TTL_MS {
        return Err(StampRefused::Stale);
    }
    if challenge.difficulty != Difficulty::NONE
        && !challenge
            .difficulty
            .is_met_by(&digest(challenge_text, counter))
    {
        return Err(StampRefused::Insufficient);
    }
    Ok(VerifiedStamp(challenge))
}

/// The digest of the work: SHA-256 of `challenge_text`, `":"` and the
/// counter in decimal (the module doc has the layout).
#[must_use]
pub fn digest(challenge_text: &str, counter: u64) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(challenge_text.as_bytes());
    hasher.update([SEPARATOR]);
    let mut digits = [0u8; DECIMAL_DIGITS_MAX];
    hasher.update(decimal(counter, &mut digits));
    hasher.finalize().into()
}

/// The first counter below `max_tries` that solves a challenge, trying
/// 0, 1, 2, ... as the worker does; `None` if there is none, or the text
/// is not a challenge. The tag is not checked (the solver has no key).
/// For tests and the load driver's bots.
#[must_use]
pub fn solve(challenge_text: &str, max_tries: u64) -> Option<u64> {
    let (body, _) = decode(challenge_text)?;
    let difficulty = claims(&body)?.difficulty;
    let mut prefix = Sha256::new();
    prefix.update(challenge_text.as_bytes());
    prefix.update([SEPARATOR]);
    let mut digits = [0u8; DECIMAL_DIGITS_MAX];
    (0..max_tries).find(|&counter| {
        let mut hasher = prefix.clone();
        hasher.update(decimal(counter, &mut digits));
        difficulty.is_met_by(&hasher.finalize().into())
    })
}

/// Stamps spent recently at one gateway, so that none is spent twice.
///
/// A stamp is remembered by its challenge's nonce until the challenge is
/// stale; after that [`verify`] refuses it anyway. Nonces are kept in
/// windows of issue time, one sixteenth of [`limits::STAMP_TTL_MS`] wide,
/// and a window is forgotten whole once its newest possible challenge is
/// stale: an entry outlives its challenge by at most one window.
///
/// Bounded by [`limits::SPENT_STAMPS_MAX`] (or [`SpentStamps::bounded`]).
/// When it is full of live entries a new spend is refused
/// [`StampRefused::Busy`] instead of forgetting one: a forgotten live
/// stamp could be replayed until it goes stale, so the bound would turn a
/// flood into free joins. `spend` allocates only when a window's set grows
/// (amortised) or a new window opens.
#[derive(Clone, Debug)]
pub struct SpentStamps {
    /// Nonces by window (`issued_at / WINDOW_MS`), oldest first.
    windows: BTreeMap<u64, HashSet<u128>>,
    /// Nonces in all windows.
    len: usize,
    len_max: usize,
}

/// Width of a window of [`SpentStamps`], in ms of issue time.
const WINDOW_MS: u64 = limits::STAMP_TTL_MS / 16;

impl Default for SpentStamps {
    fn default() -> Self {
        SpentStamps::new()
    }
}

impl SpentStamps {
    /// An empty set bounded by [`limits::SPENT_STAMPS_MAX`].
    #[must_use]
    pub fn new() -> SpentStamps {
        SpentStamps::bounded(limits::SPENT_STAMPS_MAX)
    }

    /// An empty set that holds at most `len_max` stamps (for tests, and
    /// gateways that want less memory than the default).
    #[must_use]
    pub fn bounded(len_max: usize) -> SpentStamps {
        SpentStamps {
            windows: BTreeMap::new(),
            len: 0,
            len_max,
        }
    }

    /// Stamps remembered, including expired ones not yet forgotten.
    #[must_use]
    pub fn len(&self) -> usize {
        self.len
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Spend a stamp at `now`: `Ok` the first time, [`StampRefused::Replayed`]
    /// after, [`StampRefused::Stale`] once its challenge has expired (even
    /// if it verified earlier), and [`StampRefused::Busy`] when the set is
    /// full of live stamps.
    pub fn spend(&mut self, stamp: &VerifiedStamp, now: Millis) -> Result<(), StampRefused> {
        let challenge = stamp.challenge();
        if now.saturating_sub(challenge.issued_at) > limits::STAMP_TTL_MS {
            return Err(StampRefused::Stale);
        }
        self.forget_stale(now);
        let window = challenge.issued_at.0 / WINDOW_MS;
        let nonce = u128::from_le_bytes(challenge.nonce);
        if self
            .windows
            .get(&window)
            .is_some_and(|set| set.contains(&nonce))
        {
            return Err(StampRefused::Replayed);
        }
        if self.len >= self.len_max {
            return Err(StampRefused::Busy);
        }
        self.windows.entry(window).or_default().insert(nonce);
        self.len += 1;
        assert!(self.len <= self.len_max);
        Ok(())
    }

    /// Drop the oldest windows while even their newest challenge is stale.
    fn forget_stale(&mut self, now: Millis) {
        while let Some(oldest) = self.windows.first_entry() {
            let newest_issue = Millis((oldest.key() + 1) * WINDOW_MS - 1);
            if now.saturating_sub(newest_issue) <= limits::STAMP_TTL_MS {
                return;
            }
            self.len -= oldest.remove().len();
        }
    }
}

fn body(challenge: &Challenge) -> [u8; BODY_BYTES] {
    let mut body = [0u8; BODY_BYTES];
    body[..8].copy_from_slice(&challenge.event.0.to_le_bytes());
    body[8..16].copy_from_slice(&challenge.fan.0.to_le_bytes());
    body[16..24].copy_from_slice(&challenge.issued_at.0.to_le_bytes());
    body[24] = challenge.difficulty.bits();
    body[25..].copy_from_slice(&challenge.nonce);
    body
}

/// The claims of a body; `None` if its difficulty is out of range.
fn claims(body: &[u8; BODY_BYTES]) -> Option<Challenge> {
    let word = |at: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&body[at..at + 8]);
        u64::from_le_bytes(w)
    };
    let mut nonce = [0u8; NONCE_BYTES];
    nonce.copy_from_slice(&body[25..]);
    Some(Challenge {
        event: EventId(word(0)),
        fan: FanId(word(8)),
        issued_at: Millis(word(16)),
        difficulty: Difficulty::from_bits(body[24])?,
        nonce,
    })
}

/// Body and tag of a text form, unchecked.
fn decode(text: &str) -> Option<([u8; BODY_BYTES], [u8; TAG_BYTES])> {
    let bytes: [u8; CHALLENGE_BYTES] = decode_hex_n(text)?;
    let mut body = [0u8; BODY_BYTES];
    let mut tag = [0u8; TAG_BYTES];
    body.copy_from_slice(&bytes[..BODY_BYTES]);
    tag.copy_from_slice(&bytes[BODY_BYTES..]);
    Some((body, tag))
}

/// `n` in ASCII decimal without leading zeros, written into the end of
/// `buf`.
fn decimal(mut n: u64, buf: &mut [u8; DECIMAL_DIGITS_MAX]) -> &[u8] {
    let mut at = DECIMAL_DIGITS_MAX;
    loop {
        at -= 1;
        buf[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[at..];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_has_no_leading_zeros() {
        let mut buf = [0u8; DECIMAL_DIGITS_MAX];
        for (n, text) in [
            (0, "0"),
            (7, "7"),
            (10, "10"),
            (1_048_576, "1048576"),
            (u64::MAX, "18446744073709551615"),
        ] {
            assert_eq!(decimal(n, &mut buf), text.as_bytes());
        }
    }

    #[test]
    fn difficulty_counts_leading_zero_bits_big_endian() {
        let mut digest = [0xffu8; 32];
        assert!(Difficulty(0).is_met_by(&digest));
        assert!(!Difficulty(1).is_met_by(&digest));
        digest[0] = 0x00;
        digest[1] = 0x0f;
        assert!(Difficulty(12).is_met_by(&digest));
        assert!(!Difficulty(13).is_met_by(&digest));
        let zero = [0u8; 32];
        assert!(Difficulty(32).is_met_by(&zero));
        assert_eq!(Difficulty::from_bits(33), None);
    }
}
