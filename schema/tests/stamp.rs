//! Proof-of-work stamps: a solved stamp verifies once, for its event and
//! fan, while fresh; everything else is refused with its own code; and the
//! page's worker (`gateway/assets/stamp-worker.js`) hashes exactly what
//! the gateway checks (run under node when it is installed).

use std::collections::HashSet;
use std::process::Command;

use onsale_schema::stamp::{
    self, CHALLENGE_CHARS, Challenge, Difficulty, LAYOUT, SpentStamps, StampRefused, VerifiedStamp,
};
use onsale_schema::token::{self, QueueClaims, TokenKey};
use onsale_schema::{EventId, FanId, Millis, Position, limits};
use proptest::prelude::*;

const EVENT: EventId = EventId(7);
const FAN: FanId = FanId(42);
/// A plausible wall-clock issue time (Unix-epoch ms, late 2025).
const ISSUED: Millis = Millis(1_764_000_000_000);

fn key() -> TokenKey {
    TokenKey::derive(b"secret")
}

fn challenge(bits: u8, seed: u64) -> Challenge {
    let mut nonce = [0u8; 16];
    nonce[..8].copy_from_slice(&seed.to_le_bytes());
    nonce[8..].copy_from_slice(&(!seed).to_le_bytes());
    Challenge {
        event: EVENT,
        fan: FAN,
        difficulty: Difficulty::from_bits(bits).unwrap(),
        issued_at: ISSUED,
        nonce,
    }
}

fn issue(bits: u8, seed: u64) -> String {
    stamp::issue(&key(), &challenge(bits, seed))
}

/// The one way these tests present a stamp: `FAN` joining `EVENT`.
fn check(text: &str, counter: u64, now: Millis) -> Result<Challenge, StampRefused> {
    stamp::verify(&key(), text, counter, EVENT, FAN, now).map(|stamp| *stamp.challenge())
}

/// A verified stamp at no difficulty, issued at `issued_at`.
fn verified(seed: u64, issued_at: Millis) -> VerifiedStamp {
    let text = stamp::issue(
        &key(),
        &Challenge {
            issued_at,
            ..challenge(0, seed)
        },
    );
    stamp::verify(&key(), &text, 0, EVENT, FAN, issued_at).unwrap()
}

#[test]
fn a_solved_stamp_verifies_for_its_event_and_fan_only() {
    let text = issue(12, 1);
    assert_eq!(text.len(), CHALLENGE_CHARS);
    let counter = stamp::solve(&text, 64 << 12).expect("12 bits solve in 2^18 tries");
    assert_eq!(check(&text, counter, ISSUED), Ok(challenge(12, 1)));
    let other_fan = stamp::verify(&key(), &text, counter, EVENT, FanId(43), ISSUED);
    assert_eq!(other_fan, Err(StampRefused::WrongFan));
    let other_event = stamp::verify(&key(), &text, counter, EventId(8), FAN, ISSUED);
    assert_eq!(other_event, Err(StampRefused::WrongEvent));
}

#[test]
fn difficulty_zero_asks_for_no_work() {
    let text = issue(0, 2);
    assert_eq!(stamp::solve(&text, 1), Some(0));
    assert_eq!(check(&text, 0, ISSUED), Ok(challenge(0, 2)));
    assert_eq!(check(&text, u64::MAX, ISSUED), Ok(challenge(0, 2)));
}

#[test]
fn too_little_work_is_insufficient() {
    let text = issue(12, 3);
    let counter = stamp::solve(&text, 64 << 12).unwrap();
    assert!(counter > 0, "pick a seed whose answer is not 0");
    // The answer is the first counter that works: all before it fall short.
    for wrong in (0..counter).rev().take(100) {
        assert_eq!(check(&text, wrong, ISSUED), Err(StampRefused::Insufficient));
    }
    assert_eq!(stamp::solve(&text, counter), None);
    assert_eq!(stamp::solve(&text, counter + 1), Some(counter));
}

#[test]
fn forged_and_garbled_challenges_are_refused() {
    let forged = stamp::issue(&TokenKey::derive(b"other key"), &challenge(0, 4));
    assert_eq!(check(&forged, 0, ISSUED), Err(StampRefused::Forged));
    // Raising the clock or lowering the difficulty breaks the tag.
    let text = issue(12, 4);
    for at in [32, 48, 49, 81, 82, CHALLENGE_CHARS - 1] {
        let mut bytes = text.clone().into_bytes();
        bytes[at] = if bytes[at] == b'0' { b'1' } else { b'0' };
        let tampered = String::from_utf8(bytes).unwrap();
        assert_eq!(
            check(&tampered, 0, ISSUED),
            Err(StampRefused::Forged),
            "char {at}"
        );
    }
    let queue_token = token::sign(
        &key(),
        &QueueClaims {
            event: EVENT,
            fan: FAN,
            position: Position(1),
            issued_at: ISSUED,
        },
    );
    for junk in [
        "",
        "zz",
        "é",
        &text[1..],
        &format!("{text}0"),
        &text.to_uppercase(),
        &queue_token,
    ] {
        assert_eq!(check(junk, 0, ISSUED), Err(StampRefused::Malformed));
    }
}

#[test]
fn a_challenge_is_good_from_a_little_before_its_issue_until_its_lifetime_ends() {
    let text = issue(0, 5);
    let last = ISSUED.saturating_add_ms(limits::STAMP_TTL_MS);
    assert!(check(&text, 0, last).is_ok());
    let late = last.saturating_add_ms(1);
    assert_eq!(check(&text, 0, late), Err(StampRefused::Stale));
    let first = Millis(ISSUED.0 - limits::STAMP_CLOCK_SKEW_MS);
    assert!(check(&text, 0, first).is_ok());
    assert_eq!(
        check(&text, 0, Millis(first.0 - 1)),
        Err(StampRefused::Future)
    );
}

#[test]
fn a_stamp_is_spent_once() {
    let mut spent = SpentStamps::new();
    let stamp = verified(6, ISSUED);
    assert_eq!(spent.spend(&stamp, ISSUED), Ok(()));
    assert_eq!(spent.spend(&stamp, ISSUED), Err(StampRefused::Replayed));
    let later = ISSUED.saturating_add_ms(limits::STAMP_TTL_MS);
    assert_eq!(spent.spend(&stamp, later), Err(StampRefused::Replayed));
    // Verified while fresh, spent too late: refused all the same.
    let past = later.saturating_add_ms(1);
    assert_eq!(spent.spend(&stamp, past), Err(StampRefused::Stale));
    assert_eq!(spent.spend(&verified(7, ISSUED), ISSUED), Ok(()));
    assert_eq!(spent.len(), 2);
}

#[test]
fn a_full_spent_set_refuses_rather_than_forget_a_live_stamp() {
    let mut spent = SpentStamps::bounded(4);
    for seed in 0..4 {
        assert_eq!(spent.spend(&verified(seed, ISSUED), ISSUED), Ok(()));
    }
    let last_live = ISSUED.saturating_add_ms(limits::STAMP_TTL_MS);
    let newcomer = verified(100, last_live);
    assert_eq!(spent.spend(&newcomer, last_live), Err(StampRefused::Busy));
    assert_eq!(
        spent.spend(&verified(0, ISSUED), last_live),
        Err(StampRefused::Replayed)
    );
    // Once every remembered challenge is stale (at most a window past its
    // lifetime), the set has room again.
    let all_stale = last_live.saturating_add_ms(limits::STAMP_TTL_MS / 16);
    let newcomer = verified(100, all_stale);
    assert_eq!(spent.spend(&newcomer, all_stale), Ok(()));
    assert_eq!(spent.len(), 1);
}

#[test]
fn refusal_codes_are_stable_and_distinct() {
    let codes: Vec<&str> = StampRefused::ALL.iter().map(|r| r.as_str()).collect();
    assert_eq!(
        codes,
        [
            "stamp_malformed",
            "stamp_forged",
            "stamp_wrong_event",
            "stamp_wrong_fan",
            "stamp_stale",
            "stamp_future",
            "stamp_insufficient",
            "stamp_replayed",
            "stamp_busy",
        ]
    );
    let distinct: HashSet<&str> = codes.iter().copied().collect();
    assert_eq!(distinct.len(), codes.len());
}

#[test]
fn difficulty_is_at_most_32_bits() {
    assert_eq!(Difficulty::from_bits(32).map(Difficulty::bits), Some(32));
    assert_eq!(Difficulty::from_bits(33), None);
    assert_eq!(Difficulty::from_bits(20).unwrap().expected_tries(), 1 << 20);
    assert_eq!(Difficulty::NONE.expected_tries(), 1);
}

const WORKER: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../gateway/assets/stamp-worker.js"
);

#[test]
fn the_worker_declares_the_same_layout() {
    let source = std::fs::read_to_string(WORKER).expect("gateway/assets/stamp-worker.js exists");
    for line in [
        format!("const LAYOUT = \"{LAYOUT}\";"),
        format!("const CHALLENGE_CHARS = {CHALLENGE_CHARS};"),
        "const SEPARATOR = 0x3a; // ':'".to_owned(),
        "const DIFFICULTY_AT = 48;".to_owned(),
        format!("const DIFFICULTY_BITS_MAX = {};", Difficulty::BITS_MAX),
    ] {
        assert!(source.contains(&line), "the worker lacks `{line}`");
    }
    assert_eq!(stamp::SEPARATOR, 0x3a);
    // The difficulty byte sits where the worker reads it.
    assert_eq!(&issue(0x1c, 9)[48..50], "1c");
}

/// Loads the worker into a bare context (`self`, `postMessage`), then runs
/// each job: `digest:<challenge>:<counter>` prints the digest in hex;
/// `walk:<challenge>:<counter>` counts up ten times in place from the
/// counter as the solver does, printing each digest (comma-separated);
/// `solve:<challenge>:<difficulty or empty>` prints the messages posted
/// as one JSON array.
const NODE_HARNESS: &str = r"
const fs = require('fs');
const vm = require('vm');
const [path, ...jobs] = process.argv.slice(1);
const posted = [];
const context = { postMessage: (message) => posted.push(message) };
context.self = context;
vm.createContext(context);
vm.runInContext(fs.readFileSync(path, 'utf8'), context, { filename: path });
for (const job of jobs) {
  const [kind, challenge, n] = job.split(':');
  if (kind === 'digest') {
    console.log(context.stampDigestHex(challenge, Number(n)));
    continue;
  }
  if (kind === 'walk') {
    const s = context.makeSolver(challenge);
    context.setCounter(s, Number(n));
    const digests = [];
    for (let i = 0; i < 10; i++) {
      context.hash(s);
      digests.push(Array.from(s.state, (x) => (x >>> 0).toString(16).padStart(8, '0')).join(''));
      context.increment(s);
    }
    console.log(digests.join(','));
    continue;
  }
  posted.length = 0;
  context.onmessage({ data: { challenge, difficulty: n === '' ? undefined : Number(n) } });
  console.log(JSON.stringify(posted));
}
";

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn the_worker_solves_exactly_as_rust_does_under_node() {
    if let Err(why) = Command::new("node").arg("--version").output() {
        eprintln!("skipped: cannot run node ({why}); the layout test still holds");
        return;
    }
    // Counters around every change of digit count, including the one
    // where the input grows from two SHA-256 blocks to three (10,000) and
    // the one where digits spill into the third block (14 digits).
    let digest_counters = [
        0u64,
        9,
        10,
        99,
        9_999,
        10_000,
        123_456,
        1_234_567_890_123,
        12_345_678_901_234,
        9_007_199_254_740_991,
    ];
    let first = issue(12, 10);
    let mut jobs: Vec<String> = digest_counters
        .iter()
        .map(|counter| format!("digest:{first}:{counter}"))
        .collect();
    // Counting up in place across the same changes.
    let walks = [0u64, 95, 9_995, 9_999_999_999_995, 99_999_999_999_995];
    jobs.extend(walks.iter().map(|start| format!("walk:{first}:{start}")));
    // A 16-bit challenge whose answer is past 50,000 tries shows progress.
    let slow = (0..)
        .map(|seed| issue(16, 1_000 + seed))
        .find(|text| stamp::solve(text, 1 << 24).unwrap() >= 50_000)
        .unwrap();
    let solves = [
        issue(0, 11),
        issue(8, 12),
        issue(12, 13),
        issue(12, 14),
        slow,
    ];
    jobs.extend(solves.iter().map(|text| format!("solve:{text}:")));
    jobs.push(format!("solve:{}:12", solves[2]));
    jobs.push(format!("solve:{}:13", solves[2]));
    jobs.push(format!("solve:{}:", &first[1..]));

    let output = Command::new("node")
        .args(["-e", NODE_HARNESS, "--", WORKER])
        .args(&jobs)
        .output()
        .expect("node runs");
    assert!(
        output.status.success(),
        "node failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout).unwrap();
    let mut lines = stdout.lines();

    for counter in digest_counters {
        let rust = hex(&stamp::digest(&first, counter));
        assert_eq!(
            lines.next(),
            Some(rust.as_str()),
            "digest of counter {counter}"
        );
    }
    for start in walks {
        let rust: Vec<String> = (start..start + 10)
            .map(|counter| hex(&stamp::digest(&first, counter)))
            .collect();
        assert_eq!(
            lines.next(),
            Some(rust.join(",").as_str()),
            "walk from {start}"
        );
    }
    for text in solves.iter().chain([&solves[2]]) {
        let counter = stamp::solve(text, 1 << 24).unwrap();
        let progress = (1..=counter / 50_000).map(|k| format!(r#"{{"tries":{}}}"#, k * 50_000));
        let answer = format!(r#"{{"counter":{counter},"tries":{}}}"#, counter + 1);
        let expected = format!(
            "[{}]",
            progress.chain([answer]).collect::<Vec<_>>().join(",")
        );
        assert_eq!(lines.next(), Some(expected.as_str()));
        assert_eq!(check(text, counter, ISSUED).map(|_| ()), Ok(()));
    }
    for _refused in 0..2 {
        let line = lines.next().unwrap();
        assert!(line.starts_with(r#"[{"error":"#), "{line}");
    }
    assert_eq!(lines.next(), None);
}

proptest! {
    #[test]
    fn verify_never_panics(text in ".{0,130}", counter: u64, now: u64) {
        let _ = check(&text, counter, Millis(now));
        let _ = stamp::solve(&text, 4);
    }

    #[test]
    fn any_challenge_solves_in_bounded_tries_and_binds_its_claims(
        event: u64,
        fan: u64,
        bits in 0u8..=12,
        issued_at in 0u64..1 << 50,
        age in 0u64..=limits::STAMP_TTL_MS,
        nonce: [u8; 16],
    ) {
        let claims = Challenge {
            event: EventId(event),
            fan: FanId(fan),
            difficulty: Difficulty::from_bits(bits).unwrap(),
            issued_at: Millis(issued_at),
            nonce,
        };
        let text = stamp::issue(&key(), &claims);
        // Failing to solve within 64 times the mean has odds e^-64.
        let counter = stamp::solve(&text, 64 << bits).expect("solves");
        let now = Millis(issued_at + age);
        let verify = |event, fan| stamp::verify(&key(), &text, counter, event, fan, now);
        prop_assert_eq!(verify(EventId(event), FanId(fan)).map(|s| *s.challenge()), Ok(claims));
        prop_assert_eq!(
            verify(EventId(event ^ 1), FanId(fan)),
            Err(StampRefused::WrongEvent)
        );
        prop_assert_eq!(verify(EventId(event), FanId(fan ^ 1)), Err(StampRefused::WrongFan));
    }

    #[test]
    fn changing_any_character_of_a_challenge_is_forgery(
        at in 0..CHALLENGE_CHARS,
        shift in 1u8..16,
    ) {
        let text = issue(0, 20);
        let mut bytes = text.into_bytes();
        let digit = u8::try_from(char::from(bytes[at]).to_digit(16).unwrap()).unwrap();
        bytes[at] = b"0123456789abcdef"[usize::from((digit + shift) % 16)];
        let tampered = String::from_utf8(bytes).unwrap();
        prop_assert_eq!(check(&tampered, 0, ISSUED), Err(StampRefused::Forged));
    }

    #[test]
    fn each_nonce_is_spent_once(seeds in proptest::collection::vec(0u64..64, 1..200)) {
        let mut spent = SpentStamps::new();
        let mut seen = HashSet::new();
        for seed in seeds {
            let expected = if seen.insert(seed) { Ok(()) } else { Err(StampRefused::Replayed) };
            prop_assert_eq!(spent.spend(&verified(seed, ISSUED), ISSUED), expected);
        }
        prop_assert_eq!(spent.len(), seen.len());
    }
}
