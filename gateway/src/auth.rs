//! Who is asking: fan sessions, the operators' bearer token, and the
//! payment provider's webhook signature.
//!
//! Fan sessions are signed by the cluster's [`TokenKey`] (see
//! `schema::token`), so any gateway of the cluster accepts any session. The
//! demo login maps a name to a fan id with a keyed hash; a real identity
//! provider would replace only [`login`] (see docs/protocol.md).

use axum::http::{HeaderMap, header};
use hmac::{Hmac, Mac};
use onsale_schema::api::{Session, SessionRequest};
use onsale_schema::token::{self, SessionClaims, TokenKey};
use onsale_schema::{ErrorCode, FanId, Millis, limits};
use sha2::Sha256;

use crate::reply::ApiError;

/// Longest demo login name, in bytes.
pub const LOGIN_NAME_BYTES_MAX: usize = 64;

/// How old a webhook signature may be before it counts as a replay.
pub const WEBHOOK_TOLERANCE_MS: u64 = 5 * 60 * 1000;

/// The fan a login name is (what the demo login gives it).
pub fn fan_of_name(key: &TokenKey, name: &str) -> Result<FanId, ApiError> {
    let name = name.trim();
    if name.is_empty() || name.len() > LOGIN_NAME_BYTES_MAX {
        return Err(ApiError::new(
            ErrorCode::BadRequest,
            format!("the name must be 1..={LOGIN_NAME_BYTES_MAX} bytes"),
        ));
    }
    Ok(token::derive_fan_id(key, name))
}

/// The demo login: the same name is always the same fan.
pub fn login(key: &TokenKey, request: &SessionRequest, now: Millis) -> Result<Session, ApiError> {
    let fan = fan_of_name(key, &request.name)?;
    let claims = SessionClaims {
        fan,
        expires_at: now.saturating_add_ms(limits::SESSION_TTL_MS),
    };
    Ok(Session {
        session: token::sign_session(key, &claims),
        fan,
        expires_at: claims.expires_at,
    })
}

/// The fan whose session authorises this request.
pub fn fan_of(key: &TokenKey, headers: &HeaderMap, now: Millis) -> Result<FanId, ApiError> {
    let bearer = bearer(headers).ok_or_else(|| {
        ApiError::new(
            ErrorCode::Unauthorized,
            "a session is required: Authorization: Bearer <session> (POST /api/session)",
        )
    })?;
    session_fan(key, bearer, now)
}

/// The fan of a session token's text.
pub fn session_fan(key: &TokenKey, text: &str, now: Millis) -> Result<FanId, ApiError> {
    token::verify_session(key, text, now)
        .map(|claims| claims.fan)
        .map_err(|e| ApiError::new(ErrorCode::Unauthorized, format!("session refused: {e}")))
}

/// Whether the request carries the operators' bearer token.
pub fn check_operator(expected: &str, headers: &HeaderMap) -> Result<(), ApiError> {
    match bearer(headers) {
        Some(given) if token::tags_equal(given.as_bytes(), expected.as_bytes()) => Ok(()),
        _ => Err(ApiError::new(
            ErrorCode::Unauthorized,
            "an operator token is required: Authorization: Bearer <token>",
        )),
    }
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

/// The signature header of a webhook body: `t=<unix ms>,v1=<hex>`.
#[must_use]
pub fn sign_webhook(secret: &[u8], at: Millis, body: &[u8]) -> String {
    format!("t={},v1={}", at.0, hex(&webhook_mac(secret, at, body)))
}

/// What a verified webhook signature says, whatever its spelling: when it
/// was made and its MAC. Two headers that differ only in field order,
/// spaces or extra fields mean the same delivery.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct WebhookSignature {
    pub at: Millis,
    pub mac: [u8; 32],
}

/// Check a webhook's `Onsale-Signature` header against its body; the
/// signature's meaning if it holds.
pub fn verify_webhook(
    secret: &[u8],
    header: Option<&str>,
    body: &[u8],
    now: Millis,
) -> Result<WebhookSignature, ApiError> {
    let refuse =
        |why: &str| ApiError::new(ErrorCode::Unauthorized, format!("webhook refused: {why}"));
    let header = header.ok_or_else(|| refuse("no Onsale-Signature header"))?;
    let mut at = None;
    let mut given = None;
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", t)) => at = t.parse::<u64>().ok().map(Millis),
            Some(("v1", v)) => given = Some(v),
            _ => {}
        }
    }
    let (Some(at), Some(given)) = (at, given) else {
        return Err(refuse("the signature header must be t=<ms>,v1=<hex>"));
    };
    if now.saturating_sub(at) > WEBHOOK_TOLERANCE_MS
        || at.saturating_sub(now) > WEBHOOK_TOLERANCE_MS
    {
        return Err(refuse("the signature is too old (or from the future)"));
    }
    let Some(mac) = token::decode_hex_n::<32>(given) else {
        return Err(refuse("v1 must be 64 lowercase hex digits"));
    };
    if !token::tags_equal(&webhook_mac(secret, at, body), &mac) {
        return Err(refuse("the signature does not match"));
    }
    Ok(WebhookSignature { at, mac })
}

fn webhook_mac(secret: &[u8], at: Millis, body: &[u8]) -> [u8; 32] {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(at.0.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.finalize().into_bytes().into()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logins_are_stable_per_name_and_verify() {
        let key = TokenKey::derive(b"secret for tests");
        let request = |name: &str| SessionRequest { name: name.into() };
        let a = login(&key, &request("alice"), Millis(1_000)).unwrap();
        let again = login(&key, &request(" alice "), Millis(2_000)).unwrap();
        let b = login(&key, &request("bob"), Millis(1_000)).unwrap();
        assert_eq!(a.fan, again.fan);
        assert_ne!(a.fan, b.fan);
        assert!(a.fan.0 <= onsale_schema::api::FAN_ID_MAX);
        assert_eq!(session_fan(&key, &a.session, Millis(5_000)).unwrap(), a.fan);
        assert!(login(&key, &request(""), Millis(1)).is_err());
        assert!(login(&key, &request(&"x".repeat(65)), Millis(1)).is_err());
    }

    #[test]
    fn webhook_signatures_verify_only_unchanged_and_fresh() {
        let secret = b"whsec_test";
        let body = br#"{"event":1,"payment":9,"answer":"confirmed"}"#;
        let header = sign_webhook(secret, Millis(1_000_000), body);
        assert!(verify_webhook(secret, Some(&header), body, Millis(1_000_500)).is_ok());
        // Tampered body, wrong secret, stale, missing, garbled.
        let tampered = br#"{"event":1,"payment":9,"answer":"declined"}"#;
        assert!(verify_webhook(secret, Some(&header), tampered, Millis(1_000_500)).is_err());
        assert!(verify_webhook(b"other", Some(&header), body, Millis(1_000_500)).is_err());
        let late = Millis(1_000_000 + WEBHOOK_TOLERANCE_MS + 1);
        assert!(verify_webhook(secret, Some(&header), body, late).is_err());
        assert!(verify_webhook(secret, None, body, Millis(1_000_500)).is_err());
        for junk in ["", "t=,v1=", "v1=00", "t=1000000", "t=x,v1=y"] {
            assert!(verify_webhook(secret, Some(junk), body, Millis(1_000_500)).is_err());
        }
    }

    #[test]
    fn a_signature_rewritten_means_the_same_delivery() {
        let secret = b"whsec_test";
        let body = br#"{"event":1,"payment":9,"answer":"confirmed"}"#;
        let header = sign_webhook(secret, Millis(1_000_000), body);
        let now = Millis(1_000_500);
        let meaning = verify_webhook(secret, Some(&header), body, now).unwrap();
        let (t, v1) = header.split_once(',').unwrap();
        for rewritten in [
            format!("{v1},{t}"),
            format!(" {t} , {v1} "),
            format!("{t},v0=junk,{v1},extra=1"),
            format!("t=1,{t},{v1}"),
        ] {
            let again = verify_webhook(secret, Some(&rewritten), body, now);
            assert_eq!(again.unwrap(), meaning, "{rewritten}");
        }
        let later = sign_webhook(secret, Millis(1_000_001), body);
        let fresh = verify_webhook(secret, Some(&later), body, now).unwrap();
        assert_ne!(fresh, meaning);
    }

    #[test]
    fn operator_token_must_match_exactly() {
        let mut headers = HeaderMap::new();
        assert!(check_operator("op-secret", &headers).is_err());
        headers.insert(header::AUTHORIZATION, "Bearer op-secret".parse().unwrap());
        assert!(check_operator("op-secret", &headers).is_ok());
        headers.insert(header::AUTHORIZATION, "Bearer op-secre".parse().unwrap());
        assert!(check_operator("op-secret", &headers).is_err());
    }
}
