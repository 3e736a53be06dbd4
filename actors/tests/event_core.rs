//! Example-based tests of `EventCore`, one module per area of the design's
//! "The event actor: behaviour that must hold": waiting room, admission
//! windows, seats, checkout and payment, the sale, snapshots.
//!
//! Most tests drive the core through `Harness`, which referees every
//! invariant after each input; tests that need the raw effects (counter
//! blocks, payment requests, journal records) drive `EventCore` directly
//! and check its invariants through `settle`. Each area exercises the API
//! through one small helper, so a change of signature is fixed in one place.

use std::sync::Arc;

use onsale_actors::testing::{Harness, grid_venue};
use onsale_actors::{Effect, EventCore};
use onsale_schema::message::{
    DeclineReason, FanStatus, HoldPlaced, HoldRejected, HoldRequest, JoinRefused, Push, SaleCommand,
};
use onsale_schema::venue::Venue;
use onsale_schema::{
    EventConfig, EventId, FanId, HoldId, Millis, OrderId, PaymentId, Position, SaleState, SeatIdx,
    SectionIdx,
};

/// The harness starts every event at this instant.
const T0: Millis = Millis(1_000_000);
const EVENT: EventId = EventId(1);

const SHOW_UP_MS: u64 = 1_000;
const SHOPPING_MS: u64 = 10_000;
const CHECKOUT_MS: u64 = 5_000;
const PROVIDER_MS: u64 = 60_000;

/// Short windows and a small counter block, so that tests see every edge.
fn config() -> EventConfig {
    EventConfig {
        show_up_window_ms: SHOW_UP_MS,
        shopping_window_ms: SHOPPING_MS,
        checkout_window_ms: CHECKOUT_MS,
        provider_timeout_ms: PROVIDER_MS,
        counter_block: 10,
        ..EventConfig::default()
    }
}

fn at(delta_ms: u64) -> Millis {
    T0.saturating_add_ms(delta_ms)
}

/// An event on sale, refereed by the harness.
fn on_sale(venue: Arc<Venue>, config: EventConfig) -> Harness {
    let mut h = Harness::new(venue, config);
    assert_eq!(h.sale(SaleCommand::Open), Ok(SaleState::OnSale));
    h
}

/// Fans join in this order; each must get in.
fn join_all(h: &mut Harness, fans: &[u64]) {
    for fan in fans {
        h.join(FanId(*fan)).expect("fan joins");
    }
}

fn status(h: &Harness, fan: u64) -> Option<FanStatus> {
    h.core.status(FanId(fan))
}

fn is_admitted(h: &Harness, fan: u64) -> bool {
    matches!(status(h, fan), Some(FanStatus::Admitted { .. }))
}

fn pushes_since(h: &Harness, mark: usize) -> Vec<Push> {
    h.pushes[mark..].to_vec()
}

fn seats(indices: &[u32]) -> Vec<SeatIdx> {
    indices.iter().copied().map(SeatIdx).collect()
}

fn seat_list(indices: &[u32]) -> HoldRequest {
    HoldRequest::Seats {
        seats: seats(indices),
    }
}

fn available(h: &Harness, seat: u32) -> bool {
    let section = h.core.venue().section_of(SeatIdx(seat));
    h.core
        .section_seats(section)
        .expect("seat's section exists")
        .is_available(SeatIdx(seat))
}

/// Drain a directly driven core like a shell would (counter blocks are
/// confirmed at once), check its invariants, and return what it asked for.
fn settle(core: &mut EventCore) -> Vec<Effect> {
    let mut all = Vec::new();
    loop {
        let effects: Vec<Effect> = core.drain_effects().collect();
        if effects.is_empty() {
            break;
        }
        for effect in &effects {
            if let Effect::ReserveCounter { ceiling } = effect {
                core.counter_durable(*ceiling);
            }
        }
        all.extend(effects);
    }
    core.check_invariants().expect("invariants hold");
    all
}

/// A directly driven event, counter durable, on sale.
fn open_core(venue: Arc<Venue>, config: EventConfig) -> EventCore {
    let mut core = EventCore::new(EVENT, venue, config, T0).expect("valid config");
    settle(&mut core);
    assert_eq!(
        core.sale_command(SaleCommand::Open, T0),
        Ok(SaleState::OnSale)
    );
    settle(&mut core);
    core
}

mod waiting_room {
    use onsale_schema::message::ProviderAnswer;
    use onsale_schema::token::{QueueClaims, TokenKey, sign, verify};

    use super::*;

    /// Join `fan`: its position, or why it was refused.
    fn join(h: &mut Harness, fan: u64) -> Result<u64, JoinRefused> {
        h.join(FanId(fan)).map(|joined| joined.position.0)
    }

    #[test]
    fn rejoining_keeps_the_first_position() {
        let mut h = Harness::new(grid_venue(1, 2, 4), config());
        assert_eq!(join(&mut h, 7), Ok(1));
        assert_eq!(join(&mut h, 8), Ok(2));
        let again = h.join(FanId(7)).unwrap();
        assert_eq!(again.position, Position(1));
        assert!(!again.fresh);
        assert_eq!(
            again.status,
            FanStatus::Waiting {
                position: Position(1),
                ahead: 0
            }
        );
        assert_eq!(h.core.waiting(), 2);
        assert_eq!(join(&mut h, 9), Ok(3));
    }

    #[test]
    fn admission_is_strict_fifo_by_position() {
        let config = EventConfig {
            shoppers_max: 1,
            ..config()
        };
        let mut h = on_sale(grid_venue(1, 2, 4), config);
        join_all(&mut h, &[5, 3, 9]);
        assert_eq!(h.admissions, [(FanId(5), Position(1))]);
        let _ = h.join(FanId(9)); // rejoining does not jump the line
        h.leave(FanId(5));
        h.leave(FanId(3));
        assert_eq!(
            h.admissions,
            [
                (FanId(5), Position(1)),
                (FanId(3), Position(2)),
                (FanId(9), Position(3)),
            ]
        );
        assert_eq!(h.core.admitted_through(), Position(3));
    }

    #[test]
    fn shopper_cap_limits_admissions() {
        let config = EventConfig {
            shoppers_max: 2,
            ..config()
        };
        let mut h = on_sale(grid_venue(1, 2, 4), config);
        join_all(&mut h, &[1, 2, 3, 4, 5]);
        assert_eq!(h.core.shopping(), 2);
        assert_eq!(h.core.waiting(), 3);
        assert_eq!(h.core.admitted_through(), Position(2));
        assert_eq!(
            status(&h, 3),
            Some(FanStatus::Waiting {
                position: Position(3),
                ahead: 0
            })
        );
    }

    #[test]
    fn never_more_fans_shopping_than_tickets_available() {
        let mut h = on_sale(grid_venue(1, 1, 4), config());
        join_all(&mut h, &[1, 2, 3, 4, 5, 6]);
        assert_eq!(h.admissions.len(), 4);
        assert_eq!(h.core.shopping(), 4);
        assert!(!is_admitted(&h, 5) && !is_admitted(&h, 6));
        h.leave(FanId(2));
        assert!(is_admitted(&h, 5));
        assert!(!is_admitted(&h, 6));
    }

    #[test]
    fn full_at_full_factor_times_unsold() {
        // Scheduled: nobody is admitted, so every joiner waits. 4 seats × 3.
        let mut h = Harness::new(grid_venue(1, 1, 4), config());
        for fan in 1..=11 {
            assert_eq!(join(&mut h, fan), Ok(fan));
        }
        assert!(!h.pushes.contains(&Push::Full { full: true }));
        let mark = h.pushes.len();
        assert_eq!(join(&mut h, 12), Ok(12));
        assert_eq!(pushes_since(&h, mark), [Push::Full { full: true }]);
        assert!(h.core.overview().full);
        assert_eq!(join(&mut h, 13), Err(JoinRefused::Full));
        assert_eq!(
            join(&mut h, 5),
            Ok(5),
            "a fan already in line is not turned away"
        );

        let mark = h.pushes.len();
        h.leave(FanId(3));
        assert_eq!(pushes_since(&h, mark), [Push::Full { full: false }]);
        assert_eq!(join(&mut h, 13), Ok(13));
    }

    #[test]
    fn sold_out_refuses_joins_and_is_pushed() {
        let mut h = on_sale(grid_venue(1, 1, 2), config());
        join_all(&mut h, &[1, 2, 3]);
        for (fan, seat) in [(1, 0), (2, 1)] {
            let placed = h.hold(FanId(fan), &seat_list(&[seat])).unwrap();
            let started = h.submit_payment(FanId(fan), placed.hold).unwrap();
            let _ = h.provider_answer(started.payment, ProviderAnswer::Confirmed);
        }
        assert_eq!(h.core.sale(), SaleState::SoldOut);
        assert_eq!(h.pushes.iter().filter(|p| **p == Push::SoldOut).count(), 1);
        assert_eq!(
            status(&h, 3),
            Some(FanStatus::Left),
            "the waiting fan was sent away"
        );
        assert_eq!(join(&mut h, 4), Err(JoinRefused::SoldOut));
    }

    #[test]
    fn closed_refuses_joins() {
        let mut h = Harness::new(grid_venue(1, 1, 4), config());
        assert_eq!(
            join(&mut h, 1),
            Ok(1),
            "fans may queue before the sale opens"
        );
        assert_eq!(h.sale(SaleCommand::Close), Ok(SaleState::Closed));
        assert_eq!(join(&mut h, 2), Err(JoinRefused::Closed));
    }

    #[test]
    fn busy_until_the_counter_block_is_durable() {
        let mut core = EventCore::new(EVENT, grid_venue(1, 1, 4), config(), T0).unwrap();
        let effects: Vec<Effect> = core.drain_effects().collect();
        assert_eq!(
            effects,
            [Effect::ReserveCounter {
                ceiling: Position(11)
            }]
        );
        assert_eq!(core.join(FanId(1), T0), Err(JoinRefused::Busy));
        let effects: Vec<Effect> = core.drain_effects().collect();
        assert_eq!(effects, [], "the block is asked for once");
        core.counter_durable(Position(11));
        assert_eq!(core.join(FanId(1), T0).map(|j| j.position), Ok(Position(1)));
        core.check_invariants().unwrap();
    }

    #[test]
    fn a_failed_counter_reservation_is_asked_again() {
        let mut core = EventCore::new(EVENT, grid_venue(1, 1, 4), config(), T0).unwrap();
        let asked = [Effect::ReserveCounter {
            ceiling: Position(11),
        }];
        assert_eq!(core.drain_effects().collect::<Vec<_>>(), asked);
        core.counter_reservation_failed();
        assert_eq!(core.drain_effects().collect::<Vec<_>>(), asked);
        assert_eq!(core.join(FanId(1), T0), Err(JoinRefused::Busy));
    }

    #[test]
    fn positions_after_a_restore_continue_above_the_stored_ceiling() {
        let mut h = Harness::new(grid_venue(1, 1, 4), config());
        for fan in 1..=6 {
            assert_eq!(join(&mut h, fan), Ok(fan));
        }
        // Joining past half the block reserved the next one: ceiling 21.
        h.crash_and_restore();
        assert_eq!(join(&mut h, 100), Ok(21));
        assert_eq!(join(&mut h, 101), Ok(22));
    }

    /// A core on sale with one shopper slot: fan 1 shops, fans 2 and 3 wait.
    fn line_of_three() -> EventCore {
        let config = EventConfig {
            shoppers_max: 1,
            ..config()
        };
        let mut core = open_core(grid_venue(1, 1, 4), config);
        for fan in 1..=3 {
            core.join(FanId(fan), T0).unwrap();
            settle(&mut core);
        }
        core
    }

    fn token(key: &TokenKey, event: EventId, fan: u64, position: u64) -> String {
        let claims = QueueClaims {
            event,
            fan: FanId(fan),
            position: Position(position),
            issued_at: T0,
        };
        sign(key, &claims)
    }

    #[test]
    fn resume_after_restore_gets_the_old_position_back() {
        let key = TokenKey::derive(b"event core tests");
        let core = line_of_three();
        let token2 = token(&key, EVENT, 2, 2);
        let snapshot = core.snapshot();

        let mut core =
            EventCore::restore(grid_venue(1, 1, 4), &snapshot, snapshot.counter_ceiling).unwrap();
        settle(&mut core);
        assert_eq!(core.waiting(), 2, "fans 2 and 3 are expected back");
        let late = core.join(FanId(4), at(1)).unwrap();
        assert_eq!(late.position, Position(11));
        settle(&mut core);

        let verified = verify(&key, &token2, EVENT, FanId(2), at(2)).unwrap();
        let back = core.resume(&verified, at(2)).unwrap();
        assert_eq!(back.position, Position(2));
        settle(&mut core);

        core.leave(FanId(1), at(3));
        settle(&mut core);
        assert!(matches!(
            core.status(FanId(2)),
            Some(FanStatus::Admitted {
                position: Position(2),
                ..
            })
        ));
        assert!(matches!(
            core.status(FanId(4)),
            Some(FanStatus::Waiting {
                position: Position(11),
                ..
            })
        ));
    }

    #[test]
    fn a_token_for_another_event_or_an_unissued_position_is_invalid() {
        let key = TokenKey::derive(b"event core tests");
        let mut core = line_of_three();
        let cases = [(EventId(2), 2), (EVENT, 4), (EVENT, 1_000), (EVENT, 0)];
        for (event, position) in cases {
            let text = token(&key, event, 2, position);
            let verified = verify(&key, &text, event, FanId(2), T0).unwrap();
            assert_eq!(
                core.resume(&verified, T0),
                Err(JoinRefused::InvalidToken),
                "{event} at position {position}"
            );
            settle(&mut core);
        }
        assert!(matches!(
            core.status(FanId(2)),
            Some(FanStatus::Waiting {
                position: Position(2),
                ..
            })
        ));
    }
}

mod admission {
    use super::*;

    /// An event on sale with one shopper slot, and `fans` joined in order.
    fn line(fans: &[u64]) -> Harness {
        let config = EventConfig {
            shoppers_max: 1,
            ..config()
        };
        let mut h = on_sale(grid_venue(1, 2, 4), config);
        join_all(&mut h, fans);
        h
    }

    #[test]
    fn a_no_show_lapses_and_frees_the_slot() {
        let mut h = line(&[1, 2]);
        h.advance(SHOW_UP_MS as i64 - 1);
        assert!(is_admitted(&h, 1));
        assert!(matches!(status(&h, 2), Some(FanStatus::Waiting { .. })));
        h.advance(1);
        assert_eq!(status(&h, 1), Some(FanStatus::Expired));
        assert!(h.pushes.contains(&Push::AdmissionExpired { fan: FanId(1) }));
        assert_eq!(
            status(&h, 2),
            Some(FanStatus::Admitted {
                position: Position(2),
                shopping_until: at(SHOW_UP_MS + SHOPPING_MS),
            })
        );
        assert_eq!(
            h.hold(FanId(1), &seat_list(&[0])),
            Err(HoldRejected::AdmissionExpired)
        );
    }

    #[test]
    fn a_fan_who_entered_but_holds_nothing_lapses_after_the_shopping_window() {
        let mut h = line(&[1, 2]);
        h.advance(500);
        h.enter(FanId(1));
        h.advance(SHOW_UP_MS as i64 - 500);
        assert!(
            is_admitted(&h, 1),
            "a fan who showed up keeps the shopping window"
        );
        h.advance((SHOPPING_MS - SHOW_UP_MS) as i64 - 1);
        assert!(is_admitted(&h, 1));
        h.advance(1);
        assert_eq!(status(&h, 1), Some(FanStatus::Expired));
        assert!(is_admitted(&h, 2));
    }

    #[test]
    fn a_waiting_fan_who_leaves_is_skipped() {
        let mut h = line(&[1, 2, 3]);
        h.leave(FanId(2));
        assert_eq!(status(&h, 2), Some(FanStatus::Left));
        assert_eq!(h.core.waiting(), 1);
        h.advance(SHOW_UP_MS as i64);
        assert_eq!(
            h.admissions,
            [(FanId(1), Position(1)), (FanId(3), Position(3))]
        );
        assert_eq!(status(&h, 2), Some(FanStatus::Left));
    }

    #[test]
    fn an_admitted_fan_who_leaves_frees_the_slot_at_once() {
        let mut h = line(&[1, 2]);
        h.leave(FanId(1));
        assert_eq!(status(&h, 1), Some(FanStatus::Expired));
        assert!(is_admitted(&h, 2));
    }

    #[test]
    fn leaving_an_admitted_turn_and_resuming_does_not_buy_a_new_turn() {
        let mut h = line(&[1, 2]);
        h.leave(FanId(1));
        let resumed = h.resume(FanId(1));
        assert!(
            !matches!(resumed, Some(Ok(ref j)) if matches!(j.status, FanStatus::Waiting { .. } | FanStatus::Admitted { .. })),
            "{resumed:?}"
        );
        assert_eq!(status(&h, 1), Some(FanStatus::Expired));
        assert!(is_admitted(&h, 2));
    }
}

mod seats {
    use onsale_schema::PriceLevelIdx;
    use onsale_schema::message::Area;

    use super::*;

    /// Two sections of 4 rows × 10 seats: section 0 is seats 0..40, row r
    /// of it seats 10r..10r+10; rows 0 and 1 of each section are "front".
    fn venue() -> Arc<Venue> {
        grid_venue(2, 4, 10)
    }

    /// `fans` fans admitted to an event on sale over `venue`.
    fn admitted(venue: Arc<Venue>, fans: u64) -> Harness {
        let mut h = on_sale(venue, config());
        join_all(&mut h, &(1..=fans).collect::<Vec<_>>());
        h
    }

    /// Ask for a hold: the seats held, or why not.
    fn hold(h: &mut Harness, fan: u64, request: &HoldRequest) -> Result<Vec<u32>, HoldRejected> {
        h.hold(FanId(fan), request)
            .map(|placed| placed.seats.iter().map(|s| s.0).collect())
    }

    fn best(count: u8, area: Area) -> HoldRequest {
        HoldRequest::Best { count, area }
    }

    #[test]
    fn hold_by_seat_list() {
        let mut h = admitted(venue(), 1);
        let placed = h.hold(FanId(1), &seat_list(&[4, 3])).unwrap();
        assert_eq!(
            placed,
            HoldPlaced {
                hold: HoldId(1),
                seats: seats(&[3, 4]),
                deadline: at(CHECKOUT_MS),
                total_cents: 24_000,
            }
        );
        assert_eq!(
            status(&h, 1),
            Some(FanStatus::Holding {
                hold: HoldId(1),
                deadline: at(CHECKOUT_MS),
                paying: false
            })
        );
    }

    #[test]
    fn one_taken_seat_rejects_the_whole_hold_with_the_nearest_block_in_the_row() {
        let mut h = admitted(venue(), 2);
        assert_eq!(hold(&mut h, 1, &seat_list(&[4, 5])), Ok(vec![4, 5]));
        assert_eq!(
            hold(&mut h, 2, &seat_list(&[3, 4])),
            Err(HoldRejected::SeatsUnavailable {
                taken: seats(&[4]),
                alternative: Some(seats(&[2, 3])),
            })
        );
        assert!(available(&h, 3), "nothing was held");
        assert_eq!(h.core.overview().held, 2);
        assert!(is_admitted(&h, 2));
    }

    #[test]
    fn the_alternative_comes_from_the_next_row_when_the_row_is_full() {
        let mut h = admitted(venue(), 4);
        assert!(hold(&mut h, 1, &seat_list(&[0, 1, 2, 3])).is_ok());
        assert!(hold(&mut h, 2, &seat_list(&[4, 5, 6, 7])).is_ok());
        assert!(hold(&mut h, 3, &seat_list(&[8, 9])).is_ok());
        assert_eq!(
            hold(&mut h, 4, &seat_list(&[5, 6])),
            Err(HoldRejected::SeatsUnavailable {
                taken: seats(&[5, 6]),
                alternative: Some(seats(&[15, 16])),
            })
        );
        assert!(available(&h, 15) && available(&h, 16));
    }

    #[test]
    fn best_seats_are_front_rows_first_and_centred() {
        let mut h = admitted(venue(), 5);
        let section = |s| Area::Section {
            section: SectionIdx(s),
        };
        assert_eq!(hold(&mut h, 1, &best(3, section(1))), Ok(vec![43, 44, 45]));
        assert_eq!(
            hold(&mut h, 2, &best(4, Area::Anywhere)),
            Ok(vec![3, 4, 5, 6])
        );
        // Row 0 of section 0 has no 4 adjacent left; row 0 of section 1 does.
        assert_eq!(
            hold(&mut h, 3, &best(4, Area::Anywhere)),
            Ok(vec![46, 47, 48, 49])
        );
        assert_eq!(
            hold(&mut h, 4, &best(4, section(0))),
            Ok(vec![13, 14, 15, 16])
        );
        let back = Area::PriceLevel {
            price_level: PriceLevelIdx(1),
        };
        assert_eq!(hold(&mut h, 5, &best(2, back)), Ok(vec![24, 25]));
        assert_eq!(h.core.venue().price_cents(SeatIdx(24)), 6_000);
    }

    #[test]
    fn best_seats_need_a_row_with_that_many_adjacent() {
        let mut h = admitted(grid_venue(1, 2, 3), 1);
        assert_eq!(
            hold(&mut h, 1, &best(4, Area::Anywhere)),
            Err(HoldRejected::NotEnoughSeats)
        );
        assert_eq!(
            hold(
                &mut h,
                1,
                &best(
                    2,
                    Area::Section {
                        section: SectionIdx(7)
                    }
                )
            ),
            Err(HoldRejected::UnknownArea)
        );
        assert_eq!(h.core.overview().held, 0);
    }

    #[test]
    fn malformed_requests_are_refused() {
        let mut h = admitted(venue(), 1);
        let cases = [
            (
                seat_list(&[3, 999]),
                HoldRejected::UnknownSeat { seat: SeatIdx(999) },
            ),
            (seat_list(&[3, 3]), HoldRejected::BadRequest),
            (seat_list(&[]), HoldRejected::BadRequest),
            (best(0, Area::Anywhere), HoldRejected::BadRequest),
            (
                seat_list(&(0..17).collect::<Vec<_>>()),
                HoldRejected::BadRequest,
            ),
            (
                seat_list(&[0, 1, 2, 3, 4]),
                HoldRejected::TicketLimit { max: 4 },
            ),
            (
                best(5, Area::Anywhere),
                HoldRejected::TicketLimit { max: 4 },
            ),
        ];
        for (request, rejected) in cases {
            assert_eq!(hold(&mut h, 1, &request), Err(rejected), "{request:?}");
        }
        assert_eq!(h.core.overview().held, 0);
        assert!(is_admitted(&h, 1));
    }

    #[test]
    fn every_other_fan_shopping_keeps_a_fair_share() {
        let mut h = admitted(grid_venue(1, 1, 4), 4);
        assert_eq!(
            hold(&mut h, 1, &seat_list(&[0, 1])),
            Err(HoldRejected::FairShare { max: 1 })
        );
        assert_eq!(hold(&mut h, 1, &seat_list(&[0])), Ok(vec![0]));
    }

    #[test]
    fn one_hold_per_fan() {
        let mut h = admitted(venue(), 1);
        assert_eq!(hold(&mut h, 1, &seat_list(&[0])), Ok(vec![0]));
        assert_eq!(
            hold(&mut h, 1, &seat_list(&[1])),
            Err(HoldRejected::AlreadyHolding { hold: HoldId(1) })
        );
        assert_eq!(
            hold(&mut h, 9, &seat_list(&[1])),
            Err(HoldRejected::NotInLine)
        );
    }

    #[test]
    fn summaries_and_seat_bitmaps_reflect_holds() {
        let mut h = admitted(venue(), 2);
        assert!(hold(&mut h, 1, &seat_list(&[3, 4])).is_ok());
        assert!(hold(&mut h, 2, &seat_list(&[40])).is_ok());
        let overview = h.core.overview();
        assert_eq!(overview.held, 3);
        let counts: Vec<(u32, u32)> = overview
            .sections
            .iter()
            .map(|s| (s.seats, s.available))
            .collect();
        assert_eq!(counts, [(40, 38), (40, 39)]);
        assert_eq!(
            (
                overview.sections[0].price_min_cents,
                overview.sections[0].price_max_cents
            ),
            (6_000, 12_000)
        );
        let section0 = h.core.section_seats(SectionIdx(0)).unwrap();
        assert_eq!((section0.first_seat, section0.seat_count), (SeatIdx(0), 40));
        let free: Vec<u32> = (0..6)
            .filter(|s| section0.is_available(SeatIdx(*s)))
            .collect();
        assert_eq!(free, [0, 1, 2, 5]);
        let section1 = h.core.section_seats(SectionIdx(1)).unwrap();
        assert_eq!(section1.first_seat, SeatIdx(40));
        assert!(!section1.is_available(SeatIdx(40)) && section1.is_available(SeatIdx(41)));
        assert_eq!(h.core.section_seats(SectionIdx(2)), None);
    }

    #[test]
    fn seat_changes_are_pushed_per_section() {
        let mut h = admitted(venue(), 2);
        let mark = h.pushes.len();
        assert!(hold(&mut h, 1, &seat_list(&[3, 4])).is_ok());
        assert_eq!(
            pushes_since(&h, mark),
            [Push::SeatsChanged {
                section: SectionIdx(0),
                seats: seats(&[3, 4]),
                available: false
            }]
        );
        let mark = h.pushes.len();
        assert!(hold(&mut h, 2, &seat_list(&[40, 39])).is_ok());
        assert_eq!(
            pushes_since(&h, mark),
            [
                Push::SeatsChanged {
                    section: SectionIdx(0),
                    seats: seats(&[39]),
                    available: false
                },
                Push::SeatsChanged {
                    section: SectionIdx(1),
                    seats: seats(&[40]),
                    available: false
                },
            ]
        );
    }
}

mod checkout {
    use onsale_schema::message::{PaymentRefused, PaymentSettled, ProviderAnswer};

    use super::*;

    const FAN: FanId = FanId(1);

    /// Fan 1 admitted and holding front seats 0 and 1 (24 000 cents) until
    /// `at(CHECKOUT_MS)`.
    fn holding() -> (Harness, HoldId) {
        let mut h = on_sale(grid_venue(1, 2, 4), config());
        join_all(&mut h, &[1]);
        let placed = h.hold(FAN, &seat_list(&[0, 1])).unwrap();
        assert_eq!(placed.deadline, at(CHECKOUT_MS));
        (h, placed.hold)
    }

    fn pay(h: &mut Harness, hold: HoldId) -> Result<PaymentId, PaymentRefused> {
        h.submit_payment(FAN, hold).map(|started| started.payment)
    }

    fn seats_free(h: &Harness) -> bool {
        available(h, 0) && available(h, 1)
    }

    #[test]
    fn an_unpaid_hold_expires_at_its_deadline() {
        let (mut h, hold) = holding();
        h.advance(CHECKOUT_MS as i64 - 1);
        assert!(matches!(status(&h, 1), Some(FanStatus::Holding { .. })));
        let mark = h.pushes.len();
        h.advance(1);
        assert!(seats_free(&h));
        let pushes = pushes_since(&h, mark);
        assert!(pushes.contains(&Push::HoldExpired { fan: FAN, hold }));
        assert!(pushes.contains(&Push::SeatsChanged {
            section: SectionIdx(0),
            seats: seats(&[0, 1]),
            available: true
        }));
        assert!(is_admitted(&h, 1), "the shopping window is not over");
        assert_eq!(pay(&mut h, hold), Err(PaymentRefused::HoldNotFound));
    }

    #[test]
    fn paid_in_time_and_confirmed_after_the_deadline_is_sold() {
        let (mut h, hold) = holding();
        h.advance(CHECKOUT_MS as i64 - 1);
        let payment = pay(&mut h, hold).unwrap();
        h.advance(1);
        h.advance(30_000);
        assert_eq!(
            status(&h, 1),
            Some(FanStatus::Holding {
                hold,
                deadline: at(CHECKOUT_MS),
                paying: true
            })
        );
        assert!(
            !available(&h, 0),
            "seats stay held while the provider decides"
        );
        assert_eq!(
            h.provider_answer(payment, ProviderAnswer::Confirmed),
            PaymentSettled::Sold { order: OrderId(1) }
        );
        assert_eq!(
            status(&h, 1),
            Some(FanStatus::Purchased {
                tickets: 2,
                order: OrderId(1),
                seats: seats(&[0, 1])
            })
        );
        assert_eq!(h.core.orders()[0].seats, seats(&[0, 1]));
        assert!(h.pushes.contains(&Push::Purchased {
            fan: FAN,
            order: OrderId(1),
            seats: seats(&[0, 1])
        }));
    }

    #[test]
    fn payment_submitted_at_the_deadline_is_late() {
        let (mut h, hold) = holding();
        // The core's timers have not run yet: lateness is judged at `now`.
        h.drift(CHECKOUT_MS);
        assert_eq!(pay(&mut h, hold), Err(PaymentRefused::Late));
        assert!(seats_free(&h));
        assert!(h.pushes.contains(&Push::HoldExpired { fan: FAN, hold }));
        assert!(h.payments_requested.is_empty());
    }

    #[test]
    fn declined_before_the_deadline_may_retry() {
        let (mut h, hold) = holding();
        let first = pay(&mut h, hold).unwrap();
        assert_eq!(
            h.provider_answer(first, ProviderAnswer::Declined),
            PaymentSettled::Declined {
                hold,
                retry_until: Some(at(CHECKOUT_MS))
            }
        );
        assert!(matches!(
            status(&h, 1),
            Some(FanStatus::Holding { paying: false, .. })
        ));
        assert!(h.pushes.contains(&Push::PaymentDeclined {
            fan: FAN,
            hold,
            retry_until: Some(at(CHECKOUT_MS)),
            reason: DeclineReason::Declined,
        }));
        let second = pay(&mut h, hold).unwrap();
        assert_eq!(second, PaymentId(2));
        assert_eq!(
            h.provider_answer(second, ProviderAnswer::Confirmed),
            PaymentSettled::Sold { order: OrderId(1) }
        );
    }

    #[test]
    fn declined_after_the_deadline_releases_the_seats() {
        let (mut h, hold) = holding();
        h.advance(CHECKOUT_MS as i64 - 1_000);
        let payment = pay(&mut h, hold).unwrap();
        h.advance(2_000);
        assert_eq!(
            h.provider_answer(payment, ProviderAnswer::Declined),
            PaymentSettled::Declined {
                hold,
                retry_until: None
            }
        );
        assert!(seats_free(&h));
        // The fan hears why first, then that the hold is gone.
        let declined = Push::PaymentDeclined {
            fan: FAN,
            hold,
            retry_until: None,
            reason: DeclineReason::Declined,
        };
        let said = |push: &Push| h.pushes.iter().position(|p| p == push);
        assert!(said(&declined) < said(&Push::HoldExpired { fan: FAN, hold }));
        assert!(said(&declined).is_some());
        assert_eq!(pay(&mut h, hold), Err(PaymentRefused::HoldNotFound));
    }

    #[test]
    fn a_silent_provider_is_voided_and_a_later_confirmation_refunded() {
        let (mut h, hold) = holding();
        let payment = pay(&mut h, hold).unwrap();
        h.advance(PROVIDER_MS as i64 - 1);
        assert!(!available(&h, 0));
        h.advance(1);
        assert!(seats_free(&h));
        assert!(h.pushes.contains(&Push::HoldExpired { fan: FAN, hold }));
        assert_eq!(
            status(&h, 1),
            Some(FanStatus::Expired),
            "the shopping window is long over"
        );
        assert_eq!(
            h.provider_answer(payment, ProviderAnswer::Confirmed),
            PaymentSettled::Refund { payment }
        );
        assert_eq!(h.refunds, [payment]);
        assert!(h.core.orders().is_empty());
        assert_eq!(
            h.provider_answer(payment, ProviderAnswer::Declined),
            PaymentSettled::Ignored
        );
    }

    #[test]
    fn a_voided_payment_tells_the_fan_it_went_unanswered_before_the_hold_ends() {
        let (mut h, hold) = holding();
        pay(&mut h, hold).unwrap();
        h.advance(PROVIDER_MS as i64);
        let voided = Push::PaymentDeclined {
            fan: FAN,
            hold,
            retry_until: None,
            reason: DeclineReason::NoAnswer,
        };
        let said = |push: &Push| h.pushes.iter().position(|p| p == push);
        assert!(said(&voided).is_some(), "the fan is told why");
        assert!(said(&voided) < said(&Push::HoldExpired { fan: FAN, hold }));
    }

    #[test]
    fn a_confirmation_of_a_voided_payment_delivered_again_is_refunded_once() {
        let (mut h, hold) = holding();
        let payment = pay(&mut h, hold).unwrap();
        h.advance(PROVIDER_MS as i64);
        assert_eq!(
            h.provider_answer(payment, ProviderAnswer::Confirmed),
            PaymentSettled::Refund { payment }
        );
        for _ in 0..3 {
            assert_eq!(
                h.provider_answer(payment, ProviderAnswer::Confirmed),
                PaymentSettled::Ignored
            );
        }
        // Across a restart too: the refund is in the journal.
        h.crash_and_restore();
        assert_eq!(
            h.provider_answer(payment, ProviderAnswer::Confirmed),
            PaymentSettled::Ignored
        );
        h.snapshot();
        h.crash_and_restore();
        assert_eq!(
            h.provider_answer(payment, ProviderAnswer::Confirmed),
            PaymentSettled::Ignored
        );
        assert_eq!(h.refunds, [payment], "one refund, whatever arrives");
    }

    #[test]
    fn a_silent_payment_is_asked_about_before_it_is_voided() {
        let (mut h, hold) = holding();
        let payment = pay(&mut h, hold).unwrap();
        let first = h.core.checkout_rules().payment_query_after_ms;
        h.advance(first as i64 - 1);
        assert!(
            h.payment_queries.is_empty(),
            "not before the first interval"
        );
        h.advance(1);
        assert_eq!(h.payment_queries, [payment]);
        // The provider's answer to the query settles it like any answer.
        assert_eq!(
            h.provider_answer(payment, ProviderAnswer::Confirmed),
            PaymentSettled::Sold { order: OrderId(1) }
        );
        h.advance(PROVIDER_MS as i64);
        assert_eq!(h.payment_queries, [payment], "no query after the sale");
    }

    #[test]
    fn a_silent_payment_is_asked_about_again_at_growing_intervals_until_voided() {
        let (mut h, hold) = holding();
        let payment = pay(&mut h, hold).unwrap();
        for _ in 0..PROVIDER_MS / 1_000 {
            h.advance(1_000);
        }
        let asked = h.payment_queries.len();
        assert!(asked >= 2, "asked {asked} times");
        assert!(h.payment_queries.iter().all(|p| *p == payment));
        assert!(seats_free(&h), "voided at the provider timeout");
        assert!(
            (asked as u64) < PROVIDER_MS / h.core.checkout_rules().payment_query_after_ms,
            "intervals grow"
        );
    }

    #[test]
    fn the_event_warns_the_fan_before_its_hold_expires() {
        let (mut h, hold) = holding();
        let deadline = h.core.checkout(hold).unwrap().deadline;
        let warn_before = h.core.checkout_rules().warn_before_ms;
        h.advance(CHECKOUT_MS as i64 - warn_before as i64 - 1);
        let warning = Push::HoldExpiring {
            fan: FAN,
            hold,
            deadline,
        };
        assert!(!h.pushes.contains(&warning));
        h.advance(1);
        assert_eq!(h.pushes.iter().filter(|p| **p == warning).count(), 1);
        h.advance(warn_before as i64 - 1);
        assert_eq!(h.pushes.iter().filter(|p| **p == warning).count(), 1);
        assert!(!seats_free(&h));
        h.advance(1);
        assert!(seats_free(&h));
    }

    #[test]
    fn a_duplicate_confirmation_sells_once() {
        let (mut h, hold) = holding();
        let payment = pay(&mut h, hold).unwrap();
        let sold = PaymentSettled::Sold { order: OrderId(1) };
        assert_eq!(h.provider_answer(payment, ProviderAnswer::Confirmed), sold);
        let journal = h.core.journal_seq();
        assert_eq!(h.provider_answer(payment, ProviderAnswer::Confirmed), sold);
        assert_eq!(h.core.journal_seq(), journal, "nothing changed");
        assert_eq!(h.core.orders().len(), 1);
        assert_eq!(h.core.overview().sold, 2);
        assert_eq!(
            h.provider_answer(payment, ProviderAnswer::Declined),
            PaymentSettled::Ignored
        );
    }

    #[test]
    fn an_unknown_payment_is_unknown() {
        let (mut h, _) = holding();
        assert_eq!(
            h.provider_answer(PaymentId(42), ProviderAnswer::Confirmed),
            PaymentSettled::Unknown
        );
        assert!(h.refunds.is_empty());
    }

    #[test]
    fn the_fan_releases_its_hold() {
        let (mut h, hold) = holding();
        assert_eq!(h.release(FanId(2), hold), Err(PaymentRefused::HoldNotFound));
        let mark = h.pushes.len();
        assert_eq!(h.release(FAN, hold), Ok(()));
        assert!(seats_free(&h));
        assert_eq!(
            pushes_since(&h, mark),
            [Push::SeatsChanged {
                section: SectionIdx(0),
                seats: seats(&[0, 1]),
                available: true
            }]
        );
        assert!(is_admitted(&h, 1), "may hold again in its window");
        assert_eq!(h.release(FAN, hold), Err(PaymentRefused::HoldNotFound));
    }

    #[test]
    fn a_paying_hold_cannot_be_released_or_paid_twice() {
        let (mut h, hold) = holding();
        pay(&mut h, hold).unwrap();
        assert_eq!(h.release(FAN, hold), Err(PaymentRefused::Pending));
        assert_eq!(pay(&mut h, hold), Err(PaymentRefused::Pending));
        assert!(!available(&h, 0));
    }

    #[test]
    fn the_payment_request_carries_the_hold_total() {
        let mut core = open_core(grid_venue(1, 2, 4), config());
        core.join(FAN, T0).unwrap();
        // Seat 0 is front (12 000), seat 4 is back (6 000).
        let placed = core.hold(FAN, &seat_list(&[0, 4]), T0).unwrap();
        assert_eq!(placed.total_cents, 18_000);
        settle(&mut core);
        let started = core.submit_payment(FAN, placed.hold, at(1)).unwrap();
        assert_eq!(started.amount_cents, 18_000);
        let requests: Vec<Effect> = settle(&mut core)
            .into_iter()
            .filter(|e| matches!(e, Effect::RequestPayment { .. }))
            .collect();
        assert_eq!(
            requests,
            [Effect::RequestPayment {
                payment: PaymentId(1),
                hold: placed.hold,
                fan: FAN,
                amount_cents: 18_000
            }]
        );
    }
}

mod sale {
    use onsale_schema::message::{PaymentSettled, ProviderAnswer};

    use super::*;

    /// Run operator commands in order against a new event and compare
    /// each outcome.
    fn check(steps: &[(SaleCommand, Result<SaleState, SaleState>)]) -> Harness {
        let mut h = Harness::new(grid_venue(1, 2, 4), config());
        for (i, (command, expected)) in steps.iter().enumerate() {
            let mark = h.pushes.len();
            assert_eq!(h.sale(*command), *expected, "step {i}: {command:?}");
            let pushed = pushes_since(&h, mark);
            match expected {
                Ok(state) => assert!(pushed.contains(&Push::Sale { state: *state }), "step {i}"),
                Err(_) => assert!(
                    !pushed.iter().any(|p| matches!(p, Push::Sale { .. })),
                    "step {i}"
                ),
            }
        }
        h
    }

    /// Fan `fan` holds `seat`, pays and is confirmed.
    fn buy(h: &mut Harness, fan: u64, seat: u32) -> PaymentSettled {
        let placed = h.hold(FanId(fan), &seat_list(&[seat])).unwrap();
        let started = h.submit_payment(FanId(fan), placed.hold).unwrap();
        h.provider_answer(started.payment, ProviderAnswer::Confirmed)
    }

    #[test]
    fn sale_state_transitions() {
        use SaleCommand::{Close, Open, Pause};
        use SaleState::{Closed, OnSale, Paused, Scheduled};
        check(&[
            (Pause, Err(Scheduled)),
            (Open, Ok(OnSale)),
            (Open, Err(OnSale)),
            (Pause, Ok(Paused)),
            (Pause, Err(Paused)),
            (Open, Ok(OnSale)),
            (Close, Ok(Closed)),
            (Open, Err(Closed)),
            (Pause, Err(Closed)),
            (Close, Err(Closed)),
        ]);
        check(&[(Close, Ok(Closed))]);
    }

    #[test]
    fn pause_stops_admissions_until_reopened() {
        let config = EventConfig {
            shoppers_max: 1,
            ..config()
        };
        let mut h = on_sale(grid_venue(1, 2, 4), config);
        join_all(&mut h, &[1, 2]);
        assert_eq!(h.sale(SaleCommand::Pause), Ok(SaleState::Paused));
        h.leave(FanId(1));
        join_all(&mut h, &[3]);
        assert!(matches!(status(&h, 2), Some(FanStatus::Waiting { .. })));
        assert_eq!(h.admissions, [(FanId(1), Position(1))]);
        assert_eq!(h.sale(SaleCommand::Open), Ok(SaleState::OnSale));
        assert_eq!(
            h.admissions,
            [(FanId(1), Position(1)), (FanId(2), Position(2))]
        );
    }

    #[test]
    fn a_paused_sale_takes_no_holds() {
        let mut h = on_sale(grid_venue(1, 2, 4), config());
        join_all(&mut h, &[1]);
        assert_eq!(h.sale(SaleCommand::Pause), Ok(SaleState::Paused));
        assert_eq!(
            h.hold(FanId(1), &seat_list(&[0])),
            Err(HoldRejected::SaleNotOpen)
        );
    }

    #[test]
    fn close_releases_open_holds_but_a_paying_checkout_finishes() {
        let mut h = on_sale(grid_venue(1, 2, 4), config());
        join_all(&mut h, &[1, 2, 3]);
        let open = h.hold(FanId(1), &seat_list(&[0])).unwrap();
        let paying = h.hold(FanId(2), &seat_list(&[1])).unwrap();
        let payment = h.submit_payment(FanId(2), paying.hold).unwrap().payment;

        assert_eq!(h.sale(SaleCommand::Close), Ok(SaleState::Closed));
        assert!(available(&h, 0));
        assert!(h.pushes.contains(&Push::HoldExpired {
            fan: FanId(1),
            hold: open.hold
        }));
        assert_eq!(status(&h, 1), Some(FanStatus::Expired));
        assert_eq!(status(&h, 3), Some(FanStatus::Expired));
        assert!(!available(&h, 1));
        assert!(matches!(
            status(&h, 2),
            Some(FanStatus::Holding { paying: true, .. })
        ));

        h.advance(CHECKOUT_MS as i64 + 1);
        assert_eq!(
            h.provider_answer(payment, ProviderAnswer::Confirmed),
            PaymentSettled::Sold { order: OrderId(1) }
        );
        assert_eq!(h.core.sale(), SaleState::Closed);
    }

    #[test]
    fn a_payment_declined_after_close_releases_the_seats() {
        // Close spares checkouts already paying; a declined one no longer is.
        let mut h = on_sale(grid_venue(1, 2, 4), config());
        join_all(&mut h, &[1]);
        let placed = h.hold(FanId(1), &seat_list(&[0])).unwrap();
        let payment = h.submit_payment(FanId(1), placed.hold).unwrap().payment;
        assert_eq!(h.sale(SaleCommand::Close), Ok(SaleState::Closed));
        assert_eq!(
            h.provider_answer(payment, ProviderAnswer::Declined),
            PaymentSettled::Declined {
                hold: placed.hold,
                retry_until: None
            }
        );
        assert!(available(&h, 0));
        assert_eq!(status(&h, 1), Some(FanStatus::Expired));
        assert!(h.submit_payment(FanId(1), placed.hold).is_err());
    }

    #[test]
    fn the_last_sale_sells_out() {
        let mut h = on_sale(grid_venue(1, 1, 2), config());
        join_all(&mut h, &[1, 2]);
        assert_eq!(
            buy(&mut h, 1, 0),
            PaymentSettled::Sold { order: OrderId(1) }
        );
        assert_eq!(h.core.sale(), SaleState::OnSale);
        assert!(!h.pushes.contains(&Push::SoldOut));
        assert_eq!(
            buy(&mut h, 2, 1),
            PaymentSettled::Sold { order: OrderId(2) }
        );
        assert_eq!(h.core.sale(), SaleState::SoldOut);
        assert!(h.pushes.contains(&Push::SoldOut));
        assert_eq!(h.sale(SaleCommand::Open), Err(SaleState::SoldOut));
    }
}

mod snapshot {
    use onsale_actors::RestoreError;
    use onsale_schema::message::{PaymentSettled, ProviderAnswer};
    use onsale_schema::snapshot::{
        CheckoutRecord, EventSnapshot, OrderRecord, RecordError, SCHEMA_VERSION,
    };

    use super::*;

    fn venue() -> Arc<Venue> {
        grid_venue(1, 2, 4)
    }

    /// An event with a bit of everything: an order, a hold paying after a
    /// declined payment, an entered shopper without a hold, two fans waiting.
    fn busy_event() -> Harness {
        let config = EventConfig {
            shoppers_max: 1,
            ..config()
        };
        let mut h = on_sale(venue(), config);
        join_all(&mut h, &[1, 2, 3, 4, 5]);
        let first = h.hold(FanId(1), &seat_list(&[0, 1])).unwrap();
        let second = h.hold(FanId(2), &seat_list(&[2])).unwrap();
        h.enter(FanId(3));
        let paid = h.submit_payment(FanId(1), first.hold).unwrap().payment;
        h.provider_answer(paid, ProviderAnswer::Confirmed);
        let declined = h.submit_payment(FanId(2), second.hold).unwrap().payment;
        h.provider_answer(declined, ProviderAnswer::Declined);
        h.submit_payment(FanId(2), second.hold).unwrap();
        h
    }

    /// Restore `snapshot` over `venue` (counter as stored in it).
    fn restore(venue: Arc<Venue>, snapshot: &EventSnapshot) -> Result<EventCore, RestoreError> {
        EventCore::restore(venue, snapshot, snapshot.counter_ceiling)
    }

    #[test]
    fn snapshot_round_trips_through_bytes_and_restore() {
        let h = busy_event();
        let snapshot = h.core.snapshot();
        assert_eq!(snapshot.waiting, 2);
        assert_eq!(snapshot.orders.len(), 1);
        assert_eq!(snapshot.shoppers.len(), 2);
        assert!(snapshot.shoppers.iter().all(|s| s.entered));
        assert_eq!(snapshot.holds.len(), 1);
        assert!(matches!(
            snapshot.holds[0].checkout,
            CheckoutRecord::Paying {
                payment: PaymentId(3),
                ..
            }
        ));
        assert_eq!(snapshot.voided, [PaymentId(2)]);

        let decoded = EventSnapshot::decode(&snapshot.encode().unwrap()).unwrap();
        assert_eq!(decoded, snapshot);
        let mut core = restore(venue(), &decoded).unwrap();
        assert_eq!(core.snapshot(), snapshot);
        settle(&mut core);
        assert_eq!(
            core.provider_answer(PaymentId(3), ProviderAnswer::Confirmed, at(1)),
            PaymentSettled::Sold { order: OrderId(2) }
        );
        assert_eq!(
            core.provider_answer(PaymentId(2), ProviderAnswer::Confirmed, at(1)),
            PaymentSettled::Refund {
                payment: PaymentId(2)
            }
        );
        settle(&mut core);
    }

    #[test]
    fn restore_refuses_another_venue_or_a_future_version() {
        let snapshot = busy_event().core.snapshot();
        assert_eq!(
            restore(grid_venue(1, 2, 5), &snapshot).err(),
            Some(RestoreError::WrongVenue)
        );
        let mut future = snapshot.clone();
        future.schema_version = SCHEMA_VERSION + 1;
        assert_eq!(
            restore(venue(), &future).err(),
            Some(RestoreError::Version(SCHEMA_VERSION + 1))
        );
        assert_eq!(
            EventSnapshot::decode(&future.encode().unwrap()),
            Err(RecordError::FutureVersion {
                found: SCHEMA_VERSION + 1
            })
        );
    }

    #[test]
    fn restore_refuses_a_corrupt_snapshot() {
        let snapshot = busy_event().core.snapshot();
        type Corruption = (&'static str, fn(&mut EventSnapshot));
        let corruptions: [Corruption; 4] = [
            ("two orders sell the same seat", |s| {
                let first = s.orders[0].clone();
                s.orders.push(OrderRecord {
                    order: OrderId(first.order.0 + 1),
                    fan: FanId(99),
                    payment: PaymentId(99),
                    ..first
                });
                s.next_order = OrderId(first.order.0 + 2);
            }),
            ("a hold on an unknown seat", |s| {
                s.holds[0].seats = seats(&[999])
            }),
            ("next_hold below a used id", |s| s.next_hold = HoldId(1)),
            ("a shopper beyond the admission frontier", |s| {
                s.shoppers[0].position = Position(s.admitted_through.0 + 1);
            }),
        ];
        for (what, corrupt) in corruptions {
            let mut bad = snapshot.clone();
            corrupt(&mut bad);
            let result = restore(venue(), &bad);
            assert!(
                matches!(result, Err(RestoreError::Corrupt(_))),
                "{what}: {:?}",
                result.err()
            );
        }
    }

    #[test]
    fn journal_replay_restores_the_state_and_refuses_gaps() {
        let mut core = open_core(venue(), config());
        let snapshot = core.snapshot();
        core.join(FanId(1), at(10)).unwrap();
        core.hold(FanId(1), &seat_list(&[0]), at(20)).unwrap();
        let journal: Vec<_> = settle(&mut core)
            .into_iter()
            .filter_map(|e| match e {
                Effect::Journal(record) => Some(record),
                _ => None,
            })
            .collect();
        assert_eq!(journal.len(), 3, "admitted, entered, hold placed");

        let mut replayed = restore(venue(), &snapshot).unwrap();
        for record in &journal {
            replayed.replay(record).unwrap();
        }
        assert_eq!(replayed.snapshot(), core.snapshot());

        let seq = snapshot.journal_seq;
        let mut gap = restore(venue(), &snapshot).unwrap();
        assert_eq!(
            gap.replay(&journal[1]),
            Err(RestoreError::JournalGap {
                last: seq,
                found: seq + 2
            })
        );
        let mut repeat = restore(venue(), &snapshot).unwrap();
        repeat.replay(&journal[0]).unwrap();
        assert_eq!(
            repeat.replay(&journal[0]),
            Err(RestoreError::JournalGap {
                last: seq + 1,
                found: seq + 1
            })
        );
        let mut other = journal[0].clone();
        other.event = EventId(2);
        assert_eq!(
            restore(venue(), &snapshot).unwrap().replay(&other),
            Err(RestoreError::WrongEvent {
                expected: EVENT,
                found: EventId(2)
            })
        );
    }

    /// The journal records a directly driven core produced.
    fn journal_of(effects: Vec<Effect>) -> Vec<onsale_schema::snapshot::JournalRecord> {
        effects
            .into_iter()
            .filter_map(|e| match e {
                Effect::Journal(record) => Some(record),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_burst_of_admissions_is_journalled_in_bounded_entries_and_replays_exactly() {
        use onsale_schema::limits::ADMISSIONS_PER_ENTRY_MAX;
        use onsale_schema::snapshot::JournalEntry;

        let fans = 2 * ADMISSIONS_PER_ENTRY_MAX as u64 + 5;
        let config = EventConfig {
            shoppers_max: 10_000,
            counter_block: 1_000,
            ..config()
        };
        let venue = grid_venue(4, 50, 50);
        let mut core = EventCore::new(EVENT, Arc::clone(&venue), config, T0).unwrap();
        settle(&mut core);
        let snapshot = core.snapshot();
        for fan in 1..=fans {
            core.join(FanId(fan), at(1)).unwrap();
            settle(&mut core);
        }
        assert_eq!(
            core.sale_command(SaleCommand::Open, at(2)),
            Ok(SaleState::OnSale)
        );
        let journal = journal_of(settle(&mut core));
        let sizes: Vec<usize> = journal
            .iter()
            .filter_map(|r| match &r.entry {
                JournalEntry::AdmittedMany { fans, .. } => Some(fans.len()),
                _ => None,
            })
            .collect();
        assert_eq!(
            sizes,
            [ADMISSIONS_PER_ENTRY_MAX, ADMISSIONS_PER_ENTRY_MAX, 5],
            "one entry per {ADMISSIONS_PER_ENTRY_MAX} fans"
        );
        // In line order, every fan once.
        let admitted: Vec<(FanId, Position)> = journal
            .iter()
            .flat_map(|r| r.entry.admissions().map(|(f, p, _)| (f, p)))
            .collect();
        assert_eq!(admitted.len() as u64, fans);
        assert!(admitted.windows(2).all(|w| w[0].1 < w[1].1));

        let mut replayed = restore(venue, &snapshot).unwrap();
        for record in &journal {
            let bytes = record.encode().unwrap();
            let decoded = onsale_schema::snapshot::JournalRecord::decode(&bytes).unwrap();
            replayed.replay(&decoded).unwrap();
        }
        // The counter's blocks are not journal entries: compare the rest.
        let (got, want) = (replayed.snapshot(), core.snapshot());
        assert!(got.shoppers == want.shoppers, "the same shoppers");
        assert_eq!(
            (got.admitted_through, got.journal_seq, got.sale),
            (want.admitted_through, want.journal_seq, want.sale)
        );
    }

    #[test]
    fn version_2_journals_of_one_admission_per_entry_still_replay() {
        use onsale_schema::snapshot::{JournalEntry, JournalRecord};

        let mut core = open_core(venue(), config());
        let snapshot = core.snapshot();
        core.join(FanId(1), at(10)).unwrap();
        core.join(FanId(2), at(10)).unwrap();
        let journal = journal_of(settle(&mut core));
        let mut seq = snapshot.journal_seq;
        let mut old = Vec::new();
        for record in &journal {
            let entries: Vec<JournalEntry> = match &record.entry {
                JournalEntry::AdmittedMany { .. } => record
                    .entry
                    .admissions()
                    .map(|(fan, position, at)| JournalEntry::Admitted { fan, position, at })
                    .collect(),
                other => vec![other.clone()],
            };
            for entry in entries {
                seq += 1;
                old.push(JournalRecord {
                    schema_version: 2,
                    seq,
                    entry,
                    ..record.clone()
                });
            }
        }
        assert!(old.len() >= 2, "two admissions, one entry each");
        let mut replayed = restore(venue(), &snapshot).unwrap();
        for record in &old {
            let decoded = JournalRecord::decode(&record.encode().unwrap()).unwrap();
            replayed.replay(&decoded).unwrap();
        }
        for fan in [1, 2] {
            assert_eq!(replayed.status(FanId(fan)), core.status(FanId(fan)));
        }
        assert_eq!(replayed.admitted_through(), core.admitted_through());
    }
}
