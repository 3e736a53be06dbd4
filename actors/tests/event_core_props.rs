//! Properties of `EventCore` over random operation sequences: joins,
//! resumes, leaves, holds, payments, provider answers (duplicated, late,
//! out of order), operator commands, time jumps (forward and backward),
//! snapshots and crash-restores at random points.
//!
//! The referee is `onsale_actors::testing::Harness`: after every input it
//! checks, independently of the core's bookkeeping,
//! - no seat is sold twice, and sold ≤ capacity;
//! - admissions happen in strict position order (no fan is admitted while
//!   a fan with a lower position waits);
//! - admitted fans still shopping never outnumber available tickets;
//! - positions handed out strictly increase, across restores too;
//! - a payment submitted in time and confirmed before the provider timeout
//!   is sold, even past the checkout deadline, and its seats are never
//!   re-held meanwhile; a payment submitted late is refused;
//! - every acknowledged sale survives every restore, and a restore brings
//!   back all durable state exactly.

use onsale_actors::testing::{Harness, grid_venue};
use onsale_schema::message::{Area, FanStatus, HoldRequest, ProviderAnswer, SaleCommand};
use onsale_schema::{EventConfig, FanId, PaymentId, PriceLevelIdx, SeatIdx, SectionIdx};
use proptest::prelude::*;
use proptest::strategy::ValueTree;

const FANS: u64 = 40;
const SEATS: u32 = 2 * 2 * 4;

#[derive(Clone, Debug)]
enum Op {
    Join(u64),
    Resume(u64),
    Leave(u64),
    Enter(u64),
    HoldSeats(u64, Vec<u32>),
    HoldBest(u64, u8, u8),
    Release(u64),
    Pay(u64),
    Answer(usize, bool),
    Advance(i64),
    Drift(u64),
    Sale(u8),
    /// A decisive fan: holds the best seats, pays and is confirmed at once.
    Buy(u64, u8),
    Snapshot,
    Crash,
}

fn op() -> impl Strategy<Value = Op> {
    let fan = 0..FANS;
    prop_oneof![
        6 => fan.clone().prop_map(Op::Join),
        2 => fan.clone().prop_map(Op::Resume),
        1 => fan.clone().prop_map(Op::Leave),
        2 => fan.clone().prop_map(Op::Enter),
        4 => (fan.clone(), prop::collection::vec(0..SEATS + 2, 0..5))
            .prop_map(|(f, s)| Op::HoldSeats(f, s)),
        4 => (fan.clone(), 0u8..6, 0u8..5).prop_map(|(f, n, a)| Op::HoldBest(f, n, a)),
        1 => fan.clone().prop_map(Op::Release),
        4 => fan.prop_map(Op::Pay),
        5 => (0usize..64, prop::bool::weighted(0.7)).prop_map(|(i, ok)| Op::Answer(i, ok)),
        5 => prop_oneof![
            1 => -50i64..0,
            12 => 0i64..60,
            2 => 60i64..400,
            1 => 400i64..5_000,
        ]
        .prop_map(Op::Advance),
        2 => (0u64..200).prop_map(Op::Drift),
        1 => (0u8..200).prop_map(Op::Sale),
        3 => (0..FANS, 1u8..5).prop_map(|(f, n)| Op::Buy(f, n)),
        1 => Just(Op::Snapshot),
        1 => Just(Op::Crash),
    ]
}

fn config() -> EventConfig {
    EventConfig {
        tickets_per_fan_max: 4,
        full_factor: 2,
        shoppers_max: 4,
        show_up_window_ms: 80,
        shopping_window_ms: 300,
        checkout_window_ms: 150,
        provider_timeout_ms: 600,
        counter_block: 4,
        ..EventConfig::default()
    }
}

/// Run one sequence through the harness; the harness panics on any
/// broken invariant.
fn check(ops: &[Op]) -> Harness {
    let mut h = Harness::new(grid_venue(2, 2, 4), config());
    let _ = h.sale(SaleCommand::Open);
    for op in ops {
        apply(&mut h, op);
    }
    h
}

/// Most fan operations go to a fan for whom they can succeed (an admitted
/// fan for a hold, a holding one for a payment), the rest to anyone.
fn pick(h: &Harness, f: u64, want: fn(&FanStatus) -> bool) -> u64 {
    let fitting: Vec<u64> = (0..FANS)
        .filter(|fan| h.core.status(FanId(*fan)).is_some_and(|s| want(&s)))
        .collect();
    if fitting.is_empty() || f % 4 == 3 {
        return f;
    }
    fitting[(f as usize) % fitting.len()]
}

fn admitted(s: &FanStatus) -> bool {
    matches!(s, FanStatus::Admitted { .. })
}

fn holding_any(s: &FanStatus) -> bool {
    matches!(s, FanStatus::Holding { .. })
}

fn apply(h: &mut Harness, op: &Op) {
    let op = &match op.clone() {
        Op::HoldSeats(f, s) => Op::HoldSeats(pick(h, f, admitted), s),
        Op::HoldBest(f, n, a) => Op::HoldBest(pick(h, f, admitted), n, a),
        Op::Enter(f) => Op::Enter(pick(h, f, admitted)),
        Op::Pay(f) => Op::Pay(pick(h, f, holding_any)),
        Op::Buy(f, n) => Op::Buy(pick(h, f, admitted), n),
        Op::Release(f) => Op::Release(pick(h, f, holding_any)),
        other => other,
    };
    match op {
        Op::Join(f) => {
            let _ = h.join(FanId(*f));
        }
        Op::Resume(f) => {
            let _ = h.resume(FanId(*f));
        }
        Op::Leave(f) => h.leave(FanId(*f)),
        Op::Enter(f) => h.enter(FanId(*f)),
        Op::HoldSeats(f, seats) => {
            let seats = seats.iter().map(|s| SeatIdx(*s)).collect();
            let _ = h.hold(FanId(*f), &HoldRequest::Seats { seats });
        }
        Op::HoldBest(f, count, area) => {
            let area = match area {
                0 => Area::Anywhere,
                1 => Area::Section {
                    section: SectionIdx(0),
                },
                2 => Area::Section {
                    section: SectionIdx(1),
                },
                3 => Area::PriceLevel {
                    price_level: PriceLevelIdx(1),
                },
                _ => Area::Section {
                    section: SectionIdx(9),
                },
            };
            let _ = h.hold(
                FanId(*f),
                &HoldRequest::Best {
                    count: *count,
                    area,
                },
            );
        }
        Op::Release(f) => {
            if let Some(hold) = holding(h, *f) {
                let _ = h.release(FanId(*f), hold);
            }
        }
        Op::Pay(f) => {
            if let Some(hold) = holding(h, *f) {
                let _ = h.submit_payment(FanId(*f), hold);
            }
        }
        Op::Answer(i, ok) => {
            // Answers for any payment ever requested, in any order, any
            // number of times; sometimes for one never requested.
            let requested = &h.payments_requested;
            let payment = match requested.len() {
                0 => PaymentId(*i as u64 + 1),
                n if *i < 48 => requested[n - 1 - i % n.min(3)],
                n => requested[i % n],
            };
            let answer = if *ok {
                ProviderAnswer::Confirmed
            } else {
                ProviderAnswer::Declined
            };
            let _ = h.provider_answer(payment, answer);
        }
        Op::Advance(ms) => h.advance(*ms),
        Op::Drift(ms) => h.drift(*ms),
        Op::Sale(c) => {
            // Closing ends the sale for good: keep it rare.
            let command = match c {
                0..=149 => SaleCommand::Open,
                150..=198 => SaleCommand::Pause,
                _ => SaleCommand::Close,
            };
            let _ = h.sale(command);
        }
        Op::Buy(f, n) => {
            let request = HoldRequest::Best {
                count: *n,
                area: Area::Anywhere,
            };
            if let Ok(placed) = h.hold(FanId(*f), &request)
                && let Ok(started) = h.submit_payment(FanId(*f), placed.hold)
            {
                let _ = h.provider_answer(started.payment, ProviderAnswer::Confirmed);
            }
        }
        Op::Snapshot => h.snapshot(),
        Op::Crash => h.crash_and_restore(),
    }
}

fn holding(h: &Harness, fan: u64) -> Option<onsale_schema::HoldId> {
    match h.core.status(FanId(fan)) {
        Some(FanStatus::Holding { hold, .. }) => Some(hold),
        _ => None,
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 512,
        max_shrink_iters: 4_000,
        ..ProptestConfig::default()
    })]

    #[test]
    fn invariants_hold_over_random_onsales(ops in prop::collection::vec(op(), 1..200)) {
        let h = check(&ops);
        prop_assert!(h.core.seats().sold() <= SEATS);
    }

    /// Long runs, so that sell-outs, resales after expiry and restores of
    /// busy events are common.
    #[test]
    fn invariants_hold_over_long_onsales(ops in prop::collection::vec(op(), 200..600)) {
        check(&ops);
    }
}

/// Each operation sequence is replayed twice: a pure core is deterministic.
#[test]
fn the_core_is_deterministic() {
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    for _ in 0..32 {
        let ops = prop::collection::vec(op(), 50..200)
            .new_tree(&mut runner)
            .unwrap()
            .current();
        let a = check(&ops);
        let b = check(&ops);
        assert_eq!(a.core.snapshot(), b.core.snapshot());
        assert_eq!(a.pushes, b.pushes);
        assert_eq!(a.admissions, b.admissions);
    }
}

/// The generator must reach every outcome the properties are about, or
/// they would pass vacuously.
#[test]
fn random_onsales_reach_every_outcome() {
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let (mut orders, mut admissions, mut restores, mut refunds, mut sold_out) = (0, 0, 0, 0, 0);
    for _ in 0..200 {
        let ops = prop::collection::vec(op(), 200..600)
            .new_tree(&mut runner)
            .unwrap()
            .current();
        let h = check(&ops);
        orders += h.acknowledged_orders.len();
        admissions += h.admissions.len();
        restores += h.restores;
        refunds += h.refunds.len();
        sold_out += usize::from(h.core.sale() == onsale_schema::SaleState::SoldOut);
    }
    assert!(orders > 500, "only {orders} orders");
    assert!(admissions > 2_000, "only {admissions} admissions");
    assert!(restores > 500, "only {restores} restores");
    assert!(refunds > 50, "only {refunds} refunds");
    assert!(sold_out > 20, "only {sold_out} sell-outs");
}
