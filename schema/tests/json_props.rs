//! The gateway's JSON decoders against untrusted bytes: every body and
//! websocket frame a fan, operator or payment provider can send. None may
//! panic; whatever one accepts encodes back to the same value.

mod common;
use common::{apply, edits};
use onsale_schema::api::{
    CreateEvent, ProviderWebhook, SaleRequest, SessionRequest, WsPush, WsRequest,
};
use onsale_schema::message::{Command, FanStatus, ProviderAnswer, SaleCommand};
use onsale_schema::{
    ErrorCode, EventId, HoldId, Millis, PaymentId, Position, SaleState, SectionIdx,
};
use proptest::collection::vec;
use proptest::prelude::*;
use serde::Serialize;
use serde::de::DeserializeOwned;

fn reencodes<T>(bytes: &[u8]) -> Result<(), TestCaseError>
where
    T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
{
    if let Ok(value) = serde_json::from_slice::<T>(bytes) {
        let again = serde_json::to_vec(&value).unwrap();
        prop_assert_eq!(serde_json::from_slice::<T>(&again).unwrap(), value);
    }
    Ok(())
}

fn decode_every_body(bytes: &[u8]) -> Result<(), TestCaseError> {
    reencodes::<Command>(bytes)?;
    reencodes::<WsRequest>(bytes)?;
    reencodes::<SessionRequest>(bytes)?;
    reencodes::<ProviderWebhook>(bytes)?;
    reencodes::<SaleRequest>(bytes)?;
    // A venue file inside: accepted only if it parses; checked later.
    let _ = serde_json::from_slice::<CreateEvent>(bytes);
    Ok(())
}

fn ws_request() -> impl Strategy<Value = WsRequest> {
    prop_oneof![
        (any::<u64>(), proptest::option::of("[0-9a-f]{0,96}")).prop_map(|(event, token)| {
            WsRequest::Watch {
                event: EventId(event),
                token,
            }
        }),
        proptest::option::of(any::<u16>()).prop_map(|section| WsRequest::View {
            section: section.map(SectionIdx)
        }),
    ]
}

fn ws_push() -> impl Strategy<Value = WsPush> {
    let event = any::<u64>().prop_map(EventId);
    prop_oneof![
        (event.clone(), any::<u64>(), any::<u64>()).prop_map(|(event, position, ahead)| {
            WsPush::Watching {
                event,
                status: Some(FanStatus::Waiting {
                    position: Position(position),
                    ahead,
                }),
                sale: SaleState::OnSale,
            }
        }),
        (
            event.clone(),
            any::<u64>(),
            any::<u64>(),
            proptest::option::of(any::<u64>())
        )
            .prop_map(|(event, position, through, eta_ms)| WsPush::Position {
                event,
                position: Position(position),
                ahead: position.saturating_sub(through),
                admitted_through: Position(through),
                eta_ms,
            }),
        (event.clone(), any::<u64>(), any::<u64>()).prop_map(|(event, p, at)| WsPush::Admitted {
            event,
            position: Position(p),
            decided_at: Millis(at),
        }),
        (event.clone(), any::<bool>()).prop_map(|(event, full)| WsPush::Full { event, full }),
        (event.clone(), any::<u64>()).prop_map(|(event, hold)| WsPush::HoldExpired {
            event,
            hold: HoldId(hold)
        }),
        ("\\PC{0,40}").prop_map(|message| WsPush::Error {
            code: ErrorCode::MalformedJson,
            message
        }),
    ]
}

fn valid_bodies() -> Vec<Vec<u8>> {
    let venue = serde_json::json!({
        "name": "V", "city": "C",
        "price_levels": [{"id": "p", "name": "P", "price_cents": 100}],
        "sections": [{"id": "S", "name": "S", "price_level": "p",
                      "rows": [{"id": "A", "seats": [{"id": "1"}, {"id": "2", "accessible": true}]}]}]
    });
    vec![
        br#"{"cmd":"hold","fan":7,"request":{"kind":"best","count":2,"area":{"in":"section","section":0}}}"#.to_vec(),
        br#"{"op":"watch","event":1,"token":"ab"}"#.to_vec(),
        br#"{"name":"alice"}"#.to_vec(),
        serde_json::to_vec(&ProviderWebhook {
            event: EventId(1),
            payment: PaymentId(9),
            answer: ProviderAnswer::Confirmed,
        })
        .unwrap(),
        serde_json::to_vec(&SaleRequest {
            command: SaleCommand::Open,
        })
        .unwrap(),
        serde_json::to_vec(&serde_json::json!({
            "event": 2, "name": "n", "city": "c", "starts_at": 1, "venue": venue,
            "config": {"checkout_window_ms": 3000}
        }))
        .unwrap(),
    ]
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in vec(any::<u8>(), 0..512)) {
        decode_every_body(&bytes)?;
    }

    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,200}") {
        decode_every_body(text.as_bytes())?;
    }

    #[test]
    fn damaged_valid_bodies_never_panic(which in 0usize..6, edits in edits()) {
        let bodies = valid_bodies();
        decode_every_body(&apply(&bodies[which % bodies.len()], &edits))?;
    }

    #[test]
    fn websocket_frames_round_trip(request in ws_request(), push in ws_push()) {
        let json = serde_json::to_string(&request).unwrap();
        prop_assert_eq!(serde_json::from_str::<WsRequest>(&json).unwrap(), request);
        let json = serde_json::to_string(&push).unwrap();
        prop_assert_eq!(serde_json::from_str::<WsPush>(&json).unwrap(), push);
    }
}

#[test]
fn the_valid_bodies_decode() {
    let bodies = valid_bodies();
    assert!(serde_json::from_slice::<Command>(&bodies[0]).is_ok());
    assert!(serde_json::from_slice::<WsRequest>(&bodies[1]).is_ok());
    assert!(serde_json::from_slice::<SessionRequest>(&bodies[2]).is_ok());
    assert!(serde_json::from_slice::<ProviderWebhook>(&bodies[3]).is_ok());
    assert!(serde_json::from_slice::<SaleRequest>(&bodies[4]).is_ok());
    let create: CreateEvent = serde_json::from_slice(&bodies[5]).unwrap();
    assert_eq!(create.config.checkout_window_ms, 3000);
}

/// Every JSON example in docs/protocol.md that names a request or push
/// still parses as its type.
#[test]
fn the_protocol_documents_examples_parse() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/protocol.md"))
        .unwrap();
    let mut checked = 0;
    for line in doc.lines() {
        let line = line.trim();
        if !line.starts_with('{') || line.contains('…') {
            continue;
        }
        let Ok(value) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if value.get("op").is_some() {
            serde_json::from_value::<WsRequest>(value.clone())
                .unwrap_or_else(|e| panic!("{line}: {e}"));
            checked += 1;
        } else if value.get("push").is_some() {
            serde_json::from_value::<WsPush>(value.clone())
                .unwrap_or_else(|e| panic!("{line}: {e}"));
            checked += 1;
        }
    }
    assert!(checked >= 10, "only {checked} examples found");
}
