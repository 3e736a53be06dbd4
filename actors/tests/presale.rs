//! Presale codes in the event core: during the presale only fans with a
//! code join; a code makes one place in line, once, across crashes; after
//! the presale anyone joins. (The code's signature is the shell's check:
//! `onsale_schema::token::verify_presale`.)

use onsale_actors::testing::{Harness, grid_venue};
use onsale_schema::message::{FanStatus, JoinRefused, SaleCommand};
use onsale_schema::{EventConfig, FanId, Millis};

/// The harness starts its clock at 1,000,000 ms; the presale lasts 10 s.
const PRESALE_UNTIL: Millis = Millis(1_010_000);

fn presale(pre_queue_draw: bool) -> Harness {
    let config = EventConfig {
        presale_until: Some(PRESALE_UNTIL),
        pre_queue_draw,
        counter_block: 4,
        ..EventConfig::default()
    };
    Harness::new(grid_venue(2, 2, 4), config)
}

#[test]
fn during_the_presale_only_a_code_joins_and_each_code_makes_one_place() {
    // The sale opens later: fans wait (and a crash forgets them).
    let mut h = presale(false);
    assert_eq!(h.join(FanId(1)), Err(JoinRefused::CodeRequired));
    let joined = h.join_with_code(FanId(1)).expect("a code joins");
    assert!(joined.fresh);
    // The same fan again: its place, with or without the code.
    let again = h.join_with_code(FanId(1)).expect("rejoins");
    assert_eq!((again.position, again.fresh), (joined.position, false));
    assert_eq!(h.join(FanId(1)).expect("in line").position, joined.position);

    // A crash forgets the waiting fan; its code does not make a second
    // place: it comes back with its queue token.
    h.snapshot();
    h.crash_and_restore();
    assert_eq!(h.join_with_code(FanId(1)), Err(JoinRefused::CodeUsed));
    let resumed = h.resume(FanId(1)).expect("has a token").expect("resumes");
    assert_eq!(resumed.position, joined.position);

    // Another crash with the use only in the journal (no snapshot since).
    h.join_with_code(FanId(2)).expect("a second code joins");
    h.crash_and_restore();
    assert_eq!(h.join_with_code(FanId(2)), Err(JoinRefused::CodeUsed));

    // After the presale, anyone joins, with or without a code.
    h.advance(10_000);
    assert!(!h.core.in_presale());
    h.join(FanId(3)).expect("general sale");
    h.join_with_code(FanId(4))
        .expect("a code is a plain join now");
}

#[test]
fn a_presale_with_a_pre_queue_draws_the_fans_with_codes() {
    let mut h = presale(true);
    assert_eq!(h.join(FanId(7)), Err(JoinRefused::CodeRequired));
    for fan in 1..=5 {
        let joined = h.join_with_code(FanId(fan)).expect("pre-queued");
        assert!(matches!(joined.status, FanStatus::PreQueued { .. }));
    }
    h.crash_and_restore();
    assert_eq!(h.core.pre_queue_len(), 5);
    h.sale(SaleCommand::Open).expect("opens");
    assert_eq!(h.drawn.len(), 5, "every fan with a code was drawn");
    assert_eq!(h.join(FanId(7)), Err(JoinRefused::CodeRequired));
}
