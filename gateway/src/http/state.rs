//! The gateway's shared state and its settings.

use std::num::NonZeroU32;
use std::ops::Deref;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use onsale_cluster::node::Node;
use onsale_schema::message::{Command, Reply};
use onsale_schema::token::TokenKey;
use onsale_schema::{EventId, SaleState};

use super::unexpected;
use crate::catalog::Catalog;
use crate::edge::{EdgeCache, LimitConfig, Limits};
use crate::hub::{self, HubHandle};
use crate::reply::ApiError;

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
    /// Proxies whose `X-Forwarded-For` names the client (see
    /// `crate::client`); empty: the TCP peer is the client.
    pub trusted_proxies: Vec<crate::client::Cidr>,
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
                client: None,
            },
            conn_capacity: 1_000,
            trusted_proxies: Vec::new(),
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
    pub(super) webhook_secret: Option<Vec<u8>>,
    pub limits: Limits,
    pub edge: Arc<EdgeCache>,
    pub catalog: Catalog,
    pub hub: HubHandle,
    /// Fan websockets open now (the node's count: it reports it).
    pub ws_open: Arc<AtomicUsize>,
    pub http_open: AtomicUsize,
    /// Webhook signatures seen within the replay window, and when.
    pub(super) webhook_seen: std::sync::Mutex<super::webhook::SeenDeliveries>,
    /// Open websockets per fan (entries removed at zero).
    pub fan_sockets: std::sync::Mutex<rustc_hash::FxHashMap<onsale_schema::FanId, u16>>,
    /// Open connections (HTTP and websockets together) this process may
    /// hold, from its open-files limit.
    pub conn_capacity: usize,
    pub trusted_proxies: Vec<crate::client::Cidr>,
    /// Proof-of-work challenges issued and stamps spent here.
    pub stamps: crate::stamp_desk::StampDesk,
}

impl Deref for Gateway {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl Inner {
    /// The operators' bearer token.
    pub(super) fn operator_token(&self) -> &str {
        &self.operator_token
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
        let fans = node.fans_open();
        let gateway = Gateway(Arc::new(Inner {
            catalog: Catalog::new(node.clone()),
            node,
            key: config.key,
            operator_token: config.operator_token,
            webhook_secret: config.webhook_secret,
            limits: Limits::new(config.limits),
            edge,
            hub,
            ws_open: fans,
            http_open: AtomicUsize::new(0),
            fan_sockets: std::sync::Mutex::default(),
            webhook_seen: std::sync::Mutex::default(),
            conn_capacity: config.conn_capacity,
            trusted_proxies: config.trusted_proxies,
            stamps: crate::stamp_desk::StampDesk::default(),
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
