//! Replies as HTTP responses, and the gateway's own errors.
//!
//! Every error body, whoever raised it, is a `Reply::Error`:
//! `{"reply":"error","code":"...","message":"..."}` with a stable code, and
//! each code has one status ([`status_of`]). Business outcomes of a fan's
//! journey (`join_refused`, `hold_rejected`, a late payment, ...) are 200
//! replies; an outcome that says the request named nothing real
//! (`hold_not_found`) is answered as its error ([`over_http`]).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use onsale_schema::ErrorCode;
use onsale_schema::message::{PaymentRefused, Reply};
use serde::Serialize;

/// An error raised by the gateway itself, with an optional Retry-After.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    pub retry_after_s: Option<u64>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            message: message.into(),
            retry_after_s: None,
        }
    }

    #[must_use]
    pub fn retry_after(mut self, seconds: u64) -> ApiError {
        self.retry_after_s = Some(seconds.max(1));
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let retry = self.retry_after_s;
        let mut response = reply_response(Reply::error(self.code, self.message));
        if let Some(seconds) = retry
            && let Ok(value) = HeaderValue::from_str(&seconds.to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        response
    }
}

/// The HTTP status of an error code. Exhaustive on purpose: a new code
/// must be given a status here.
#[must_use]
pub fn status_of(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::BadRequest
        | ErrorCode::MalformedJson
        | ErrorCode::Undecodable
        | ErrorCode::UnknownSection
        | ErrorCode::UnknownSeat
        | ErrorCode::UnknownPriceLevel
        | ErrorCode::InvalidToken
        | ErrorCode::TokenExpired => StatusCode::BAD_REQUEST,
        ErrorCode::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::UnknownEvent => StatusCode::NOT_FOUND,
        ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
        ErrorCode::Forbidden => StatusCode::FORBIDDEN,
        ErrorCode::EventExists
        | ErrorCode::WaitingRoomFull
        | ErrorCode::SoldOut
        | ErrorCode::SaleClosed
        | ErrorCode::SaleNotOpen
        | ErrorCode::NotInLine
        | ErrorCode::NotAdmitted
        | ErrorCode::AdmissionExpired
        | ErrorCode::SeatsUnavailable
        | ErrorCode::NotEnoughSeats
        | ErrorCode::TicketLimit
        | ErrorCode::FairShare
        | ErrorCode::AlreadyHolding
        | ErrorCode::HoldNotFound
        | ErrorCode::HoldExpired
        | ErrorCode::PaymentLate
        | ErrorCode::PaymentPending
        | ErrorCode::PaymentUnknown => StatusCode::CONFLICT,
        ErrorCode::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
        ErrorCode::Busy => StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// A reply as the HTTP API gives it: an event's outcome that names nothing
/// real becomes the error with its code (`hold_not_found`, 409, whether a
/// `release` or a `submit_payment` named the hold); every other reply is
/// given as it is. Exhaustive on purpose: a new reply or refusal must be
/// placed here.
#[must_use]
pub fn over_http(reply: Reply) -> Reply {
    match reply {
        Reply::PaymentRefused { refused } => match refused {
            PaymentRefused::HoldNotFound => {
                Reply::error(refused.code(), refused.code().description())
            }
            PaymentRefused::Late | PaymentRefused::Pending => Reply::PaymentRefused { refused },
        },
        Reply::Joined { .. }
        | Reply::JoinRefused { .. }
        | Reply::Status { .. }
        | Reply::Overview { .. }
        | Reply::SectionSeats { .. }
        | Reply::HoldPlaced { .. }
        | Reply::HoldRejected { .. }
        | Reply::Released
        | Reply::PaymentStarted { .. }
        | Reply::PaymentSettled { .. }
        | Reply::Sale { .. }
        | Reply::Audit { .. }
        | Reply::Error { .. } => reply,
    }
}

/// A reply as an HTTP response ([`over_http`]): 200 unless it is an
/// error. Busy and rate-limited errors carry `Retry-After: 1` unless the
/// caller sets one.
pub fn reply_response(reply: Reply) -> Response {
    let reply = over_http(reply);
    let status = match &reply {
        Reply::Error { code, .. } => status_of(*code),
        _ => StatusCode::OK,
    };
    let mut response = json_response(status, &reply);
    if matches!(
        status,
        StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS
    ) {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    response
}

/// Any serialisable value as a JSON response.
pub fn json_response<T: Serialize>(status: StatusCode, value: &T) -> Response {
    match serde_json::to_vec(value) {
        Ok(body) => (
            status,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            body,
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "a reply did not encode as JSON");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                [(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                )],
                r#"{"reply":"error","code":"internal","message":"the reply could not be encoded"}"#,
            )
                .into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_map_to_statuses() {
        assert_eq!(status_of(ErrorCode::UnknownEvent), StatusCode::NOT_FOUND);
        assert_eq!(status_of(ErrorCode::Busy), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(status_of(ErrorCode::MalformedJson), StatusCode::BAD_REQUEST);
        assert_eq!(status_of(ErrorCode::Unauthorized), StatusCode::UNAUTHORIZED);
        assert_eq!(status_of(ErrorCode::Forbidden), StatusCode::FORBIDDEN);
        for code in ErrorCode::ALL {
            assert!(status_of(*code).is_client_error() || status_of(*code).is_server_error());
        }
    }

    #[test]
    fn an_unknown_hold_is_409_hold_not_found_and_other_refusals_stay_200() {
        let response = reply_response(Reply::PaymentRefused {
            refused: PaymentRefused::HoldNotFound,
        });
        assert_eq!(response.status(), StatusCode::CONFLICT);
        assert_eq!(
            over_http(Reply::PaymentRefused {
                refused: PaymentRefused::HoldNotFound
            }),
            Reply::error(
                ErrorCode::HoldNotFound,
                ErrorCode::HoldNotFound.description()
            )
        );
        for refused in [PaymentRefused::Late, PaymentRefused::Pending] {
            let reply = Reply::PaymentRefused { refused };
            assert_eq!(over_http(reply.clone()), reply);
            assert_eq!(reply_response(reply).status(), StatusCode::OK);
        }
    }

    #[test]
    fn busy_and_rate_limited_carry_retry_after() {
        let response = reply_response(Reply::error(ErrorCode::Busy, "busy"));
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], "1");
        let limited = ApiError::new(ErrorCode::RateLimited, "slow down")
            .retry_after(3)
            .into_response();
        assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(limited.headers()[header::RETRY_AFTER], "3");
        let ok = reply_response(Reply::Released);
        assert_eq!(ok.status(), StatusCode::OK);
        assert!(ok.headers().get(header::RETRY_AFTER).is_none());
    }
}
