//! Properties of the pre-queue draw over random sequences: fans join,
//! leave and come back before the opening, snapshots and crashes happen
//! before, during and after it, the sale opens by an operator's command
//! or by its scheduled time, and fans keep joining after it.
//!
//! The referee is `onsale_actors::testing::Harness`, which checks on
//! every push of drawn positions that each pre-queued fan is drawn once,
//! each position once, all above every position handed out before (so
//! later arrivals queue behind); on every admission that no fan with a
//! lower position waits; and on every restore that the durable state came
//! back exactly. These tests add: every pre-queued fan gets exactly one
//! position, and a drawn fan's position survives every crash.

use onsale_actors::testing::{Harness, grid_venue};
use onsale_schema::message::{FanStatus, HoldRequest, SaleCommand};
use onsale_schema::{EventConfig, FanId, Millis, Position, SaleState};
use proptest::prelude::*;

const FANS: u64 = 60;

#[derive(Clone, Debug)]
enum Op {
    Join(u64),
    Resume(u64),
    Leave(u64),
    /// An admitted fan shows up and holds the best seat it can.
    Shop(u64),
    Advance(u64),
    Snapshot,
    Crash,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (0..FANS).prop_map(Op::Join),
        2 => (0..FANS).prop_map(Op::Resume),
        1 => (0..FANS).prop_map(Op::Leave),
        2 => (0..FANS).prop_map(Op::Shop),
        3 => (0u64..400).prop_map(Op::Advance),
        1 => Just(Op::Snapshot),
        1 => Just(Op::Crash),
    ]
}

fn config(opens_at: Option<Millis>) -> EventConfig {
    EventConfig {
        full_factor: 20,
        shoppers_max: 3,
        show_up_window_ms: 80,
        shopping_window_ms: 300,
        checkout_window_ms: 150,
        provider_timeout_ms: 600,
        // Small blocks: the draw and later joins cross block boundaries.
        counter_block: 4,
        pre_queue_draw: true,
        opens_at,
        ..EventConfig::default()
    }
}

fn apply(h: &mut Harness, op: &Op) {
    match op {
        Op::Join(f) => {
            let _ = h.join(FanId(*f));
        }
        Op::Resume(f) => {
            let _ = h.resume(FanId(*f));
        }
        Op::Leave(f) => h.leave(FanId(*f)),
        Op::Shop(f) => {
            let fan = FanId(*f);
            if matches!(h.core.status(fan), Some(FanStatus::Admitted { .. })) {
                h.enter(fan);
                let _ = h.hold(
                    fan,
                    &HoldRequest::Best {
                        count: 1,
                        area: onsale_schema::message::Area::Anywhere,
                    },
                );
            }
        }
        Op::Advance(ms) => h.advance(*ms as i64),
        Op::Snapshot => h.snapshot(),
        Op::Crash => {
            h.crash_and_restore();
            check_drawn_kept(h);
        }
    }
}

/// Every fan told a drawn position still has it (or has had its turn).
fn check_drawn_kept(h: &Harness) {
    for (fan, position) in &h.drawn {
        match h.core.status(*fan) {
            Some(
                FanStatus::Waiting { position: p, .. } | FanStatus::Admitted { position: p, .. },
            ) => {
                assert_eq!(p, *position, "{fan} was told {position}, now {p}");
            }
            Some(
                FanStatus::Holding { .. }
                | FanStatus::Purchased { .. }
                | FanStatus::Expired
                | FanStatus::Left,
            ) => {}
            other => panic!("{fan} was drawn at {position} and is now {other:?}"),
        }
    }
}

/// Before, the opening (by command or by the clock), after; then the
/// invariants that hold at the end of any run.
fn check(before: &[Op], by_clock: bool, after: &[Op]) {
    let opens_at = by_clock.then_some(Millis(1_000_000 + 50_000));
    let mut h = Harness::new(grid_venue(2, 2, 4), config(opens_at));
    for op in before {
        apply(&mut h, op);
    }
    assert_eq!(
        h.core.sale(),
        SaleState::Scheduled,
        "ops before do not open"
    );
    for fan in &h.pre_queued {
        assert!(
            matches!(h.core.status(*fan), Some(FanStatus::PreQueued { opens_at: o }) if o == opens_at),
            "{fan} was told it is pre-queued and is now {:?}",
            h.core.status(*fan)
        );
    }
    assert_eq!(h.core.pre_queue_len(), h.pre_queued.len());
    if by_clock {
        h.advance(60_000);
    } else {
        h.sale(SaleCommand::Open).expect("a scheduled sale opens");
    }
    assert_eq!(h.core.sale(), SaleState::OnSale);
    // Every pre-queued fan got exactly one position (the harness refused
    // any drawn twice or any position drawn twice).
    assert_eq!(
        h.drawn
            .keys()
            .copied()
            .collect::<std::collections::HashSet<_>>(),
        h.pre_queued,
        "the draw gave positions to exactly the pre-queued fans"
    );
    if !h.drawn.is_empty() {
        let base = h.drawn.values().min().copied().unwrap();
        let mut positions: Vec<Position> = h.drawn.values().copied().collect();
        positions.sort_unstable();
        let expected: Vec<Position> = (0..positions.len() as u64)
            .map(|i| Position(base.0 + i))
            .collect();
        assert_eq!(positions, expected, "drawn positions are contiguous");
    }
    for op in after {
        apply(&mut h, op);
    }
    // One more crash at the end: the draw is redone identically.
    h.crash_and_restore();
    check_drawn_kept(&h);
}

fn is_pre_opening(op: &Op) -> bool {
    !matches!(op, Op::Advance(_) | Op::Shop(_))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn every_pre_queued_fan_gets_one_position_that_survives_crashes(
        before in prop::collection::vec(op().prop_filter("before the opening", is_pre_opening), 0..80),
        by_clock in any::<bool>(),
        after in prop::collection::vec(op(), 0..120),
    ) {
        check(&before, by_clock, &after);
    }
}

/// Arriving earlier in the pre-queue gives no edge: over many draws, the
/// first fan to join is first in line about as often as any other.
#[test]
fn the_order_of_joining_the_pre_queue_does_not_decide_the_order_of_positions() {
    const N: u64 = 8;
    const DRAWS: u64 = 4_000;
    let mut first_in_line = [0u64; N as usize];
    for draw in 0..DRAWS {
        let mut h = Harness::new(grid_venue(2, 2, 4), config(None));
        h.core.set_entropy(draw.wrapping_mul(0x2545_f491_4f6c_dd1d));
        for fan in 0..N {
            h.join(FanId(fan)).expect("joins the pre-queue");
        }
        h.sale(SaleCommand::Open).expect("opens");
        let (first, _) = h
            .drawn
            .iter()
            .min_by_key(|(_, p)| **p)
            .expect("someone was drawn");
        first_in_line[first.0 as usize] += 1;
    }
    // Each fan is first with probability 1/8: 500 of 4,000 expected, with
    // a standard deviation of about 21. Bounds of ±6 sigma.
    for (fan, count) in first_in_line.iter().enumerate() {
        assert!(
            (375..=625).contains(count),
            "fan {fan} was first {count} times in {DRAWS} draws (expected ~500)"
        );
    }
}

/// Fans who join after the opening queue in arrival order, behind every
/// drawn fan; a pre-queued fan rejoining keeps its drawn position.
#[test]
fn later_arrivals_queue_behind_the_draw_in_arrival_order() {
    let mut h = Harness::new(grid_venue(2, 2, 4), config(None));
    for fan in 0..10 {
        let joined = h.join(FanId(fan)).expect("pre-queued");
        assert!(matches!(
            joined.status,
            FanStatus::PreQueued { opens_at: None }
        ));
    }
    h.sale(SaleCommand::Open).expect("opens");
    let last_drawn = h.drawn.values().max().copied().unwrap();
    let mut previous = last_drawn;
    for fan in 10..15 {
        let joined = h.join(FanId(fan)).expect("joins");
        assert!(joined.position > previous, "arrival order after the draw");
        previous = joined.position;
    }
    for fan in 0..10 {
        let joined = h.join(FanId(fan)).expect("rejoins");
        assert_eq!(joined.position, h.drawn[&FanId(fan)]);
        assert!(!joined.fresh);
    }
}
