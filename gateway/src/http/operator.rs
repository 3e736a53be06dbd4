//! Operator routes, reached only through the `operator_only` middleware,
//! which checks the bearer token before any body is read.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use onsale_cluster::store::NodeId;
use onsale_schema::ErrorCode;
use onsale_schema::api::{CreateEvent, SaleRequest};
use onsale_schema::message::{Command, Reply};
use onsale_schema::spec::EventSpec;

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
