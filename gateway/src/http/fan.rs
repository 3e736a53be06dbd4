//! Fan routes: the demo login, the catalogue, and event commands.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use onsale_actors::clock::wall_now;
use onsale_schema::api::{EventDetail, EventList, SessionRequest};
use onsale_schema::message::{Command, JoinRefused, Reply};
use onsale_schema::{ErrorCode, EventId, SaleState, SectionIdx};

use super::{Gateway, parse_body, parse_event, reply_result, unexpected};
use crate::auth;
use crate::catalog::Search;
use crate::edge::{EdgeState, Lookup};
use crate::hub::HubMsg;
use crate::reply::{ApiError, json_response};

pub(super) async fn session(
    State(gw): State<Gateway>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let request: SessionRequest = parse_body(body)?;
    let session = auth::login(&gw.key, &request, wall_now())?;
    Ok(json_response(StatusCode::OK, &session))
}

pub(super) async fn list_events(
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

pub(super) async fn event_detail(
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

pub(super) async fn section_detail(
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

pub(super) async fn command(
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
    // What the edge believed of the event when a fan joined.
    let mut edge_believed = None;
    if matches!(command, Command::Join { .. } | Command::JoinWithCode { .. }) {
        let edge = edge_state(&gw, event).await?;
        // The edge: sold out and closed cost the event nothing. A full
        // room goes to the event, which answers a fan already in line
        // with its place and refuses a new one without writing anything.
        if let Some(refused) = edge.refuse_join() {
            let answer = match refused {
                JoinRefused::SoldOut => "sold_out",
                _ => "closed",
            };
            metrics::counter!("onsale_edge_answers_total", "answer" => answer).increment(1);
            return reply_result(Reply::JoinRefused { refused });
        }
        if edge.stamp_bits > 0 {
            // Checked before the event hears of the join: microseconds
            // here, nothing there.
            gw.stamps
                .check(&gw.key, &headers, (event, fan), edge.stamp_bits, wall_now())?;
        }
        edge_believed = Some(edge);
    }
    gw.limits.check_fan(fan)?;
    let reply = gw.node.call(event, command).await;
    match &reply {
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
        Reply::JoinRefused { refused } => {
            // Full as the edge believed: nothing to learn (and no second
            // call to the event for every new fan refused while full).
            let expected = *refused == JoinRefused::Full && edge_believed.is_some_and(|e| e.full);
            if matches!(refused, JoinRefused::Full | JoinRefused::SoldOut) && !expected {
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

/// `GET /api/events/{event}/challenge`: a proof-of-work challenge for
/// this fan to join `event`, at the difficulty the event asks now (0:
/// joining takes none, and the challenge is not needed).
pub(super) async fn challenge(
    State(gw): State<Gateway>,
    Path(event): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let event = parse_event(&event)?;
    let fan = auth::fan_of(&gw.key, &headers, wall_now())?;
    if gw.catalog.get(event).await.is_none() {
        return Err(ApiError::new(
            ErrorCode::UnknownEvent,
            format!("no event {}", event.0),
        ));
    }
    gw.limits.check_fan(fan)?;
    let bits = edge_state(&gw, event).await?.stamp_bits;
    let challenge = gw.stamps.issue(&gw.key, event, fan, bits, wall_now());
    Ok(json_response(
        StatusCode::OK,
        &ChallengeIssued {
            event,
            bits,
            challenge,
            header: crate::stamp_desk::STAMP_HEADER,
        },
    ))
}

/// What a fan is given to solve.
#[derive(serde::Serialize)]
struct ChallengeIssued {
    event: EventId,
    bits: u8,
    challenge: String,
    /// Join with this header: `<challenge>.<counter>`.
    header: &'static str,
}

/// What the edge knows of `event`: its entry (a stale one is refreshed in
/// the background), else a fresh overview.
async fn edge_state(gw: &Gateway, event: EventId) -> Result<EdgeState, ApiError> {
    match gw.edge.lookup(event) {
        Lookup::Fresh(edge) => Ok(edge),
        Lookup::Stale { state, refresh } => {
            if refresh {
                gw.refresh_edge(event);
            }
            Ok(state)
        }
        Lookup::Unknown => {
            gw.sale_state(event).await?;
            gw.edge
                .get(event)
                .ok_or_else(|| ApiError::new(ErrorCode::Busy, "the event's state is not known yet"))
        }
    }
}

/// The fan a command acts for; `None` for operator and provider commands,
/// which never come through the fan route (a provider's answer there
/// would let a fan confirm its own payment).
fn fan_of_command(command: &Command) -> Option<onsale_schema::FanId> {
    match command {
        Command::Join { fan }
        | Command::JoinWithCode { fan, .. }
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
        | Command::SetStamp { .. }
        | Command::Audit => None,
    }
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
