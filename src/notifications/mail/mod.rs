//! Notification mail (SPEC §12): one message per outbox event to the tenant's ACTIVE owners and
//! admins, in the tenant's branding, over SMTP (`SMTP_URL`) or, without it, logged.
//!
//! The delivery worker owns when and how often: it claims a due EMAIL delivery and calls
//! [`deliver`] with its transaction (platform scope); `Ok` ends the delivery (SUCCEEDED, or
//! SKIPPED with the reason), `Err` is a failure it retries with backoff. This module owns what
//! is sent and to whom, and never writes: a delivery sent twice (at least once) carries the
//! same `Message-ID` and `X-Tenantry-Event-Id`, so receivers and their filters can drop the
//! repeat.
//!
//! - `recipients`: the tenant, its switches and branding, who receives (reads only).
//! - `templates`: each event's words, from its `data`.
//! - `layout`: the branded frame, plain text and HTML, every value escaped.
//! - `transport`: the SMTP transport, the MIME message and its headers.

pub mod layout;
pub mod recipients;
pub mod templates;
pub mod transport;

use chrono::{DateTime, Utc};
use diesel_async::AsyncConnection;
use uuid::Uuid;

use crate::app::App;
use crate::db::Conn;
use crate::ids::TenantId;
use crate::notifications::outbox::EventType;

pub use transport::Mailer;

/// One outbox row, as the worker read it.
#[derive(Debug, Clone)]
pub struct OutboxEvent {
    pub tenant_id: TenantId,
    pub id: Uuid,
    pub event_type: EventType,
    pub data: serde_json::Value,
    pub created_at: DateTime<Utc>,
}

/// How a delivery ended (a failure is `Err`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MailOutcome {
    /// Handed to the SMTP server (or logged without `SMTP_URL`) for this many recipients.
    Sent { recipients: usize },
    /// Nothing to send, for good: the reason (e-mail switched off, nobody to tell, no mail for
    /// this event, the tenant deleted).
    Skipped(&'static str),
    /// The SMTP server refused the message for good (5xx): retrying cannot help, and the
    /// tenant's later mail must not wait behind it.
    Rejected(String),
}

/// Why a mail was skipped.
pub const SKIP_NO_MAIL: &str = "this event has no mail";
pub const SKIP_TENANT_GONE: &str = "the tenant is deleted";
pub const SKIP_EMAIL_DISABLED: &str = "notifications.email_enabled is off";
pub const SKIP_QUOTA_MAIL_DISABLED: &str = "notifications.quota_alert_emails is off";
pub const SKIP_NO_RECIPIENTS: &str = "no active owner or admin has an e-mail address";

/// Whether this event type has a mail at all (the dispatcher creates EMAIL deliveries for
/// these only). Every event of SPEC §12 has one, and so has the internal
/// `webhook_endpoint.disabled` (SPEC: "the tenant told by email").
pub fn mails(event: EventType) -> bool {
    match event {
        EventType::QuotaThresholdReached
        | EventType::PlanChanged
        | EventType::TrialEnding
        | EventType::PaymentFailed
        | EventType::TenantSuspended
        | EventType::TenantReactivated
        | EventType::MemberInvited
        | EventType::EndpointDisabled => true,
    }
}

/// Resolves recipients and branding with `c` (a transaction in the platform scope, RLS
/// bypassed), renders and sends. `Err` is a failure worth retrying (the SMTP server down or
/// answering 4xx, the database unreadable): a short sentence without secrets; a 5xx is
/// `Rejected`.
pub async fn deliver(app: &App, c: &mut Conn, event: &OutboxEvent) -> Result<MailOutcome, String> {
    let outcome = decide_and_send(app, c, event).await;
    let label = match &outcome {
        Ok(MailOutcome::Sent { .. }) if app.mailer.sends() => "sent",
        Ok(MailOutcome::Sent { .. }) => "logged",
        Ok(MailOutcome::Skipped(_)) => "skipped",
        Ok(MailOutcome::Rejected(_)) | Err(_) => "failed",
    };
    metrics::counter!("tenantry_mail_total", "event" => event.event_type.as_str(), "outcome" => label)
        .increment(1);
    match &outcome {
        Err(e) => tracing::warn!(event_id = %event.id, event_type = event.event_type.as_str(),
            tenant_id = %event.tenant_id, error = %e, "mail not delivered; the worker retries"),
        Ok(MailOutcome::Rejected(e)) => tracing::warn!(event_id = %event.id,
            event_type = event.event_type.as_str(), tenant_id = %event.tenant_id, error = %e,
            "mail rejected for good"),
        Ok(_) => {}
    }
    outcome
}

async fn decide_and_send(
    app: &App,
    c: &mut Conn,
    event: &OutboxEvent,
) -> Result<MailOutcome, String> {
    if !mails(event.event_type) {
        return Ok(MailOutcome::Skipped(SKIP_NO_MAIL));
    }
    let secret = app.settings.config_encryption_key.as_ref();
    // In a savepoint: a failed read leaves the worker's transaction usable for its outcome.
    let tenant_id = event.tenant_id;
    let audience = c
        .transaction(async |c| recipients::audience(c, tenant_id, secret).await)
        .await
        .map_err(|e| {
            tracing::warn!(tenant_id = %event.tenant_id, error = %e, "reading a mail's recipients failed");
            "cannot read the tenant's recipients (database error)".to_owned()
        })?;
    let Some(audience) = audience else {
        return Ok(MailOutcome::Skipped(SKIP_TENANT_GONE));
    };
    if audience.tenant.deleted_at.is_some() {
        return Ok(MailOutcome::Skipped(SKIP_TENANT_GONE));
    }
    if !audience.email_enabled {
        return Ok(MailOutcome::Skipped(SKIP_EMAIL_DISABLED));
    }
    if event.event_type == EventType::QuotaThresholdReached && !audience.quota_alert_emails {
        return Ok(MailOutcome::Skipped(SKIP_QUOTA_MAIL_DISABLED));
    }
    if audience.recipients.is_empty() {
        return Ok(MailOutcome::Skipped(SKIP_NO_RECIPIENTS));
    }
    let mail = render(event, &audience.branding);
    if let Err(why) = app.mailer.send(&audience.recipients, &mail, event).await {
        if why.starts_with(transport::REJECTED) {
            return Ok(MailOutcome::Rejected(why));
        }
        return Err(why);
    }
    Ok(MailOutcome::Sent {
        recipients: audience.recipients.len(),
    })
}

/// The mail of `event` in `branding`: subject, plain text, HTML.
pub fn render(event: &OutboxEvent, branding: &layout::Branding) -> layout::Mail {
    let content = templates::content(event.event_type, &event.data);
    layout::render(&content, branding, event.id)
}
