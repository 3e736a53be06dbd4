//! The HTTP gateway: the routes, the accept loop and the middleware every
//! request passes. The protocol is documented in `docs/protocol.md`; its
//! types are in `schema` (`message` for event commands and replies, `api`
//! for the rest).
//!
//! - `state.rs`: [`Gateway`], the shared state, and [`GatewayConfig`].
//! - `fan.rs`: the session, the catalogue and fan commands.
//! - `operator.rs`: creating events, opening and closing sales, stats.
//! - `webhook.rs`: the payment provider's signed answers.
//!
//! A request passes, in order: the global rate limit (fan-facing routes),
//! authentication (session, operator token or webhook signature), the edge
//! cache (a fresh `join` to a sold-out or closed event is answered here),
//! the per-fan rate limit, and only then the event actor.

mod cluster_ops;
mod fan;
mod operator;
mod shaped_io;
mod state;
mod webhook;

use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use onsale_schema::message::Reply;
use onsale_schema::{ErrorCode, EventId, limits};
use serde::de::DeserializeOwned;

pub use shaped_io::ShapedIo;
pub use state::{Gateway, GatewayConfig, Inner};
pub use webhook::WEBHOOKS_REMEMBERED_MAX;

use crate::auth;
use crate::reply::{ApiError, reply_response};

pub(crate) fn unexpected(reply: &Reply) -> ApiError {
    tracing::error!(?reply, "an unexpected reply");
    ApiError::new(ErrorCode::Internal, "unexpected reply from the event")
}

/// The gateway's routes.
pub fn router(gateway: Gateway) -> Router {
    let fan = Router::new()
        .route("/api/session", post(fan::session))
        .route("/api/events", get(fan::list_events))
        .route("/api/events/{event}", get(fan::event_detail))
        .route(
            "/api/events/{event}/sections/{section}",
            get(fan::section_detail),
        )
        .route("/api/events/{event}/commands", post(fan::command))
        .route("/api/events/{event}/challenge", get(fan::challenge))
        .route("/ws", get(crate::ws::upgrade))
        .layer(middleware::from_fn_with_state(
            gateway.clone(),
            client_limit,
        ))
        .layer(middleware::from_fn_with_state(
            gateway.clone(),
            global_limit,
        ));
    let ops = Router::new()
        .route(
            VENUE_ROUTE,
            post(operator::create_event)
                .layer(DefaultBodyLimit::max(limits::VENUE_FILE_BYTES_MAX))
                .get(cluster_ops::events),
        )
        .route("/api/ops/events/{event}", get(cluster_ops::event))
        .route("/api/ops/events/{event}/sale", post(operator::sale))
        .route("/api/ops/events/{event}/stats", get(operator::stats))
        .route(
            "/api/ops/events/{event}/presale-codes",
            post(operator::presale_codes),
        )
        .route("/api/ops/events/{event}/stamp", post(operator::stamp))
        .route("/api/ops/events/{event}/audit", get(operator::audit))
        .route("/api/ops/events/{event}/move", post(operator::move_event))
        .route("/api/ops/cluster", get(cluster_ops::cluster))
        .route("/api/ops/nodes", get(cluster_ops::nodes))
        .route(
            "/api/ops/nodes/{node}",
            get(cluster_ops::node).delete(cluster_ops::forget),
        )
        .route("/api/ops/nodes/{node}/cordon", post(cluster_ops::cordon))
        .route(
            "/api/ops/nodes/{node}/uncordon",
            post(cluster_ops::uncordon),
        )
        .route("/api/ops/nodes/{node}/drain", post(cluster_ops::drain))
        .route_layer(middleware::from_fn_with_state(
            gateway.clone(),
            operator_only,
        ));
    let provider = Router::new()
        .route("/api/webhooks/payments", post(webhook::webhook))
        .layer(middleware::from_fn_with_state(
            gateway.clone(),
            global_limit,
        ));
    Router::new()
        .route("/", get(crate::page::index))
        .route("/app.js", get(crate::page::app_js))
        .route("/stamp-worker.js", get(crate::page::stamp_worker_js))
        .route("/app.css", get(crate::page::app_css))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .merge(fan)
        .merge(ops)
        .merge(provider)
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(limits::MESSAGE_BYTES_MAX))
        .layer(middleware::from_fn(declared_length_limit))
        .layer(middleware::from_fn(error_shape))
        .layer(middleware::from_fn(request_deadline))
        .layer(middleware::from_fn(count_requests))
        .with_state(gateway)
}

/// A connection must send a request's headers within this (also the
/// longest a kept-alive connection may idle between requests).
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(15);

/// A whole request, body included, must be handled within this.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Serve the gateway on `listener` until the process ends.
///
/// A request head over `HTTP_HEAD_BYTES_MAX` is answered 431
/// `headers_too_large` (hyper's answer, given its JSON body by
/// [`ShapedIo`]) and the connection closed. One budget of open connections covers HTTP and websockets together
/// (`conn_capacity`, from the open-files limit): past it, new connections
/// are closed at once instead of starving the process of file handles.
pub async fn serve(listener: tokio::net::TcpListener, gateway: Gateway) -> std::io::Result<()> {
    let app = router(gateway.clone());
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file handles, or a connection reset while queued.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        if gateway.open_connections() >= gateway.conn_capacity {
            metrics::counter!("onsale_connections_refused_total").increment(1);
            drop(stream);
            continue;
        }
        let _ = stream.set_nodelay(true);
        let guard = HttpGuard::new(&gateway);
        // Every request carries its TCP peer (for per-client limits).
        let service = tower::ServiceExt::map_request(
            app.clone(),
            move |mut request: hyper::Request<hyper::body::Incoming>| {
                request.extensions_mut().insert(Peer(peer));
                request
            },
        );
        let service = hyper_util::service::TowerToHyperService::new(service);
        tokio::spawn(async move {
            let served = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .max_buf_size(limits::HTTP_HEAD_BYTES_MAX)
                .serve_connection(hyper_util::rt::TokioIo::new(ShapedIo::new(stream)), service)
                .with_upgrades()
                .await;
            if let Err(e) = served {
                tracing::debug!(error = %e, "an HTTP connection ended with an error");
            }
            drop(guard);
        });
    }
}

/// Counts an HTTP connection open while it lives.
struct HttpGuard(Gateway);

impl HttpGuard {
    fn new(gateway: &Gateway) -> HttpGuard {
        gateway.http_open.fetch_add(1, Ordering::Relaxed);
        HttpGuard(gateway.clone())
    }
}

impl Drop for HttpGuard {
    fn drop(&mut self) {
        self.0.http_open.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn request_deadline(request: Request, next: Next) -> Response {
    match tokio::time::timeout(REQUEST_TIMEOUT, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::new(
            ErrorCode::RequestTimeout,
            format!("the request took over {} s", REQUEST_TIMEOUT.as_secs()),
        )
        .into_response(),
    }
}

/// The one route whose body may be a whole venue file.
const VENUE_ROUTE: &str = "/api/ops/events";

/// The largest body `route` takes (`None`: no route matched).
fn body_bytes_max(route: Option<&str>) -> usize {
    if route == Some(VENUE_ROUTE) {
        limits::VENUE_FILE_BYTES_MAX
    } else {
        limits::MESSAGE_BYTES_MAX
    }
}

/// A body declared (`Content-Length`) over the route's limit is refused
/// before a byte of it is read; a chunked body is cut at the limit as it
/// is read (`DefaultBodyLimit`).
async fn declared_length_limit(request: Request, next: Next) -> Response {
    let max = body_bytes_max(
        request
            .extensions()
            .get::<MatchedPath>()
            .map(MatchedPath::as_str),
    );
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        let mut response = ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!("the body is over this route's limit of {max} bytes"),
        )
        .into_response();
        // The body is never read: the connection cannot be reused.
        response.headers_mut().insert(
            header::CONNECTION,
            header::HeaderValue::from_static("close"),
        );
        return response;
    }
    next.run(request).await
}

/// Every error answer in the documented shape: an error that axum raised
/// itself (405 with an empty body, a path that is not UTF-8 in plain
/// text, ...) is given a JSON error body with the code its status means.
async fn error_shape(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if is_json || !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let code = match status {
        StatusCode::METHOD_NOT_ALLOWED => ErrorCode::MethodNotAllowed,
        StatusCode::PAYLOAD_TOO_LARGE => ErrorCode::PayloadTooLarge,
        StatusCode::REQUEST_TIMEOUT => ErrorCode::RequestTimeout,
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => ErrorCode::HeadersTooLarge,
        s if s.is_server_error() => ErrorCode::Internal,
        _ => ErrorCode::BadRequest,
    };
    let (mut parts, body) = response.into_parts();
    // axum's own error texts are short; a longer one is cut.
    let text = axum::body::to_bytes(body, 1024).await.unwrap_or_default();
    let message = match std::str::from_utf8(&text) {
        Ok(text) if !text.trim().is_empty() => text.trim().to_owned(),
        _ => status.canonical_reason().unwrap_or("error").to_lowercase(),
    };
    let shaped = ApiError::new(code, message).into_response();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.remove(header::CONTENT_TYPE);
    let (shaped_parts, shaped_body) = shaped.into_parts();
    parts.headers.extend(shaped_parts.headers);
    Response::from_parts(parts, shaped_body)
}

async fn operator_only(State(gw): State<Gateway>, request: Request, next: Next) -> Response {
    // Checked before the body is read: an anonymous client cannot make
    // the gateway buffer a venue-sized body.
    match auth::check_operator(gw.operator_token(), request.headers()) {
        Ok(()) => next.run(request).await,
        Err(e) => e.into_response(),
    }
}

async fn count_requests(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let response = next.run(request).await;
    metrics::counter!(
        "onsale_http_requests_total",
        "route" => route,
        "status" => response.status().as_u16().to_string()
    )
    .increment(1);
    response
}

/// The TCP peer of a request's connection.
#[derive(Clone, Copy, Debug)]
pub struct Peer(pub std::net::SocketAddr);

/// Per-client limits on the fan routes (when configured): the client is
/// the TCP peer, or the address a trusted proxy forwarded; logins count
/// against their own limit too.
async fn client_limit(State(gw): State<Gateway>, request: Request, next: Next) -> Response {
    if gw.limits.per_client()
        && let Some(Peer(peer)) = request.extensions().get::<Peer>().copied()
    {
        let forwarded = request
            .headers()
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect::<Vec<&str>>();
        let client =
            crate::client::client_addr(peer.ip(), forwarded.into_iter(), &gw.trusted_proxies);
        let login = request.uri().path() == "/api/session";
        if let Err(e) = gw
            .limits
            .check_client(crate::client::ClientKey::of(client), login)
        {
            return e.into_response();
        }
    }
    next.run(request).await
}

async fn global_limit(State(gw): State<Gateway>, request: Request, next: Next) -> Response {
    match gw.limits.check_global() {
        Ok(()) => next.run(request).await,
        Err(e) => e.into_response(),
    }
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz() -> &'static str {
    "ready"
}

async fn metrics_text() -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        crate::telemetry::render(),
    )
        .into_response()
}

async fn not_found() -> ApiError {
    ApiError::new(
        ErrorCode::BadRequest,
        "no such route (see docs/protocol.md)",
    )
}

/// A JSON body of type `T`, or the error that explains why not.
pub(crate) fn parse_body<T: DeserializeOwned>(
    body: Result<Bytes, BytesRejection>,
) -> Result<T, ApiError> {
    let body = match body {
        Ok(body) => body,
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return Err(ApiError::new(
                ErrorCode::PayloadTooLarge,
                "the body is over this route's size limit",
            ));
        }
        Err(rejection) => {
            return Err(ApiError::new(
                ErrorCode::BadRequest,
                format!("could not read the body: {}", rejection.body_text()),
            ));
        }
    };
    serde_json::from_slice(&body)
        .map_err(|e| ApiError::new(ErrorCode::MalformedJson, format!("malformed JSON: {e}")))
}

pub(crate) fn parse_event(text: &str) -> Result<EventId, ApiError> {
    text.parse::<u64>().map(EventId).map_err(|_| {
        ApiError::new(
            ErrorCode::BadRequest,
            "the event id must be a non-negative integer",
        )
    })
}

pub(crate) fn reply_result(reply: Reply) -> Result<Response, ApiError> {
    Ok(reply_response(reply))
}
