//! Operator routes, reached only through the `operator_only` middleware,
//! which checks the bearer token before any body is read.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use onsale_cluster::store::NodeId;
use onsale_schema::ErrorCode;
use onsale_schema::api::{
    CreateEvent, PresaleCode, PresaleCodes, PresaleCodesRequest, SaleRequest, StampRequest,
};
use onsale_schema::message::{Command, Reply};
use onsale_schema::spec::EventSpec;
use onsale_schema::{limits, token};

use super::{Gateway, parse_body, parse_event, reply_result};
use crate::reply::{ApiError, json_response};

pub(super) async fn create_event(
    State(gw): State<Gateway>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let create: CreateEvent = parse_body(body)?;
    let venue_json = serde_json::to_string(&create.venue)
        .map_err(|e| ApiError::new(ErrorCode::Internal, format!("venue re-encoding: {e}")))?;
    let spec = EventSpec {
        event: create.event,
        name: create.name,
        city: create.city,
        starts_at: create.starts_at,
        venue_json,
        config: create.config,
    };
    if let Err(e) = spec.venue() {
        return Err(ApiError::new(
            ErrorCode::BadRequest,
            format!("event refused: {e}"),
        ));
    }
    let reply = gw.node.create_event(spec).await;
    gw.catalog.invalidate().await;
    if let Reply::Overview { overview } = &reply {
        gw.edge.learn(overview);
    }
    reply_result(reply)
}

pub(super) async fn sale(
    State(gw): State<Gateway>,
    Path(event): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let event = parse_event(&event)?;
    let request: SaleRequest = parse_body(body)?;
    reply_result(
        gw.node
            .call(
                event,
                Command::Sale {
                    command: request.command,
                },
            )
            .await,
    )
}

/// Presale codes for registered fans: signatures, so issuing them reads
/// and writes nothing (the event checks a code with the same key, and
/// remembers which fans used theirs).
pub(super) async fn presale_codes(
    State(gw): State<Gateway>,
    Path(event): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let event = parse_event(&event)?;
    let request: PresaleCodesRequest = parse_body(body)?;
    let asked = request.fans.len() + request.names.len();
    if asked == 0 || asked > limits::PRESALE_CODES_PER_REQUEST_MAX {
        return Err(ApiError::new(
            ErrorCode::BadRequest,
            format!(
                "ask for 1..={} codes per request (fans and names together)",
                limits::PRESALE_CODES_PER_REQUEST_MAX
            ),
        ));
    }
    if gw.catalog.get(event).await.is_none() {
        return Err(ApiError::new(
            ErrorCode::UnknownEvent,
            format!("no event {}", event.0),
        ));
    }
    let mut codes = Vec::with_capacity(asked);
    for fan in request.fans {
        let code = token::sign_presale(&gw.key, event, fan);
        codes.push(PresaleCode {
            fan,
            name: None,
            code,
        });
    }
    for name in request.names {
        let fan = crate::auth::fan_of_name(&gw.key, &name)?;
        let code = token::sign_presale(&gw.key, event, fan);
        codes.push(PresaleCode {
            fan,
            name: Some(name),
            code,
        });
    }
    Ok(json_response(
        StatusCode::OK,
        &PresaleCodes { event, codes },
    ))
}

/// `POST /api/ops/events/{event}/stamp` `{"bits": N}`: the proof of work
/// joins need (0: none but the event's automatic rule).
pub(super) async fn stamp(
    State(gw): State<Gateway>,
    Path(event): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let event = parse_event(&event)?;
    let request: StampRequest = parse_body(body)?;
    if request.bits > limits::STAMP_BITS_MAX {
        return Err(ApiError::new(
            ErrorCode::BadRequest,
            format!("bits must be 0..={}", limits::STAMP_BITS_MAX),
        ));
    }
    let reply = gw
        .node
        .call(event, Command::SetStamp { bits: request.bits })
        .await;
    if let Reply::Stamp { bits, .. } = reply {
        // This gateway knows at once; the others from the event's push.
        gw.edge
            .apply(event, &onsale_schema::message::Push::Stamp { bits });
    }
    reply_result(reply)
}

pub(super) async fn stats(
    State(gw): State<Gateway>,
    Path(event): Path<String>,
) -> Result<Response, ApiError> {
    let event = parse_event(&event)?;
    let reply = gw.node.call(event, Command::Overview).await;
    if let Reply::Overview { overview } = &reply {
        gw.edge.learn(overview);
    }
    reply_result(reply)
}

pub(super) async fn audit(
    State(gw): State<Gateway>,
    Path(event): Path<String>,
) -> Result<Response, ApiError> {
    let event = parse_event(&event)?;
    reply_result(gw.node.call(event, Command::Audit).await)
}

/// `POST /api/ops/events/{event}/move` with `{"to": "NODE"}`: move the event
/// online to that node (see `Node::move_event`).
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct MoveRequest {
    to: String,
}

pub(super) async fn move_event(
    State(gw): State<Gateway>,
    Path(event): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let event = parse_event(&event)?;
    let request: MoveRequest = parse_body(body)?;
    let registered = gw.node.registered_nodes().await.map_err(|e| {
        ApiError::new(ErrorCode::Busy, format!("the store could not be read: {e}")).retry_after(1)
    })?;
    if !registered.iter().any(|r| r.node.0 == request.to) {
        return Err(ApiError::new(
            ErrorCode::UnknownNode,
            format!("no node named {:?} ever joined the cluster", request.to),
        ));
    }
    match gw.node.move_event(event, NodeId(request.to)).await {
        Ok(owner) => Ok(json_response(
            StatusCode::OK,
            &serde_json::json!({
                "moved": {"event": event, "node": owner.node, "epoch": owner.epoch}
            }),
        )),
        Err(reply) => reply_result(reply),
    }
}
