//! The HTTP gateway, first slice: a JSON API over an in-process [`Node`].
//!
//! Routes:
//!
//! - `GET /healthz`: 200 `ok` while the process serves HTTP.
//! - `GET /readyz`: 200 `ready` once the node has started (the router is
//!   only built over a started node, so this is 200 whenever it answers).
//! - `POST /api/events/{event}/commands`: a JSON [`Command`] in, the JSON
//!   [`Reply`] out (both internally tagged, e.g. `{"cmd":"join","fan":7}`).
//! - `GET /api/events/{event}`: the event's overview (`{"reply":"overview",..}`).
//!
//! Business outcomes, refusals included (`join_refused`, `hold_rejected`,
//! `payment_refused`, ...), are values: 200 with the reply. Only
//! `Reply::Error` maps to an HTTP error status (see [`status_of`]); every
//! error body, including the gateway's own (malformed JSON, a body over
//! [`limits::MESSAGE_BYTES_MAX`], a bad event id), is a `Reply::Error`:
//! `{"reply":"error","code":"...","message":"..."}` with a stable code.
//!
//! NOT YET AUTHENTICATED: in this slice the fan id in a command's body is
//! trusted as given, so anyone reaching this port can act for any fan. The
//! next slice adds signed session tokens; until then serve it on loopback
//! or behind something that authenticates. Operator commands (`sale`,
//! `audit`) and the payment provider's answers (`provider_answer`) are
//! never accepted on this public route: 403 `unauthorized`.

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use onsale_cluster::node::Node;
use onsale_schema::message::{Command, Reply};
use onsale_schema::{ErrorCode, EventId, limits};

/// The gateway's shared state.
#[derive(Clone, Debug)]
struct Gateway {
    node: Node,
}

/// The gateway's routes over a started node.
pub fn router(node: Node) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/api/events/{event}", get(overview))
        .route("/api/events/{event}/commands", post(command))
        .layer(DefaultBodyLimit::max(limits::MESSAGE_BYTES_MAX))
        .with_state(Gateway { node })
}

/// Serve the gateway on `listener` until the process ends.
pub async fn serve(listener: tokio::net::TcpListener, node: Node) -> std::io::Result<()> {
    axum::serve(listener, router(node)).await
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz() -> &'static str {
    "ready"
}

async fn overview(State(gw): State<Gateway>, Path(event): Path<String>) -> Response {
    let event = match parse_event(&event) {
        Ok(event) => event,
        Err(reply) => return reply_response(reply),
    };
    reply_response(gw.node.call(event, Command::Overview).await)
}

async fn command(
    State(gw): State<Gateway>,
    Path(event): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let event = match parse_event(&event) {
        Ok(event) => event,
        Err(reply) => return reply_response(reply),
    };
    let body = match body {
        Ok(body) => body,
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return reply_response(Reply::error(
                ErrorCode::PayloadTooLarge,
                format!("the body is over {} bytes", limits::MESSAGE_BYTES_MAX),
            ));
        }
        Err(rejection) => {
            return reply_response(Reply::error(
                ErrorCode::BadRequest,
                format!("could not read the body: {}", rejection.body_text()),
            ));
        }
    };
    let command: Command = match serde_json::from_slice(&body) {
        Ok(command) => command,
        Err(e) => {
            return reply_response(Reply::error(
                ErrorCode::MalformedJson,
                format!("not a command: {e}"),
            ));
        }
    };
    if !is_public(&command) {
        return reply_response(Reply::error(
            ErrorCode::Unauthorized,
            "operator and provider commands are not accepted here",
        ));
    }
    reply_response(gw.node.call(event, command).await)
}

/// Whether a fan may send `command` through the public route.
fn is_public(command: &Command) -> bool {
    match command {
        Command::Join { .. }
        | Command::Resume { .. }
        | Command::Leave { .. }
        | Command::Enter { .. }
        | Command::Status { .. }
        | Command::Overview
        | Command::SectionSeats { .. }
        | Command::Hold { .. }
        | Command::Release { .. }
        | Command::SubmitPayment { .. } => true,
        // Operators only; and a provider's answer must come from the
        // provider (its webhook), never from the fan who is paying.
        Command::ProviderAnswer { .. } | Command::Sale { .. } | Command::Audit => false,
    }
}

fn parse_event(text: &str) -> Result<EventId, Reply> {
    text.parse::<u64>().map(EventId).map_err(|_| {
        Reply::error(
            ErrorCode::BadRequest,
            "the event id must be a non-negative integer",
        )
    })
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
        ErrorCode::Unauthorized => StatusCode::FORBIDDEN,
        ErrorCode::WaitingRoomFull
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
        ErrorCode::Busy => StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// A reply as an HTTP response: 200 unless it is `Reply::Error`.
fn reply_response(reply: Reply) -> Response {
    let status = match &reply {
        Reply::Error { code, .. } => status_of(*code),
        _ => StatusCode::OK,
    };
    let body = match serde_json::to_vec(&reply) {
        Ok(body) => body,
        Err(e) => {
            tracing::error!(error = %e, "a reply did not encode as JSON");
            let fallback = Reply::error(ErrorCode::Internal, "the reply could not be encoded");
            return reply_response(fallback);
        }
    };
    let mut response = (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_map_to_statuses() {
        assert_eq!(status_of(ErrorCode::UnknownEvent), StatusCode::NOT_FOUND);
        assert_eq!(status_of(ErrorCode::Busy), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(status_of(ErrorCode::MalformedJson), StatusCode::BAD_REQUEST);
        assert_eq!(
            status_of(ErrorCode::PayloadTooLarge),
            StatusCode::PAYLOAD_TOO_LARGE
        );
        assert_eq!(
            status_of(ErrorCode::Internal),
            StatusCode::INTERNAL_SERVER_ERROR
        );
        for code in ErrorCode::ALL {
            assert!(status_of(*code).is_client_error() || status_of(*code).is_server_error());
        }
    }

    #[test]
    fn operator_and_provider_commands_are_not_public() {
        let parse = |json: &str| serde_json::from_str::<Command>(json).unwrap();
        assert!(!is_public(&parse(r#"{"cmd":"sale","command":"open"}"#)));
        assert!(!is_public(&parse(r#"{"cmd":"audit"}"#)));
        assert!(!is_public(&parse(
            r#"{"cmd":"provider_answer","payment":1,"answer":"confirmed"}"#
        )));
        assert!(is_public(&parse(r#"{"cmd":"join","fan":7}"#)));
    }

    #[test]
    fn busy_carries_retry_after() {
        let response = reply_response(Reply::error(ErrorCode::Busy, "busy"));
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], "1");
        let ok = reply_response(Reply::Released);
        assert_eq!(ok.status(), StatusCode::OK);
        assert!(ok.headers().get(header::RETRY_AFTER).is_none());
    }
}
