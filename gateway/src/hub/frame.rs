//! What each of an event's pushes becomes on this gateway's websockets:
//! who hears it, and the frame they get.
//!
//! One pure function, [`delivery`]: no state, no clock, no I/O. The hub
//! applies its answer to the connections it keeps (and keeps its own books
//! for the pushes that change them: admissions, holds that ended).

use bytes::Bytes;
use onsale_schema::api::WsPush;
use onsale_schema::message::Push;
use onsale_schema::{EventId, FanId, Millis, Position, SectionIdx};

/// Who among this gateway's connections hears a push, and what.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// Every fan waiting at or below `through`: each hears [`admitted`]
    /// with its own position.
    AdmittedThrough {
        through: Position,
        decided_at: Millis,
    },
    /// Every connection watching the event.
    Room(WsPush),
    /// The connections viewing `section`.
    Viewers { section: SectionIdx, push: WsPush },
    /// The connections of `fan`.
    Fan { fan: FanId, push: WsPush },
    /// Pre-queued fans got these positions: each connection of each fan
    /// starts waiting there (and hears its position).
    Drawn { fans: Vec<(FanId, Position)> },
}

/// The delivery of `push` from `event`.
#[must_use]
pub fn delivery(event: EventId, push: Push) -> Delivery {
    match push {
        Push::AdmittedThrough {
            position,
            decided_at,
        } => Delivery::AdmittedThrough {
            through: position,
            decided_at,
        },
        Push::FanAdmitted {
            fan,
            position,
            decided_at,
        } => Delivery::Fan {
            fan,
            push: admitted(event, position, decided_at),
        },
        Push::Full { full } => Delivery::Room(WsPush::Full { event, full }),
        Push::SoldOut => Delivery::Room(WsPush::SoldOut { event }),
        Push::Sale { state } => Delivery::Room(WsPush::Sale { event, state }),
        Push::SeatsChanged {
            section,
            seats,
            available,
        } => Delivery::Viewers {
            section,
            push: WsPush::SeatsChanged {
                event,
                section,
                seats,
                available,
            },
        },
        Push::HoldExpiring {
            fan,
            hold,
            deadline,
        } => Delivery::Fan {
            fan,
            push: WsPush::HoldExpiring {
                event,
                hold,
                deadline,
            },
        },
        Push::HoldExpired { fan, hold } => Delivery::Fan {
            fan,
            push: WsPush::HoldExpired { event, hold },
        },
        Push::AdmissionExpired { fan } => Delivery::Fan {
            fan,
            push: WsPush::AdmissionExpired { event },
        },
        Push::PaymentDeclined {
            fan,
            hold,
            retry_until,
            reason,
        } => Delivery::Fan {
            fan,
            push: WsPush::PaymentDeclined {
                event,
                hold,
                retry_until,
                reason,
            },
        },
        Push::Drawn { fans } => Delivery::Drawn { fans },
        Push::Stamp { bits } => Delivery::Room(WsPush::Stamp { event, bits }),
        Push::Purchased { fan, order, seats } => Delivery::Fan {
            fan,
            push: WsPush::Purchased {
                event,
                order,
                seats,
            },
        },
    }
}

/// What a fan admitted at `position` hears.
#[must_use]
pub fn admitted(event: EventId, position: Position, decided_at: Millis) -> WsPush {
    WsPush::Admitted {
        event,
        position,
        decided_at,
    }
}

/// A push as a whole websocket text frame, encoded once for every
/// connection that hears it.
#[must_use]
pub fn encode(push: &WsPush) -> Bytes {
    crate::ws_frame::json_frame(push)
}

#[cfg(test)]
mod tests {
    use onsale_schema::message::DeclineReason;
    use onsale_schema::{HoldId, OrderId, SaleState, SeatIdx};

    use super::*;

    const EVENT: EventId = EventId(1);
    const FAN: FanId = FanId(7);

    /// The delivery of `push`, and its frame's JSON when it has one frame.
    fn check(push: Push) -> (Delivery, Option<String>) {
        let delivery = delivery(EVENT, push);
        let json = match &delivery {
            Delivery::AdmittedThrough { .. } | Delivery::Drawn { .. } => None,
            Delivery::Room(push) | Delivery::Viewers { push, .. } | Delivery::Fan { push, .. } => {
                Some(serde_json::to_string(push).expect("encodes"))
            }
        };
        (delivery, json)
    }

    #[test]
    fn admissions_through_a_position_go_to_every_fan_waiting_at_or_below_it() {
        let (delivery, json) = check(Push::AdmittedThrough {
            position: Position(12),
            decided_at: Millis(5),
        });
        assert_eq!(
            delivery,
            Delivery::AdmittedThrough {
                through: Position(12),
                decided_at: Millis(5)
            }
        );
        assert_eq!(json, None, "each fan hears its own position");
        assert_eq!(
            serde_json::to_string(&admitted(EVENT, Position(9), Millis(5))).unwrap(),
            r#"{"push":"admitted","event":1,"position":9,"decided_at":5}"#
        );
    }

    #[test]
    fn a_fan_admitted_below_the_frontier_hears_it_alone() {
        let (delivery, json) = check(Push::FanAdmitted {
            fan: FAN,
            position: Position(3),
            decided_at: Millis(5),
        });
        assert!(matches!(delivery, Delivery::Fan { fan: FAN, .. }));
        assert_eq!(
            json.unwrap(),
            r#"{"push":"admitted","event":1,"position":3,"decided_at":5}"#
        );
    }

    #[test]
    fn full_sold_out_and_sale_changes_go_to_the_whole_room() {
        for (push, expected) in [
            (
                Push::Full { full: true },
                r#"{"push":"full","event":1,"full":true}"#,
            ),
            (Push::SoldOut, r#"{"push":"sold_out","event":1}"#),
            (
                Push::Sale {
                    state: SaleState::Paused,
                },
                r#"{"push":"sale","event":1,"state":"paused"}"#,
            ),
        ] {
            let (delivery, json) = check(push);
            assert!(matches!(delivery, Delivery::Room(_)), "{delivery:?}");
            assert_eq!(json.unwrap(), expected);
        }
    }

    #[test]
    fn seat_changes_go_only_to_the_section_s_viewers() {
        let (delivery, json) = check(Push::SeatsChanged {
            section: SectionIdx(3),
            seats: vec![SeatIdx(40), SeatIdx(41)],
            available: false,
        });
        assert!(matches!(
            delivery,
            Delivery::Viewers {
                section: SectionIdx(3),
                ..
            }
        ));
        assert_eq!(
            json.unwrap(),
            r#"{"push":"seats_changed","event":1,"section":3,"seats":[40,41],"available":false}"#
        );
    }

    #[test]
    fn holds_payments_and_purchases_go_only_to_their_fan() {
        for (push, expected) in [
            (
                Push::HoldExpiring {
                    fan: FAN,
                    hold: HoldId(5),
                    deadline: Millis(9),
                },
                r#"{"push":"hold_expiring","event":1,"hold":5,"deadline":9}"#,
            ),
            (
                Push::HoldExpired {
                    fan: FAN,
                    hold: HoldId(5),
                },
                r#"{"push":"hold_expired","event":1,"hold":5}"#,
            ),
            (
                Push::AdmissionExpired { fan: FAN },
                r#"{"push":"admission_expired","event":1}"#,
            ),
            (
                Push::PaymentDeclined {
                    fan: FAN,
                    hold: HoldId(5),
                    retry_until: None,
                    reason: DeclineReason::NoAnswer,
                },
                r#"{"push":"payment_declined","event":1,"hold":5,"retry_until":null,"reason":"no_answer"}"#,
            ),
            (
                Push::Purchased {
                    fan: FAN,
                    order: OrderId(3),
                    seats: vec![SeatIdx(40)],
                },
                r#"{"push":"purchased","event":1,"order":3,"seats":[40]}"#,
            ),
        ] {
            let (delivery, json) = check(push);
            assert!(
                matches!(delivery, Delivery::Fan { fan: FAN, .. }),
                "{delivery:?}"
            );
            assert_eq!(json.unwrap(), expected);
        }
    }

    #[test]
    fn a_frame_is_a_whole_unmasked_text_frame_of_the_push_s_json() {
        let push = WsPush::SoldOut { event: EVENT };
        let frame = encode(&push);
        let json = serde_json::to_vec(&push).unwrap();
        // FIN + text opcode, then a 7-bit length (unmasked), then the JSON.
        assert_eq!(frame[0], 0x81);
        assert_eq!(usize::from(frame[1]), json.len());
        assert_eq!(&frame[2..], &json[..]);
    }
}
