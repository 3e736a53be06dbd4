//! Stable error codes. The string form of each is part of the public API:
//! clients branch on it, so a code is never renamed or reused.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

macro_rules! codes {
    ($($variant:ident => $text:literal, $doc:literal;)*) => {
        /// An error a client can see. `as_str` is the stable wire form.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum ErrorCode {
            $(#[doc = $doc] $variant,)*
        }

        impl ErrorCode {
            /// Every code, in declaration order.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant,)*];

            #[must_use]
            pub fn as_str(self) -> &'static str {
                match self { $(ErrorCode::$variant => $text,)* }
            }

            #[must_use]
            pub fn description(self) -> &'static str {
                match self { $(ErrorCode::$variant => $doc,)* }
            }
        }

        impl FromStr for ErrorCode {
            type Err = UnknownErrorCode;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s { $($text => Ok(ErrorCode::$variant),)* _ => Err(UnknownErrorCode) }
            }
        }
    };
}

codes! {
    BadRequest => "bad_request", "The request is malformed or a field is out of range.";
    MalformedJson => "malformed_json", "The body is not valid JSON for this request.";
    PayloadTooLarge => "payload_too_large", "The body or frame is larger than the limit.";
    Undecodable => "undecodable", "Binary input could not be decoded.";
    UnknownEvent => "unknown_event", "No event has this id.";
    UnknownNode => "unknown_node", "No node of the cluster has this name.";
    EventExists => "event_exists", "An event with this id exists; its venue and settings cannot be replaced.";
    UnknownSection => "unknown_section", "The venue has no such section.";
    UnknownSeat => "unknown_seat", "The venue has no such seat.";
    UnknownPriceLevel => "unknown_price_level", "The venue has no such price level.";
    InvalidToken => "invalid_token", "The token is forged, corrupt or for another event or fan.";
    TokenExpired => "token_expired", "The token is older than its lifetime.";
    Unauthorized => "unauthorized", "A valid session or operator token is required.";
    Forbidden => "forbidden", "This session may not do that (another fan's request, an operator or provider command).";
    WaitingRoomFull => "waiting_room_full", "Waiting room full, please try again later.";
    SoldOut => "sold_out", "Every ticket is sold.";
    SaleClosed => "sale_closed", "The sale is closed.";
    WrongSaleState => "wrong_sale_state", "The sale's state does not allow this operator command.";
    SaleNotOpen => "sale_not_open", "The sale has not opened yet or is paused.";
    NotInLine => "not_in_line", "This fan has not joined the waiting room.";
    NotAdmitted => "not_admitted", "This fan is still waiting or its turn has passed.";
    AdmissionExpired => "admission_expired", "This fan's shopping window has lapsed.";
    SeatsUnavailable => "seats_unavailable", "Some requested seats are taken; see the alternative.";
    NotEnoughSeats => "not_enough_seats", "No block of that many adjacent seats is available.";
    TicketLimit => "ticket_limit", "The request exceeds this fan's ticket limit.";
    FairShare => "fair_share", "Fans admitted ahead of others must leave one ticket each for them.";
    AlreadyHolding => "already_holding", "This fan already holds seats; finish or release them first.";
    HoldNotFound => "hold_not_found", "No open hold with this id for this fan.";
    HoldExpired => "hold_expired", "The checkout deadline passed and the seats were released.";
    PaymentLate => "payment_late", "Payment was submitted after the checkout deadline.";
    PaymentPending => "payment_pending", "A payment for this hold is already waiting for the provider.";
    PaymentUnknown => "payment_unknown", "No payment has this id.";
    RequestTimeout => "request_timeout", "The request (its headers or body) took too long to arrive.";
    Busy => "busy", "The event is overloaded; retry after a short wait.";
    RateLimited => "rate_limited", "Too many requests; retry after the given time.";
    Internal => "internal", "An internal error; nothing was changed.";
    // Appended, not sorted in: the binary codec numbers variants in order.
    NotOwner => "not_owner", "Another node owns this event; the answer names it and its lease epoch. Retry shortly, or ask the owner.";
    MethodNotAllowed => "method_not_allowed", "This route does not take that method; the Allow header lists those it takes.";
    HeadersTooLarge => "headers_too_large", "The request line and headers are larger than the limit.";
    PresaleCodeRequired => "presale_code_required", "The event is in its presale: joining takes the fan's presale code.";
    InvalidPresaleCode => "invalid_presale_code", "The presale code is forged, corrupt or for another event or fan.";
    PresaleCodeUsed => "presale_code_used", "This fan's presale code already made its place in line; come back with the queue token.";
    StampRequired => "stamp_required", "Joining now takes a proof of work: GET the event's challenge, solve it, and join with the X-Onsale-Stamp header.";
    StampMalformed => "stamp_malformed", "The stamp is not a challenge and a counter.";
    StampForged => "stamp_forged", "The stamp's challenge was not issued by this cluster.";
    StampWrongEvent => "stamp_wrong_event", "The stamp's challenge is for another event.";
    StampWrongFan => "stamp_wrong_fan", "The stamp's challenge is for another fan.";
    StampStale => "stamp_stale", "The stamp's challenge is too old: fetch a new one.";
    StampFuture => "stamp_future", "The stamp's challenge was issued in the future.";
    StampInsufficient => "stamp_insufficient", "The stamp does not have enough leading zero bits.";
    StampReplayed => "stamp_replayed", "The stamp was already used.";
    StampBusy => "stamp_busy", "The gateway remembers too many live stamps to take another: retry shortly.";
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that is not one of the stable error codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown error code")]
pub struct UnknownErrorCode;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for code in ErrorCode::ALL {
            assert!(seen.insert(code.as_str()), "duplicate {}", code.as_str());
            assert_eq!(code.as_str().parse::<ErrorCode>(), Ok(*code));
            let json = serde_json::to_string(code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
        }
        assert_eq!("no_such_code".parse::<ErrorCode>(), Err(UnknownErrorCode));
    }
}
