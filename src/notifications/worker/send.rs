//! Sending one leased delivery: the webhook POST (no transaction held) or the mail (its
//! recipients read in a short transaction of its own).

use axum::body::Bytes;
use chrono::{DateTime, Utc};
use diesel::sql_types::{Jsonb, Text, Timestamptz, Uuid as SqlUuid};
use diesel::QueryableByName;
use scoped_futures::ScopedFutureExt;
use serde_json::{json, Value};
use uuid::Uuid;

use super::claim::Lease;
use crate::app::App;
use crate::db::Scope;
use crate::ids::TenantId;
use crate::notifications::mail;
use crate::notifications::outbox::EventType;
use crate::notifications::webhooks::model::{signature, Channel};
use crate::notifications::webhooks::send::{Attempt, Sender, Signed};

/// The outbox row a delivery sends.
#[derive(QueryableByName, Clone)]
pub struct Event {
    #[diesel(sql_type = SqlUuid)]
    pub id: Uuid,
    #[diesel(sql_type = Text)]
    pub event_type: String,
    #[diesel(sql_type = Jsonb)]
    pub data: Value,
    #[diesel(sql_type = Timestamptz)]
    pub created_at: DateTime<Utc>,
}

/// What an attempt came to, for the row.
pub enum Outcome {
    Delivered(Option<u16>),
    Skipped,
    /// Failed for now: retried until the window ends.
    Retry(Option<u16>, String),
    /// Failed for good at once (nothing to send, or refused for good).
    Given(String),
    /// Not tried: the server cannot sign (its `CONFIG_ENCRYPTION_KEY` is missing or changed).
    /// Retried later but never counted against the retry window: an operator's mistake must
    /// not disable every tenant's endpoints.
    Postpone(String),
}

/// The body of SPEC §12: `{ id type createdAt tenantId data }`.
pub fn body(tenant: TenantId, e: &Event) -> Bytes {
    let v = json!({
        "id": e.id,
        "type": e.event_type,
        "createdAt": e.created_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "tenantId": tenant,
        "data": e.data,
    });
    Bytes::from(serde_json::to_vec(&v).unwrap_or_default())
}

pub async fn send(app: &App, sender: &Sender, lease: &Lease) -> Outcome {
    let Some(event) = &lease.event else {
        return Outcome::Given("the event is gone".into());
    };
    match lease.row.channel {
        Channel::Webhook => send_webhook(app, sender, lease, event).await,
        Channel::Email => send_mail(app, lease, event).await,
    }
}

async fn send_webhook(app: &App, sender: &Sender, lease: &Lease, e: &Event) -> Outcome {
    let Some(endpoint) = &lease.endpoint else {
        return Outcome::Given("the endpoint is gone".into());
    };
    let Some(key) = app.settings.config_encryption_key else {
        return Outcome::Retry(
            None,
            "no CONFIG_ENCRYPTION_KEY to open the signing secret".into(),
        );
    };
    let secrets = endpoint.signing_secrets(&key, Utc::now());
    if secrets.is_empty() {
        return Outcome::Postpone(
            "the signing secret cannot be opened (CONFIG_ENCRYPTION_KEY changed?)".into(),
        );
    }
    let body = body(lease.row.tenant_id, e);
    let signed = Signed {
        event_id: &e.id.to_string(),
        event_type: &e.event_type,
        signature: signature(&secrets, Utc::now().timestamp(), &body),
    };
    match sender.post(&endpoint.url, body, signed).await {
        Attempt::Delivered(code) => Outcome::Delivered(Some(code)),
        Attempt::Refused(code) => Outcome::Retry(Some(code), format!("HTTP {code}")),
        Attempt::Failed(why) => Outcome::Retry(None, why),
    }
}

async fn send_mail(app: &App, lease: &Lease, e: &Event) -> Outcome {
    let Some(event_type) = EventType::parse(&e.event_type) else {
        return Outcome::Given(format!("unknown event {}", e.event_type));
    };
    let event = mail::OutboxEvent {
        tenant_id: lease.row.tenant_id,
        id: e.id,
        event_type,
        data: e.data.clone(),
        created_at: e.created_at,
    };
    let event = &event;
    let sent = app
        .db
        .scoped(Scope::Platform("notifications"), |c| {
            async move { Ok(mail::deliver(app, c, event).await) }.scope_boxed()
        })
        .await;
    match sent {
        Ok(Ok(mail::MailOutcome::Sent { .. })) => Outcome::Delivered(None),
        Ok(Ok(mail::MailOutcome::Skipped(_))) => Outcome::Skipped,
        Ok(Ok(mail::MailOutcome::Rejected(why))) => Outcome::Given(why),
        Ok(Err(why)) => Outcome::Retry(None, why),
        Err(e) => Outcome::Retry(None, e.public_message()),
    }
}
