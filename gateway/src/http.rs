//! The HTTP gateway: routes, the shared state, and the fan and operator
//! handlers. The protocol is documented in `docs/protocol.md`; its types
//! are in `schema` (`message` for event commands and replies, `api` for
//! the rest).
//!
//! A request passes, in order: the global rate limit (fan-facing routes),
//! authentication (session, operator token or webhook signature), the edge
//! cache (a fresh `join` to a full / sold-out / closed event is answered
//! here), the per-fan rate limit, and only then the event actor.

use std::num::NonZeroU32;
use std::ops::Deref;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, MatchedPath, Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use onsale_actors::clock::wall_now;
use onsale_cluster::node::Node;
use onsale_schema::api::{
    CreateEvent, EventDetail, EventList, ProviderWebhook, SaleRequest, SessionRequest,
};
use onsale_schema::message::{Command, JoinRefused, Reply};
use onsale_schema::spec::EventSpec;
use onsale_schema::token::TokenKey;
use onsale_schema::{ErrorCode, EventId, SaleState, SectionIdx, limits};
use serde::de::DeserializeOwned;

use crate::auth;
use crate::catalog::{Catalog, Search};
use crate::edge::{EdgeCache, LimitConfig, Limits, Lookup};
use crate::hub::{self, HubHandle, HubMsg};
use crate::reply::{ApiError, json_response, reply_response};

/// How the gateway runs.
#[derive(Clone, Debug)]
pub struct GatewayConfig {
    /// The cluster's key: signs sessions and queue tokens.
    pub key: TokenKey,
    /// The operators' bearer token.
    pub operator_token: String,
    /// The payment provider's webhook secret; `None` refuses webhooks.
    pub webhook_secret: Option<Vec<u8>>,
    pub limits: LimitConfig,
    /// Connections (HTTP and websockets) this process may hold, from its
    /// open-files limit.
    pub conn_capacity: usize,
}

impl GatewayConfig {
    /// Defaults for tests and the demo: generous limits.
    #[must_use]
    pub fn new(key: TokenKey, operator_token: String) -> GatewayConfig {
        GatewayConfig {
            key,
            operator_token,
            webhook_secret: None,
            limits: LimitConfig {
                global_per_s: NonZeroU32::new(50_000).expect("non-zero"),
                fan_per_s: NonZeroU32::new(10).expect("non-zero"),
                fan_burst: NonZeroU32::new(30).expect("non-zero"),
            },
            conn_capacity: 1_000,
        }
    }
}

/// The gateway's shared state (cheap to clone).
#[derive(Clone, Debug)]
pub struct Gateway(Arc<Inner>);

#[derive(Debug)]
pub struct Inner {
    pub node: Node,
    pub key: TokenKey,
    operator_token: String,
    webhook_secret: Option<Vec<u8>>,
    pub limits: Limits,
    pub edge: Arc<EdgeCache>,
    pub catalog: Catalog,
    pub hub: HubHandle,
    pub ws_open: AtomicUsize,
    pub http_open: AtomicUsize,
    /// Webhook signatures seen within the replay window, and when.
    webhook_seen: std::sync::Mutex<rustc_hash::FxHashMap<String, onsale_schema::Millis>>,
    /// Open websockets per fan (entries removed at zero).
    pub fan_sockets: std::sync::Mutex<rustc_hash::FxHashMap<onsale_schema::FanId, u16>>,
    /// Open connections (HTTP and websockets together) this process may
    /// hold, from its open-files limit.
    pub conn_capacity: usize,
}

impl Deref for Gateway {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl Gateway {
    /// Connections open now, HTTP and websockets.
    #[must_use]
    pub fn open_connections(&self) -> usize {
        self.http_open.load(Ordering::Relaxed) + self.ws_open.load(Ordering::Relaxed)
    }

    /// The gateway over a started node (spawns its hub and upkeep tasks).
    #[must_use]
    pub fn new(node: Node, config: GatewayConfig) -> Gateway {
        crate::telemetry::install();
        let edge = Arc::new(EdgeCache::default());
        let hub = hub::spawn(node.clone(), Arc::clone(&edge));
        let gateway = Gateway(Arc::new(Inner {
            catalog: Catalog::new(node.clone()),
            node,
            key: config.key,
            operator_token: config.operator_token,
            webhook_secret: config.webhook_secret,
            limits: Limits::new(config.limits),
            edge,
            hub,
            ws_open: AtomicUsize::new(0),
            http_open: AtomicUsize::new(0),
            fan_sockets: std::sync::Mutex::default(),
            webhook_seen: std::sync::Mutex::default(),
            conn_capacity: config.conn_capacity,
        }));
        let weak = Arc::downgrade(&gateway.0);
        tokio::spawn(async move {
            let mut every = tokio::time::interval(std::time::Duration::from_secs(10));
            loop {
                every.tick().await;
                let Some(inner) = weak.upgrade() else { return };
                inner.limits.forget_idle();
            }
        });
        gateway
    }

    /// Refresh the edge's entry for `event` in the background.
    pub fn refresh_edge(&self, event: EventId) {
        let gw = self.clone();
        tokio::spawn(async move {
            match gw.node.call(event, Command::Overview).await {
                Reply::Overview { overview } => gw.edge.learn(&overview),
                _ => gw.edge.refresh_failed(event),
            }
        });
    }

    /// The event's sale state: from the edge cache, else from an overview.
    pub async fn sale_state(&self, event: EventId) -> Result<SaleState, ApiError> {
        if let Some(state) = self.edge.get(event) {
            return Ok(state.sale);
        }
        match self.node.call(event, Command::Overview).await {
            Reply::Overview { overview } => {
                self.edge.learn(&overview);
                Ok(overview.sale)
            }
            Reply::Error { code, message } => Err(ApiError::new(code, message)),
            Reply::NotOwner { owner } => Err(ApiError::not_owner(owner)),
            other => Err(unexpected(&other)),
        }
    }
}

fn unexpected(reply: &Reply) -> ApiError {
    tracing::error!(?reply, "an unexpected reply");
    ApiError::new(ErrorCode::Internal, "unexpected reply from the event")
}

/// The gateway's routes.
pub fn router(gateway: Gateway) -> Router {
    let fan = Router::new()
        .route("/api/session", post(session))
        .route("/api/events", get(list_events))
        .route("/api/events/{event}", get(event_detail))
        .route(
            "/api/events/{event}/sections/{section}",
            get(section_detail),
        )
        .route("/api/events/{event}/commands", post(command))
        .route("/ws", get(crate::ws::upgrade))
        .layer(middleware::from_fn_with_state(
            gateway.clone(),
            global_limit,
        ));
    let ops = Router::new()
        .route(
            "/api/ops/events",
            post(create_event).layer(DefaultBodyLimit::max(limits::VENUE_FILE_BYTES_MAX)),
        )
        .route("/api/ops/events/{event}/sale", post(sale))
        .route("/api/ops/events/{event}/stats", get(stats))
        .route("/api/ops/events/{event}/audit", get(audit))
        .route_layer(middleware::from_fn_with_state(
            gateway.clone(),
            operator_only,
        ));
    let provider = Router::new()
        .route("/api/webhooks/payments", post(webhook))
        .layer(middleware::from_fn_with_state(
            gateway.clone(),
            global_limit,
        ));
    Router::new()
        .route("/", get(crate::page::index))
        .route("/app.js", get(crate::page::app_js))
        .route("/app.css", get(crate::page::app_css))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .merge(fan)
        .merge(ops)
        .merge(provider)
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(limits::MESSAGE_BYTES_MAX))
        .layer(middleware::from_fn(request_deadline))
        .layer(middleware::from_fn(count_requests))
        .with_state(gateway)
}

/// Webhook signatures remembered for replay detection.
pub const WEBHOOKS_REMEMBERED_MAX: usize = 100_000;

/// A connection must send a request's headers within this (also the
/// longest a kept-alive connection may idle between requests).
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(15);

/// A whole request, body included, must be handled within this.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Serve the gateway on `listener` until the process ends.
///
/// One budget of open connections covers HTTP and websockets together
/// (`conn_capacity`, from the open-files limit): past it, new connections
/// are closed at once instead of starving the process of file handles.
pub async fn serve(listener: tokio::net::TcpListener, gateway: Gateway) -> std::io::Result<()> {
    let app = router(gateway.clone());
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
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
        let service = hyper_util::service::TowerToHyperService::new(app.clone());
        tokio::spawn(async move {
            let served = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
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

async fn operator_only(State(gw): State<Gateway>, request: Request, next: Next) -> Response {
    // Checked before the body is read: an anonymous client cannot make
    // the gateway buffer a venue-sized body.
    match auth::check_operator(&gw.operator_token, request.headers()) {
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
fn parse_body<T: DeserializeOwned>(body: Result<Bytes, BytesRejection>) -> Result<T, ApiError> {
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

fn parse_event(text: &str) -> Result<EventId, ApiError> {
    text.parse::<u64>().map(EventId).map_err(|_| {
        ApiError::new(
            ErrorCode::BadRequest,
            "the event id must be a non-negative integer",
        )
    })
}

fn reply_result(reply: Reply) -> Result<Response, ApiError> {
    Ok(reply_response(reply))
}

async fn session(
    State(gw): State<Gateway>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let request: SessionRequest = parse_body(body)?;
    let session = auth::login(&gw.key, &request, wall_now())?;
    Ok(json_response(StatusCode::OK, &session))
}

async fn list_events(
    State(gw): State<Gateway>,
    search: Result<Query<Search>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(search) = search.map_err(|e| {
        ApiError::new(
            ErrorCode::BadRequest,
            format!("bad search: {}", e.body_text()),
        )
    })?;
    let found = gw.catalog.search(&search).await;
    let mut events = Vec::with_capacity(found.len());
    for info in found {
        let edge = match gw.edge.get(info.event) {
            Some(edge) => Some(edge),
            None => {
                if let Reply::Overview { overview } =
                    gw.node.call(info.event, Command::Overview).await
                {
                    gw.edge.learn(&overview);
                }
                gw.edge.get(info.event)
            }
        };
        let (sale, full) = edge.map_or((SaleState::Scheduled, false), |e| (e.sale, e.full));
        events.push(info.listing(sale, full));
    }
    Ok(json_response(StatusCode::OK, &EventList { events }))
}

async fn event_detail(
    State(gw): State<Gateway>,
    Path(event): Path<String>,
) -> Result<Response, ApiError> {
    let event = parse_event(&event)?;
    let info =
        gw.catalog.get(event).await.ok_or_else(|| {
            ApiError::new(ErrorCode::UnknownEvent, format!("no event {}", event.0))
        })?;
    let overview = match gw.node.call(event, Command::Overview).await {
        Reply::Overview { overview } => overview,
        Reply::Error { code, message } => return Err(ApiError::new(code, message)),
        Reply::NotOwner { owner } => return Err(ApiError::not_owner(owner)),
        other => return Err(unexpected(&other)),
    };
    gw.edge.learn(&overview);
    let detail = EventDetail {
        listing: info.listing(overview.sale, overview.full),
        sections: info.sections(&overview),
        overview,
    };
    Ok(json_response(StatusCode::OK, &detail))
}

async fn section_detail(
    State(gw): State<Gateway>,
    Path((event, section)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let event = parse_event(&event)?;
    let section = section
        .parse::<u16>()
        .map(SectionIdx)
        .map_err(|_| ApiError::new(ErrorCode::UnknownSection, "no such section"))?;
    let info =
        gw.catalog.get(event).await.ok_or_else(|| {
            ApiError::new(ErrorCode::UnknownEvent, format!("no event {}", event.0))
        })?;
    let seats = match gw.node.call(event, Command::SectionSeats { section }).await {
        Reply::SectionSeats { seats } => seats,
        Reply::Error { code, message } => return Err(ApiError::new(code, message)),
        Reply::NotOwner { owner } => return Err(ApiError::not_owner(owner)),
        other => return Err(unexpected(&other)),
    };
    let detail = info
        .section_detail(&seats)
        .ok_or_else(|| ApiError::new(ErrorCode::UnknownSection, "no such section"))?;
    Ok(json_response(StatusCode::OK, &detail))
}

async fn command(
    State(gw): State<Gateway>,
    Path(event): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let event = parse_event(&event)?;
    let fan = auth::fan_of(&gw.key, &headers, wall_now())?;
    let command: Command = parse_body(body)?;
    let Some(subject) = fan_of_command(&command) else {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            "operator and provider commands are not accepted on the fan route",
        ));
    };
    if subject != fan {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            "this session acts for another fan",
        ));
    }
    // Unknown events are answered from the catalogue: a flood of made-up
    // ids never reaches the node's router.
    if gw.catalog.get(event).await.is_none() {
        return Err(ApiError::new(
            ErrorCode::UnknownEvent,
            format!("no event {}", event.0),
        ));
    }
    if let Command::Join { .. } = command {
        // The edge: full, sold out and closed cost the event nothing.
        let edge = match gw.edge.lookup(event) {
            Lookup::Fresh(edge) => edge,
            Lookup::Stale { state, refresh } => {
                if refresh {
                    gw.refresh_edge(event);
                }
                state
            }
            Lookup::Unknown => {
                gw.sale_state(event).await?;
                gw.edge.get(event).ok_or_else(|| {
                    ApiError::new(ErrorCode::Busy, "the event's state is not known yet")
                })?
            }
        };
        if let Some(refused) = edge.refuse_join() {
            let answer = match refused {
                JoinRefused::Full => "full",
                JoinRefused::SoldOut => "sold_out",
                _ => "closed",
            };
            metrics::counter!("onsale_edge_answers_total", "answer" => answer).increment(1);
            return reply_result(Reply::JoinRefused { refused });
        }
    }
    gw.limits.check_fan(fan)?;
    let hold_done = match &command {
        Command::SubmitPayment { hold, .. } | Command::Release { hold, .. } => Some(*hold),
        _ => None,
    };
    let reply = gw.node.call(event, command).await;
    match &reply {
        Reply::HoldPlaced { placed } => gw.hub.try_send(HubMsg::Hold {
            event,
            fan,
            hold: placed.hold,
            deadline: placed.deadline,
        }),
        Reply::Joined { joined, .. } => gw.hub.try_send(HubMsg::FanStatus {
            event,
            fan,
            status: Some(joined.status.clone()),
        }),
        Reply::Status { status } => gw.hub.try_send(HubMsg::FanStatus {
            event,
            fan,
            status: status.clone(),
        }),
        Reply::PaymentStarted { .. } | Reply::Released => {
            if let Some(hold) = hold_done {
                gw.hub.try_send(HubMsg::HoldDone { event, hold });
            }
        }
        Reply::JoinRefused { refused } => {
            if matches!(refused, JoinRefused::Full | JoinRefused::SoldOut) {
                // The event knows better than the edge did: refresh it.
                if let Reply::Overview { overview } = gw.node.call(event, Command::Overview).await {
                    gw.edge.learn(&overview);
                }
            }
        }
        _ => {}
    }
    reply_result(reply)
}

/// The fan a command acts for; `None` for operator and provider commands,
/// which never come through the fan route (a provider's answer there
/// would let a fan confirm its own payment).
fn fan_of_command(command: &Command) -> Option<onsale_schema::FanId> {
    match command {
        Command::Join { fan }
        | Command::Resume { fan, .. }
        | Command::Leave { fan }
        | Command::Enter { fan }
        | Command::Status { fan }
        | Command::Hold { fan, .. }
        | Command::Release { fan, .. }
        | Command::SubmitPayment { fan, .. } => Some(*fan),
        Command::Overview
        | Command::SectionSeats { .. }
        | Command::ProviderAnswer { .. }
        | Command::Sale { .. }
        | Command::Audit => None,
    }
}

async fn webhook(
    State(gw): State<Gateway>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let Some(secret) = gw.webhook_secret.as_deref() else {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            "webhooks are off: this gateway has no ONSALE_WEBHOOK_SECRET",
        ));
    };
    let bytes = body.map_err(|e| {
        ApiError::new(
            ErrorCode::BadRequest,
            format!("could not read the body: {}", e.body_text()),
        )
    })?;
    let signature = headers
        .get("onsale-signature")
        .and_then(|v| v.to_str().ok());
    let now = wall_now();
    auth::verify_webhook(secret, signature, &bytes, now)?;
    let answer: ProviderWebhook = parse_body(Ok(bytes))?;
    // A replayed delivery (same signature within the window) changes
    // nothing: it is answered as a duplicate without reaching the event.
    {
        let mut seen = gw.webhook_seen.lock().expect("not poisoned");
        let signature = signature.unwrap_or_default().to_owned();
        if seen.contains_key(&signature) {
            return reply_result(Reply::PaymentSettled {
                settled: onsale_schema::message::PaymentSettled::Ignored,
            });
        }
        if seen.len() >= WEBHOOKS_REMEMBERED_MAX {
            seen.retain(|_, at| now.saturating_sub(*at) <= 2 * auth::WEBHOOK_TOLERANCE_MS);
        }
        if seen.len() >= WEBHOOKS_REMEMBERED_MAX {
            return Err(
                ApiError::new(ErrorCode::Busy, "too many webhook deliveries").retry_after(5),
            );
        }
        seen.insert(signature, now);
    }
    reply_result(
        gw.node
            .call(
                answer.event,
                Command::ProviderAnswer {
                    payment: answer.payment,
                    answer: answer.answer,
                },
            )
            .await,
    )
}

// The operator routes below are reached only through `operator_only`,
// which checks the token before any body is read.

async fn create_event(
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

async fn sale(
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

async fn stats(State(gw): State<Gateway>, Path(event): Path<String>) -> Result<Response, ApiError> {
    let event = parse_event(&event)?;
    let reply = gw.node.call(event, Command::Overview).await;
    if let Reply::Overview { overview } = &reply {
        gw.edge.learn(overview);
    }
    reply_result(reply)
}

async fn audit(State(gw): State<Gateway>, Path(event): Path<String>) -> Result<Response, ApiError> {
    let event = parse_event(&event)?;
    reply_result(gw.node.call(event, Command::Audit).await)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operator_and_provider_commands_have_no_fan() {
        let parse = |json: &str| serde_json::from_str::<Command>(json).unwrap();
        assert_eq!(
            fan_of_command(&parse(r#"{"cmd":"sale","command":"open"}"#)),
            None
        );
        assert_eq!(fan_of_command(&parse(r#"{"cmd":"audit"}"#)), None);
        assert_eq!(
            fan_of_command(&parse(
                r#"{"cmd":"provider_answer","payment":1,"answer":"confirmed"}"#
            )),
            None
        );
        assert_eq!(
            fan_of_command(&parse(r#"{"cmd":"join","fan":7}"#)),
            Some(onsale_schema::FanId(7))
        );
    }
}
