//! Replies as HTTP responses, and the gateway's own errors.
//!
//! Every error body, whoever raised it, has the shape of a `Reply::Error`:
//! `{"reply":"error","code":"...","message":"..."}` with a stable code; a
//! `not_owner` error (`Reply::NotOwner`) adds `"owner":{"node":…,"epoch":…,
//! "lease_expires":…}`. Business outcomes (`join_refused`, `hold_rejected`,
//! ...) are 200 replies; an outcome that says the request named nothing
//! real (`hold_not_found`) is answered as its error ([`over_http`]).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use onsale_schema::ErrorCode;
use onsale_schema::message::{EventOwner, PaymentRefused, Reply};
use serde::Serialize;

/// An error raised by the gateway itself, or an error reply from the node,
/// with an optional Retry-After.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    pub retry_after_s: Option<u64>,
    /// For `not_owner`: the node that owns the event.
    pub owner: Option<EventOwner>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            message: message.into(),
            retry_after_s: None,
            owner: None,
        }
    }

    /// The node's answer that another node owns the event.
    #[must_use]
    pub fn not_owner(owner: EventOwner) -> ApiError {
        let message = format!(
            "node {} owns this event (lease epoch {}); retry shortly",
            owner.node, owner.epoch
        );
        ApiError {
            owner: Some(owner),
            ..ApiError::new(ErrorCode::NotOwner, message)
        }
    }

    #[must_use]
    pub fn retry_after(mut self, seconds: u64) -> ApiError {
        self.retry_after_s = Some(seconds.max(1));
        self
    }
}

/// Every error body: the JSON of a `Reply::Error`, and the owner for
/// `not_owner`.
#[derive(Serialize)]
struct ErrorBody<'a> {
    reply: &'static str,
    code: ErrorCode,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    owner: Option<&'a EventOwner>,
}

impl IntoResponse for ApiError {
    /// Busy, not-owner and rate-limited errors carry `Retry-After: 1`
    /// unless the error sets one.
    fn into_response(self) -> Response {
        let status = status_of(self.code);
        let body = ErrorBody {
            reply: "error",
            code: self.code,
            message: &self.message,
            owner: self.owner.as_ref(),
        };
        let mut response = json_response(status, &body);
        let retry = match self.retry_after_s {
            Some(seconds) => HeaderValue::from_str(&seconds.to_string()).ok(),
            None => matches!(
                status,
                StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS
            )
            .then_some(HeaderValue::from_static("1")),
        };
        if let Some(value) = retry {
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
        | ErrorCode::InvalidPresaleCode
        | ErrorCode::TokenExpired => StatusCode::BAD_REQUEST,
        ErrorCode::PresaleCodeRequired => StatusCode::FORBIDDEN,
        ErrorCode::StampRequired => StatusCode::PRECONDITION_REQUIRED,
        ErrorCode::StampMalformed
        | ErrorCode::StampForged
        | ErrorCode::StampWrongEvent
        | ErrorCode::StampWrongFan
        | ErrorCode::StampStale
        | ErrorCode::StampFuture
        | ErrorCode::StampInsufficient
        | ErrorCode::StampReplayed => StatusCode::FORBIDDEN,
        ErrorCode::StampBusy => StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::UnknownEvent | ErrorCode::UnknownNode => StatusCode::NOT_FOUND,
        ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
        ErrorCode::Forbidden => StatusCode::FORBIDDEN,
        ErrorCode::EventExists
        | ErrorCode::WrongSaleState
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
        | ErrorCode::PaymentUnknown
        | ErrorCode::PresaleCodeUsed => StatusCode::CONFLICT,
        ErrorCode::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
        ErrorCode::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
        ErrorCode::HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        // Not owned here: the same answer as busy for a client (retry);
        // the body names the owner, which is what a redirect will use.
        ErrorCode::Busy | ErrorCode::NotOwner => StatusCode::SERVICE_UNAVAILABLE,
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
        | Reply::Stamp { .. }
        | Reply::Audit { .. }
        | Reply::NodeStatus { .. }
        | Reply::Error { .. }
        | Reply::NotOwner { .. } => reply,
    }
}

/// A reply as an HTTP response ([`over_http`]): an error (`Reply::Error`,
/// `Reply::NotOwner`) as [`ApiError`] does, every other reply 200.
pub fn reply_response(reply: Reply) -> Response {
    match over_http(reply) {
        Reply::Error { code, message } => ApiError::new(code, message).into_response(),
        Reply::NotOwner { owner } => ApiError::not_owner(owner).into_response(),
        reply => json_response(StatusCode::OK, &reply),
    }
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

    async fn body_json(response: Response) -> serde_json::Value {
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .expect("body");
        serde_json::from_slice(&bytes).expect("json")
    }

    #[tokio::test]
    async fn not_owner_is_503_with_retry_after_and_names_the_owner() {
        let owner = EventOwner {
            node: "node@127.0.0.1:7071".into(),
            epoch: 4,
            lease_expires: onsale_schema::Millis(1_796_000_000_000),
        };
        let response = reply_response(Reply::NotOwner {
            owner: owner.clone(),
        });
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], "1");
        let body = body_json(response).await;
        assert_eq!(body["reply"], "error");
        assert_eq!(body["code"], "not_owner");
        assert_eq!(body["owner"]["node"], "node@127.0.0.1:7071");
        assert_eq!(body["owner"]["epoch"], 4);
        assert_eq!(body["owner"]["lease_expires"], 1_796_000_000_000_u64);
        assert!(body["message"].as_str().unwrap().contains("epoch 4"));
    }

    #[tokio::test]
    async fn error_bodies_keep_the_reply_error_shape() {
        let response = reply_response(Reply::error(ErrorCode::SoldOut, "Every ticket is sold."));
        assert_eq!(response.status(), StatusCode::CONFLICT);
        let body = body_json(response).await;
        let reply: Reply = serde_json::from_value(body).expect("a Reply::Error");
        assert_eq!(
            reply,
            Reply::error(ErrorCode::SoldOut, "Every ticket is sold.")
        );
    }
}
