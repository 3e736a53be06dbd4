//! The gateway's public protocol: HTTP bodies and websocket frames that are
//! not event commands or replies (those are in [`crate::message`]).
//!
//! Everything here is JSON only, so the enums are plainly internally
//! tagged. `docs/protocol.md` shows each with an example; a test in the
//! gateway checks that the examples there still parse.
//!
//! Identifiers are integers below 2^53, so JavaScript reads them exactly:
//! the gateway derives fan ids in that range.

use serde::{Deserialize, Serialize};

use crate::config::{EventConfig, SaleState};
use crate::error::ErrorCode;
use crate::ids::{
    EventId, FanId, HoldId, Millis, OrderId, PaymentId, Position, SeatIdx, SectionIdx,
};
use crate::message::{DeclineReason, EventOverview, FanStatus, ProviderAnswer, SaleCommand};
use crate::venue::{SectionMap, VenueFile};

/// Largest id a fan may have (2^53 − 1): exact in a JavaScript number.
pub const FAN_ID_MAX: u64 = (1 << 53) - 1;

/// `POST /api/session`: the demo login.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionRequest {
    /// Any name, 1..=64 bytes; the same name is the same fan.
    pub name: String,
}

/// A signed session: send `session` as `Authorization: Bearer <session>`
/// (or as `?session=` when opening the websocket).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub session: String,
    pub fan: FanId,
    pub expires_at: Millis,
}

/// One event in the catalogue.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventListing {
    pub event: EventId,
    pub name: String,
    pub city: String,
    pub venue: String,
    pub starts_at: Millis,
    /// The sale's state as this gateway last saw it.
    pub sale: SaleState,
    pub capacity: u32,
    pub full: bool,
    /// When the sale opens by itself, if it is scheduled to.
    #[serde(default)]
    pub opens_at: Option<Millis>,
    /// Fans who join before the opening get random places when it opens.
    #[serde(default)]
    pub pre_queue_draw: bool,
    /// Until when joining takes a presale code.
    #[serde(default)]
    pub presale_until: Option<Millis>,
}

/// `GET /api/events?q=&city=&from=&to=`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventList {
    pub events: Vec<EventListing>,
}

/// A section as drawn on the venue map.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SectionInfo {
    pub section: SectionIdx,
    pub id: String,
    pub name: String,
    pub map: Option<SectionMap>,
    pub rows: u32,
    /// The section's seats are `first_seat .. first_seat + seats`.
    pub first_seat: SeatIdx,
    pub seats: u32,
    pub available: u32,
    pub price_min_cents: u64,
    pub price_max_cents: u64,
}

/// `GET /api/events/{event}`: the listing, the live overview, and the
/// sections with their map rectangles.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EventDetail {
    pub listing: EventListing,
    pub overview: EventOverview,
    pub sections: Vec<SectionInfo>,
}

/// One seat of a section, for the seat map.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeatInfo {
    pub seat: SeatIdx,
    pub id: String,
    pub price_cents: u64,
    pub accessible: bool,
    pub available: bool,
}

/// One row of a section, seats in physical order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RowInfo {
    pub id: String,
    pub seats: Vec<SeatInfo>,
}

/// `GET /api/events/{event}/sections/{section}`: every seat with its live
/// availability. Later changes arrive as `seats_changed` pushes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SectionDetail {
    pub event: EventId,
    pub section: SectionIdx,
    pub name: String,
    pub rows: Vec<RowInfo>,
}

/// `POST /api/webhooks/payments`: a payment provider's answer. Signed:
/// header `Onsale-Signature: t=<unix ms>,v1=<hex HMAC-SHA256 of "t.body">`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderWebhook {
    pub event: EventId,
    pub payment: PaymentId,
    pub answer: ProviderAnswer,
}

/// `POST /api/ops/events`: an operator creates an event from a venue file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateEvent {
    pub event: EventId,
    pub name: String,
    pub city: String,
    pub starts_at: Millis,
    pub venue: VenueFile,
    #[serde(default)]
    pub config: EventConfig,
}

/// `POST /api/ops/events/{event}/presale-codes`: presale codes for
/// registered fans, by fan id or by login name (at most
/// [`crate::limits::PRESALE_CODES_PER_REQUEST_MAX`] in all; a longer list
/// goes in several requests).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PresaleCodesRequest {
    #[serde(default)]
    pub fans: Vec<FanId>,
    #[serde(default)]
    pub names: Vec<String>,
}

/// One fan's presale code.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PresaleCode {
    pub fan: FanId,
    /// The login name it was asked for by, if it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub code: String,
}

/// The answer: a code per fan asked for, in the order asked (ids, then
/// names). Codes are signatures: asking again gives the same codes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PresaleCodes {
    pub event: EventId,
    pub codes: Vec<PresaleCode>,
}

/// `POST /api/ops/events/{event}/stamp`: the proof of work joins need.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StampRequest {
    pub bits: u8,
}

/// `POST /api/ops/events/{event}/sale`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SaleRequest {
    pub command: SaleCommand,
}

/// What a fan's websocket sends. Text frames of at most
/// [`crate::limits::WS_FRAME_BYTES_MAX`] bytes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum WsRequest {
    /// Follow one event as this fan. With the queue token from the join,
    /// the gateway also resumes the fan's place (after a reconnect, a new
    /// tab, or a restart of the whole system). One event per connection.
    Watch {
        event: EventId,
        #[serde(default)]
        token: Option<String>,
    },
    /// Live seat changes for this section only (`null`: none).
    View { section: Option<SectionIdx> },
}

/// What the gateway pushes to a fan's websocket.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "push", rename_all = "snake_case")]
pub enum WsPush {
    /// The answer to `watch`: where the fan stands now.
    Watching {
        event: EventId,
        status: Option<FanStatus>,
        sale: SaleState,
    },
    /// Still waiting: `ahead` fans in front (an estimate), and the time to
    /// admission at the current admission rate, if there is one.
    Position {
        event: EventId,
        position: Position,
        ahead: u64,
        admitted_through: Position,
        eta_ms: Option<u64>,
    },
    /// The fan's turn: it may shop now. `decided_at` is when the event
    /// decided (wall-clock ms), for measuring the push's delay.
    Admitted {
        event: EventId,
        position: Position,
        decided_at: Millis,
    },
    Full {
        event: EventId,
        full: bool,
    },
    SoldOut {
        event: EventId,
    },
    Sale {
        event: EventId,
        state: SaleState,
    },
    SeatsChanged {
        event: EventId,
        section: SectionIdx,
        seats: Vec<SeatIdx>,
        available: bool,
    },
    /// The hold ends at `deadline` unless paid for first.
    HoldExpiring {
        event: EventId,
        hold: HoldId,
        deadline: Millis,
    },
    HoldExpired {
        event: EventId,
        hold: HoldId,
    },
    AdmissionExpired {
        event: EventId,
    },
    Purchased {
        event: EventId,
        order: OrderId,
        seats: Vec<SeatIdx>,
    },
    /// The payment for `hold` was declined: pay again before
    /// `retry_until`, or (`null`) the seats are released.
    PaymentDeclined {
        event: EventId,
        hold: HoldId,
        retry_until: Option<Millis>,
        reason: DeclineReason,
    },
    /// A request on this socket failed; `code` is stable.
    Error {
        code: ErrorCode,
        message: String,
    },
    /// Joining now takes a proof of work of `bits` leading zero bits
    /// (0: none): fetch a challenge and solve it before joining.
    Stamp {
        event: EventId,
        bits: u8,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn websocket_frames_have_their_documented_form() {
        let watch: WsRequest =
            serde_json::from_str(r#"{"op":"watch","event":1,"token":"ab"}"#).unwrap();
        assert_eq!(
            watch,
            WsRequest::Watch {
                event: EventId(1),
                token: Some("ab".into())
            }
        );
        let view: WsRequest = serde_json::from_str(r#"{"op":"view","section":null}"#).unwrap();
        assert_eq!(view, WsRequest::View { section: None });
        assert!(serde_json::from_str::<WsRequest>(r#"{"op":"watch","event":1,"x":1}"#).is_err());
        let push = WsPush::Admitted {
            event: EventId(1),
            position: Position(7),
            decided_at: Millis(9),
        };
        assert_eq!(
            serde_json::to_string(&push).unwrap(),
            r#"{"push":"admitted","event":1,"position":7,"decided_at":9}"#
        );
    }
}
