//! Operator routes over the whole cluster: nodes (list, describe, cordon,
//! uncordon, drain), events (list, describe) and this process's view. The
//! numbers come from each node's own account, asked over the mesh
//! (`Node::statuses`); leases and flags from the store; names from the
//! catalogue. Shapes: `onsale_schema::ops`.

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use onsale_actors::clock::wall_now;
use onsale_cluster::store::{NodeFlags, NodeId, StoreError};
use onsale_schema::message::{Command, NodeStatus, Reply};
use onsale_schema::ops::{
    ClusterView, EventDescription, EventEntry, EventEntryList, LeaseInfo, NodeEntry, NodeList,
    NodeRole, NodeState,
};
use onsale_schema::{ErrorCode, EventId, SaleState};
use rustc_hash::FxHashMap;

use super::{Gateway, parse_event};
use crate::reply::{ApiError, json_response};

fn store_error(e: StoreError) -> ApiError {
    ApiError::new(ErrorCode::Busy, format!("the store could not be read: {e}")).retry_after(1)
}

/// Every node the store or the mesh knows of, by name.
/// (`with_events`: each node also lists the events it serves.)
async fn node_entries(gw: &Gateway, with_events: bool) -> Result<Vec<NodeEntry>, ApiError> {
    let node = &gw.node;
    let (registered, flags, statuses) = futures::join!(
        node.registered_nodes(),
        node.node_flags(),
        node.statuses(with_events)
    );
    let registered = registered.map_err(store_error)?;
    let flags: FxHashMap<NodeId, NodeFlags> = flags.map_err(store_error)?.into_iter().collect();
    let statuses: FxHashMap<NodeId, Option<NodeStatus>> = statuses.into_iter().collect();
    let mut names: Vec<NodeId> = registered
        .iter()
        .map(|r| r.node.clone())
        .chain(flags.keys().cloned())
        .chain(statuses.keys().cloned())
        .collect();
    names.sort_unstable();
    names.dedup();
    let now = wall_now();
    let ttl = node.lease_ttl_ms();
    let entries = names
        .into_iter()
        .map(|name| {
            let record = registered.iter().find(|r| r.node == name);
            let live = record.is_some_and(|r| r.expires > now);
            let status = statuses.get(&name).and_then(Option::as_ref);
            let flags = flags.get(&name).copied().unwrap_or_default();
            let role = if record.is_some() || status.is_none_or(|s| s.owns_events) {
                NodeRole::Node
            } else {
                NodeRole::Gateway
            };
            let serving = status.map(|s| s.serving);
            let state = match role {
                NodeRole::Node if !live => NodeState::Gone,
                NodeRole::Gateway if !statuses.contains_key(&name) => NodeState::Gone,
                _ if flags.draining && serving == Some(0) => NodeState::Drained,
                _ if flags.draining => NodeState::Draining,
                _ if flags.cordoned => NodeState::Cordoned,
                _ => NodeState::Up,
            };
            NodeEntry {
                addr: record.map(|r| r.addr.clone()),
                role,
                state,
                cordoned: flags.cordoned,
                draining: flags.draining,
                events: serving,
                fans: status.map(|s| s.fans),
                heartbeat_expires: record.map(|r| r.expires),
                heartbeat_age_ms: record
                    .map(|r| now.0.saturating_sub(r.expires.0.saturating_sub(ttl))),
                reachable: status.is_some(),
                serves: status
                    .filter(|_| with_events)
                    .map(|s| s.events.iter().map(|o| o.event).collect()),
                placeable: None,
                node: name.0,
            }
        })
        .collect();
    Ok(entries)
}

/// `GET /api/ops/nodes`.
pub(super) async fn nodes(State(gw): State<Gateway>) -> Result<Response, ApiError> {
    let nodes = node_entries(&gw, false).await?;
    Ok(json_response(
        StatusCode::OK,
        &NodeList {
            answered_by: gw.node.name().0.clone(),
            nodes,
        },
    ))
}

async fn node_entry(gw: &Gateway, name: &str) -> Result<NodeEntry, ApiError> {
    let mut entry = node_entries(gw, true)
        .await?
        .into_iter()
        .find(|entry| entry.node == name)
        .ok_or_else(|| {
            ApiError::new(
                ErrorCode::UnknownNode,
                format!("no node named {name:?} is live, flagged or on the mesh"),
            )
        })?;
    entry.placeable = Some(gw.node.placeable().iter().any(|n| n.0 == name));
    if entry.serves.is_none() {
        entry.serves = Some(Vec::new());
    }
    Ok(entry)
}

/// `DELETE /api/ops/nodes/{node}`: forget a node that is gone (a
/// decommissioned one): its registration and flags.
pub(super) async fn forget(
    State(gw): State<Gateway>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    let entry = node_entry(&gw, &name).await?;
    if entry.state != NodeState::Gone {
        return Err(ApiError::new(
            ErrorCode::BadRequest,
            format!(
                "{name} is {:?}, not gone: stop it before forgetting it",
                entry.state
            ),
        ));
    }
    gw.node
        .forget_node(NodeId(name.clone()))
        .await
        .map_err(store_error)?;
    tracing::warn!(node = name, "operator forgot a node");
    Ok(json_response(
        StatusCode::OK,
        &serde_json::json!({"forgotten": name}),
    ))
}

/// `GET /api/ops/nodes/{node}`.
pub(super) async fn node(
    State(gw): State<Gateway>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    Ok(json_response(
        StatusCode::OK,
        &node_entry(&gw, &name).await?,
    ))
}

/// What an operator asks of a node's flags.
#[derive(Clone, Copy, Debug)]
enum FlagChange {
    Cordon,
    Uncordon,
    Drain,
}

async fn change_flags(gw: &Gateway, name: &str, change: FlagChange) -> Result<Response, ApiError> {
    // Unknown names are refused: a typo must not cordon a node that will
    // never exist.
    let entry = node_entry(gw, name).await?;
    if entry.role == NodeRole::Gateway {
        return Err(ApiError::new(
            ErrorCode::BadRequest,
            format!("{name} is a gateway: it owns no events to cordon or drain"),
        ));
    }
    let flags = NodeFlags {
        cordoned: entry.cordoned,
        draining: entry.draining,
    };
    let flags = match change {
        FlagChange::Cordon => NodeFlags {
            cordoned: true,
            ..flags
        },
        FlagChange::Uncordon => NodeFlags::default(),
        FlagChange::Drain => NodeFlags {
            cordoned: true,
            draining: true,
        },
    };
    tracing::warn!(
        node = name,
        ?change,
        ?flags,
        "operator changed a node's flags"
    );
    gw.node
        .set_node_flags(NodeId(name.to_owned()), flags)
        .await
        .map_err(store_error)?;
    Ok(json_response(StatusCode::OK, &node_entry(gw, name).await?))
}

pub(super) async fn cordon(
    State(gw): State<Gateway>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    change_flags(&gw, &name, FlagChange::Cordon).await
}

pub(super) async fn uncordon(
    State(gw): State<Gateway>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    change_flags(&gw, &name, FlagChange::Uncordon).await
}

pub(super) async fn drain(
    State(gw): State<Gateway>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    change_flags(&gw, &name, FlagChange::Drain).await
}

/// `?node=N&state=S` on the event list.
#[derive(Clone, Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct EventFilter {
    node: Option<String>,
    state: Option<SaleState>,
}

/// `GET /api/ops/events`.
pub(super) async fn events(
    State(gw): State<Gateway>,
    filter: Result<Query<EventFilter>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(filter) = filter.map_err(|e| {
        ApiError::new(
            ErrorCode::BadRequest,
            format!("{e} (node=NAME, state=scheduled|on_sale|paused|sold_out|closed)"),
        )
    })?;
    let node = &gw.node;
    let (infos, leases, statuses) =
        futures::join!(gw.catalog.all(), node.event_leases(), node.statuses(true));
    let now = wall_now();
    let leases: FxHashMap<EventId, _> = leases
        .map_err(store_error)?
        .into_iter()
        .filter(|lease| lease.expires > now)
        .map(|lease| (lease.event, lease))
        .collect();
    let overviews: FxHashMap<EventId, _> = statuses
        .into_iter()
        .filter_map(|(_, status)| status)
        .flat_map(|status| status.events)
        .map(|overview| (overview.event, overview))
        .collect();
    let placeable = node.placeable();
    let events = infos
        .iter()
        .map(|info| {
            let lease = leases.get(&info.event);
            let overview = overviews.get(&info.event);
            EventEntry {
                event: info.event,
                name: info.name.clone(),
                city: info.city.clone(),
                starts_at: info.starts_at,
                sale: overview.map(|o| o.sale),
                owner: lease.map(|l| l.node.0.clone()),
                epoch: lease.map(|l| l.epoch),
                lease_expires: lease.map(|l| l.expires),
                desired: onsale_cluster::mesh::placement::owner_of(info.event, &placeable)
                    .map(|n| n.0.clone()),
                capacity: Some(overview.map_or_else(|| info.venue.seat_count(), |o| o.capacity)),
                sold: overview.map(|o| o.sold),
                held: overview.map(|o| o.held),
                waiting: overview.map(|o| o.waiting),
                full: overview.map(|o| o.full),
                admitted_through: overview.map(|o| o.admitted_through),
            }
        })
        .filter(|entry| {
            filter
                .node
                .as_deref()
                .is_none_or(|n| entry.owner.as_deref() == Some(n))
                && filter.state.is_none_or(|s| entry.sale == Some(s))
        })
        .collect();
    Ok(json_response(StatusCode::OK, &EventEntryList { events }))
}

/// `GET /api/ops/events/{event}`.
pub(super) async fn event(
    State(gw): State<Gateway>,
    Path(event): Path<String>,
) -> Result<Response, ApiError> {
    let event = parse_event(&event)?;
    let info: Arc<crate::catalog::EventInfo> =
        gw.catalog.get(event).await.ok_or_else(|| {
            ApiError::new(ErrorCode::UnknownEvent, format!("no event {}", event.0))
        })?;
    let lease = gw.node.event_lease(event).await.map_err(store_error)?;
    let live = lease.as_ref().is_some_and(|l| l.expires > wall_now());
    // Asked only of a live owner: describing an event activates nothing.
    let overview = if live {
        match gw.node.call(event, Command::Overview).await {
            Reply::Overview { overview } => Some(overview),
            _ => None,
        }
    } else {
        None
    };
    let ranking: Vec<String> = gw.node.ranking(event).into_iter().map(|n| n.0).collect();
    Ok(json_response(
        StatusCode::OK,
        &EventDescription {
            event,
            name: info.name.clone(),
            city: info.city.clone(),
            starts_at: info.starts_at,
            lease: lease.map(|l| LeaseInfo {
                node: l.node.0,
                epoch: l.epoch,
                expires: l.expires,
            }),
            desired: ranking.first().cloned(),
            ranking,
            overview,
        },
    ))
}

/// `GET /api/ops/cluster`: this process as it sees the cluster.
pub(super) async fn cluster(State(gw): State<Gateway>) -> Result<Response, ApiError> {
    let node = &gw.node;
    let names = |nodes: Vec<NodeId>| nodes.into_iter().map(|n| n.0).collect::<Vec<String>>();
    Ok(json_response(
        StatusCode::OK,
        &ClusterView {
            node: node.name().0.clone(),
            owns_events: node.owns_events(),
            peers: node.mesh().map(|m| names(m.peers())).unwrap_or_default(),
            placeable: names(node.placeable()),
            serves: node.owned(),
            store: node.store_health().await,
        },
    ))
}
