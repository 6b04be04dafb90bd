//! Webhook endpoint and delivery rows, the signing secret, and the `Tenantry-Signature` header.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::configs::crypto;
use crate::db::schema::{notification_deliveries, webhook_endpoints};
use crate::db::text_enum::text_enum;
use crate::error::{AppError, AppResult};
use crate::ids::TenantId;
use crate::notifications::outbox::EventType;

/// What every signing secret starts with.
pub const SECRET_PREFIX: &str = "whsec_";
/// Characters of the secret shown as `secretPrefix` (the prefix and 6 more).
const DISPLAY_CHARS: usize = 6;
/// Endpoints a tenant may have.
pub const MAX_ENDPOINTS: i64 = 16;
/// What `events` may hold besides the event names: every event.
pub const ALL_EVENTS: &str = "*";

text_enum!(
    /// Where a delivery stands: PENDING until delivered (SUCCEEDED) or given up on after the
    /// retry window (FAILED). SKIPPED is mail that had nobody to go to (never a webhook).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, async_graphql::Enum)]
    pub enum DeliveryStatus {
        Pending = "PENDING",
        Succeeded = "SUCCEEDED",
        Failed = "FAILED",
        Skipped = "SKIPPED",
    }
);

text_enum!(
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Channel {
        Webhook = "WEBHOOK",
        Email = "EMAIL",
    }
);

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = webhook_endpoints)]
pub struct EndpointRow {
    pub tenant_id: TenantId,
    pub id: Uuid,
    pub url: String,
    pub events: Vec<String>,
    pub enabled: bool,
    pub secret_prefix: String,
    pub secret_sealed: Vec<u8>,
    pub previous_secret_sealed: Option<Vec<u8>>,
    pub previous_secret_expires_at: Option<DateTime<Utc>>,
    pub disabled_reason: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl EndpointRow {
    /// What the audit log keeps: never the secret, and the URL without its path and query
    /// (receivers often carry a token there; audit entries live two years).
    pub fn audit_json(&self) -> Value {
        json!({
            "url": redacted(&self.url),
            "events": self.events,
            "enabled": self.enabled,
            "secretPrefix": self.secret_prefix,
        })
    }

    /// The secrets that sign now: the current one, and the previous one until its overlap ends.
    pub fn signing_secrets(&self, key: &[u8; 32], now: DateTime<Utc>) -> Vec<String> {
        let open = |sealed: &[u8]| {
            crypto::decrypt(
                key,
                self.tenant_id,
                "webhook_endpoint",
                &self.id.to_string(),
                sealed,
            )
            .and_then(|b| String::from_utf8(b).ok())
        };
        let mut out: Vec<String> = open(&self.secret_sealed).into_iter().collect();
        if self.previous_secret_expires_at.is_some_and(|t| t > now) {
            out.extend(self.previous_secret_sealed.as_deref().and_then(open));
        }
        out
    }
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = notification_deliveries)]
pub struct DeliveryRow {
    pub tenant_id: TenantId,
    pub id: Uuid,
    pub event_id: Uuid,
    pub event_seq: i64,
    pub event_type: String,
    pub channel: Channel,
    pub endpoint_id: Option<Uuid>,
    pub redelivery_of: Option<Uuid>,
    pub status: DeliveryStatus,
    pub attempts: i32,
    pub last_status_code: Option<i32>,
    pub last_error: Option<String>,
    pub next_attempt_at: DateTime<Utc>,
    pub first_attempt_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

/// Which deliveries `Tenant.webhookDeliveries` lists.
#[derive(Debug, Clone, Default)]
pub struct DeliveryFilter {
    pub status: Option<DeliveryStatus>,
    pub event_type: Option<String>,
    pub endpoint_id: Option<Uuid>,
    pub event_id: Option<Uuid>,
}

/// `scheme://host[:port]/…`: where a URL points, without what it may carry.
pub fn redacted(url: &str) -> String {
    match url.parse::<axum::http::Uri>() {
        Ok(u) => match (u.scheme_str(), u.authority()) {
            (Some(scheme), Some(authority)) => {
                let host = authority.as_str().rsplit('@').next().unwrap_or_default();
                format!("{scheme}://{host}/…")
            }
            _ => "…".into(),
        },
        Err(_) => "…".into(),
    }
}

/// A signing secret: generated, shown once, sealed for storage.
pub struct SigningSecret(String);

impl std::fmt::Debug for SigningSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningSecret(..)")
    }
}

impl SigningSecret {
    pub fn generate() -> AppResult<SigningSecret> {
        Ok(SigningSecret(crate::api_keys::model::random_token(
            SECRET_PREFIX,
        )?))
    }

    pub fn display_prefix(&self) -> String {
        self.0
            .chars()
            .take(SECRET_PREFIX.len() + DISPLAY_CHARS)
            .collect()
    }

    pub fn seal(&self, key: &[u8; 32], tenant: TenantId, endpoint: Uuid) -> Vec<u8> {
        crypto::encrypt(
            key,
            tenant,
            "webhook_endpoint",
            &endpoint.to_string(),
            self.0.as_bytes(),
        )
    }

    pub fn expose(self) -> String {
        self.0
    }
}

/// The subscribed events, checked: event names of SPEC §12 or `*`, no duplicates.
pub fn parse_events(events: &[String]) -> AppResult<Vec<String>> {
    if events.is_empty() {
        return Err(AppError::bad_input(
            "events",
            "events must name at least one event (or \"*\" for all)",
        ));
    }
    let mut out: Vec<String> = Vec::new();
    for e in events {
        if e != ALL_EVENTS {
            known_event("events", e)?;
        }
        if !out.contains(e) {
            out.push(e.clone());
        }
    }
    Ok(out)
}

/// `name` if it is an event of SPEC §12; BAD_USER_INPUT on `field` naming the known ones.
pub fn known_event(field: &'static str, name: &str) -> AppResult<EventType> {
    EventType::PUBLIC
        .into_iter()
        .find(|t| t.as_str() == name)
        .ok_or_else(|| {
            let names: Vec<&str> = EventType::PUBLIC.iter().map(|t| t.as_str()).collect();
            AppError::bad_input(
                field,
                format!("unknown event {name:?}; known: {}", names.join(", ")),
            )
        })
}

/// `Tenantry-Signature`: `t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>`, one
/// `v1` per signing secret (two during a rotation's overlap), like Stripe's.
pub fn signature(secrets: &[String], timestamp: i64, body: &[u8]) -> String {
    let mut header = format!("t={timestamp}");
    for s in secrets {
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, s.as_bytes());
        let mut ctx = ring::hmac::Context::with_key(&key);
        ctx.update(timestamp.to_string().as_bytes());
        ctx.update(b".");
        ctx.update(body);
        header.push_str(",v1=");
        header.push_str(&hex(ctx.sign().as_ref()));
    }
    header
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_hmac_sha256_over_timestamp_dot_body_in_hex() {
        // RFC 4231-independent check: the same HMAC computed by hand with ring's one-shot API.
        let body = br#"{"id":"x"}"#;
        let header = signature(&["whsec_abc".into()], 1_700_000_000, body);
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"whsec_abc");
        let expected = ring::hmac::sign(&key, b"1700000000.{\"id\":\"x\"}");
        assert_eq!(
            header,
            format!("t=1700000000,v1={}", hex(expected.as_ref()))
        );
        let two = signature(&["a".into(), "b".into()], 1, b"{}");
        assert_eq!(two.matches(",v1=").count(), 2);
    }

    #[test]
    fn audited_urls_keep_only_where_they_point() {
        assert_eq!(
            redacted("https://hooks.slack.com/services/T0/B0/secret?x=1"),
            "https://hooks.slack.com/…"
        );
        assert_eq!(
            redacted("http://127.0.0.1:9000/h"),
            "http://127.0.0.1:9000/…"
        );
    }

    #[test]
    fn events_are_checked() {
        assert!(parse_events(&[]).is_err());
        assert!(parse_events(&["nope".into()]).is_err());
        assert!(parse_events(&["webhook_endpoint.disabled".into()]).is_err());
        assert_eq!(
            parse_events(&["plan.changed".into(), "plan.changed".into(), "*".into()]).unwrap(),
            vec!["plan.changed".to_string(), "*".to_string()]
        );
    }
}
