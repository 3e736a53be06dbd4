//! The payment provider's webhook: signed answers, replays refused.

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::HeaderMap;
use axum::response::Response;
use onsale_actors::clock::wall_now;
use onsale_schema::ErrorCode;
use onsale_schema::api::ProviderWebhook;
use onsale_schema::message::{Command, Reply};

use super::{Gateway, parse_body, reply_result};
use crate::auth;
use crate::reply::ApiError;

/// Webhook signatures remembered for replay detection.
pub const WEBHOOKS_REMEMBERED_MAX: usize = 100_000;

pub(super) async fn webhook(
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
