//! The payment provider's webhook: signed answers, replays refused.

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::HeaderMap;
use axum::response::Response;
use onsale_actors::clock::wall_now;
use onsale_schema::api::ProviderWebhook;
use onsale_schema::message::{Command, Reply};
use onsale_schema::{ErrorCode, Millis};
use rustc_hash::FxHashMap;

use super::{Gateway, parse_body, reply_result};
use crate::auth::{self, WebhookSignature};
use crate::reply::ApiError;

/// Webhook signatures remembered for replay detection.
pub const WEBHOOKS_REMEMBERED_MAX: usize = 100_000;

/// Whether a delivery was seen before.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Delivery {
    First,
    Again,
}

/// Webhook signatures seen within the replay window (twice the signature
/// tolerance), keyed on what they mean, and when each was seen. At most
/// [`WEBHOOKS_REMEMBERED_MAX`]: when full, entries out of the window are
/// dropped; if none are, the delivery is refused `busy` (the provider
/// retries) rather than forgetting a signature that could still replay.
#[derive(Debug, Default)]
pub struct SeenDeliveries(FxHashMap<WebhookSignature, Millis>);

impl SeenDeliveries {
    pub(super) fn note(
        &mut self,
        signature: WebhookSignature,
        now: Millis,
    ) -> Result<Delivery, ApiError> {
        if self.0.contains_key(&signature) {
            return Ok(Delivery::Again);
        }
        if self.0.len() >= WEBHOOKS_REMEMBERED_MAX {
            self.0
                .retain(|_, at| now.saturating_sub(*at) <= 2 * auth::WEBHOOK_TOLERANCE_MS);
        }
        if self.0.len() >= WEBHOOKS_REMEMBERED_MAX {
            return Err(
                ApiError::new(ErrorCode::Busy, "too many webhook deliveries").retry_after(5),
            );
        }
        self.0.insert(signature, now);
        Ok(Delivery::First)
    }
}

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
    let signature = auth::verify_webhook(secret, signature, &bytes, now)?;
    let answer: ProviderWebhook = parse_body(Ok(bytes))?;
    // A replayed delivery (a signature that means the same, however it is
    // spelled) changes nothing: it is answered as a duplicate without
    // reaching the event. The event itself settles a payment once
    // whatever arrives; this keeps replays off its mailbox.
    let delivery = gw
        .webhook_seen
        .lock()
        .expect("not poisoned")
        .note(signature, now)?;
    if delivery == Delivery::Again {
        return reply_result(Reply::PaymentSettled {
            settled: onsale_schema::message::PaymentSettled::Ignored,
        });
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A delivery whose header was rewritten (fields reordered, spaces,
    /// extra fields) is the same delivery: the replay cache keys on what
    /// the signature means, not on its spelling.
    #[test]
    fn a_rewritten_signature_header_is_a_replay() {
        let secret = b"whsec_test";
        let body = br#"{"event":1,"payment":9,"answer":"confirmed"}"#;
        let now = Millis(1_000_000);
        let header = auth::sign_webhook(secret, now, body);
        let (t, v1) = header.split_once(',').unwrap();
        let mut seen = SeenDeliveries::default();
        let mut deliver = |header: &str| {
            let signature = auth::verify_webhook(secret, Some(header), body, now).unwrap();
            seen.note(signature, now).unwrap()
        };
        assert_eq!(deliver(&header), Delivery::First);
        for rewritten in [
            format!("{v1},{t}"),
            format!("{t}, {v1},x=y"),
            header.clone(),
        ] {
            assert_eq!(deliver(&rewritten), Delivery::Again, "{rewritten}");
        }
        let fresh = auth::sign_webhook(secret, Millis(now.0 + 1), body);
        assert_eq!(deliver(&fresh), Delivery::First);
    }
}
