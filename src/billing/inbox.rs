//! Stripe events, each processed exactly once: its effects and its processed-events row
//! commit in one transaction, and a second delivery of the same id (even a concurrent one)
//! waits for the first and changes nothing. An event whose object cannot be read is stored
//! FAILED with the reason in that same transaction and acknowledged (Stripe keeps the
//! endpoint enabled); the retry job and `replayWebhookEvent` try it again. Any other failure
//! rolls back, is recorded FAILED in its own transaction and answered 500 so Stripe retries.

use chrono::{DateTime, Utc};
use scoped_futures::ScopedFutureExt;
use serde_json::{json, Value};

use super::apply::{self, StripeObject};
use super::decide::EventKind;
use super::events::{self, EventStatus};
pub use super::events::{EventFilter, EventRow};
use super::wire;
use crate::app::App;
use crate::audit;
use crate::auth::Actor;
use crate::db::page::{Page, PageArgs};
use crate::db::{Conn, Db, Scope};
use crate::error::{AppError, AppResult};

/// A verified delivery: the envelope fields and the whole payload.
pub struct Delivery<'a> {
    pub id: &'a str,
    pub kind: &'a str,
    pub created: DateTime<Utc>,
    pub api_version: Option<&'a str>,
    pub payload: &'a Value,
}

const SCOPE: Scope = Scope::Platform("stripe_webhook");

/// Received events, newest first, for platform admins' `webhookEvents`.
pub async fn list(
    db: &Db,
    filter: EventFilter,
    page: PageArgs<String>,
) -> AppResult<Page<EventRow>> {
    let f = &filter;
    page.load(
        db,
        Scope::Platform("webhook_events"),
        |c, before, limit| events::list(c, f, before, limit).scope_boxed(),
        |c| events::count(c, f).scope_boxed(),
    )
    .await
}

/// Records a verified delivery and processes it unless it was processed before.
pub async fn receive(app: &App, d: &Delivery<'_>) -> AppResult<EventRow> {
    let (id, kind, payload) = (d.id.to_owned(), d.kind.to_owned(), d.payload.clone());
    let (created, version) = (d.created, d.api_version.map(str::to_owned));
    let result = app
        .db
        .scoped(SCOPE, |c| {
            async move {
                events::insert_new(c, &id, &kind, &payload, created, version.as_deref()).await?;
                process_locked(c, &id, None).await
            }
            .scope_boxed()
        })
        .await;
    settle(app, d, result).await
}

/// Processes a stored event again (the retry job, and an admin's replay, audited as REPLAY in
/// the same transaction). A processed event is left alone: CONFLICT.
pub async fn reprocess(app: &App, id: &str, replayed_by: Option<&Actor>) -> AppResult<EventRow> {
    let id_c = id.to_owned();
    let row = app
        .db
        .scoped(SCOPE, |c| {
            async move { Ok(events::find(c, &id_c).await?) }.scope_boxed()
        })
        .await?
        .ok_or_else(|| AppError::not_found("webhook event"))?;
    if row.is_done() {
        return Err(AppError::conflict(
            Some("id"),
            "the event was processed already",
        ));
    }
    let (id_c, admin) = (id.to_owned(), replayed_by.cloned());
    let result = app
        .db
        .scoped(SCOPE, |c| {
            async move { process_locked(c, &id_c, admin.as_ref()).await }.scope_boxed()
        })
        .await;
    let d = Delivery {
        id,
        kind: &row.event_type,
        created: row.event_created,
        api_version: row.api_version.as_deref(),
        payload: &row.payload,
    };
    settle(app, &d, result).await
}

/// After the transaction: caches on success, the failure recorded on error.
async fn settle(
    app: &App,
    d: &Delivery<'_>,
    result: AppResult<(EventRow, bool)>,
) -> AppResult<EventRow> {
    match result {
        Ok((row, fresh)) => {
            if let (true, Some(t)) = (fresh, row.tenant_id) {
                app.tenant_changed(t).await;
            }
            Ok(row)
        }
        Err(e) => {
            let msg = e.to_string();
            let (id, kind, payload, created) = (
                d.id.to_owned(),
                d.kind.to_owned(),
                d.payload.clone(),
                d.created,
            );
            let version = d.api_version.map(str::to_owned);
            let recorded = app
                .db
                .scoped(SCOPE, |c| {
                    async move {
                        events::fail(c, &id, &kind, &payload, created, version.as_deref(), &msg)
                            .await?;
                        Ok(())
                    }
                    .scope_boxed()
                })
                .await;
            if let Err(r) = recorded {
                tracing::error!(event = %d.id, error = %r, "could not record the event's failure");
            }
            Err(e)
        }
    }
}

/// Locks the event row and, unless it is done, applies its effects and marks it. Returns the
/// row and whether this pass did the work.
async fn process_locked(
    c: &mut Conn,
    id: &str,
    replayed_by: Option<&Actor>,
) -> AppResult<(EventRow, bool)> {
    let row = events::lock(c, id)
        .await?
        .ok_or_else(|| AppError::not_found("webhook event"))?;
    if row.is_done() {
        return Ok((row, false));
    }
    let actor = Actor::webhook(id);
    let object = row.payload.pointer("/data/object").unwrap_or(&Value::Null);
    let done = match EventKind::parse(&row.event_type) {
        None => {
            let note = Some("event type not handled");
            events::finish(c, id, EventStatus::Ignored, None, note).await?
        }
        Some(kind) => match read(kind, object) {
            Err(reason) => {
                tracing::warn!(event = %id, api_version = ?row.api_version, %reason, "stripe event cannot be read");
                let r = &row;
                let version = r.api_version.as_deref();
                events::fail(
                    c,
                    id,
                    &r.event_type,
                    &r.payload,
                    r.event_created,
                    version,
                    &reason,
                )
                .await?;
                events::find(c, id)
                    .await?
                    .ok_or_else(|| AppError::not_found("webhook event"))?
            }
            Ok(object) => {
                let applied = apply::event(c, &actor, kind, object, row.event_created).await?;
                let (status, note) = match applied.ignored {
                    Some(why) => (EventStatus::Ignored, Some(why.note())),
                    None => (EventStatus::Processed, None),
                };
                events::finish(c, id, status, applied.tenant_id, note).await?
            }
        },
    };
    if let Some(admin) = replayed_by {
        let change = audit::Change {
            tenant_id: done.tenant_id,
            entity_type: "webhook_event",
            entity_id: done.id.clone(),
            action: "REPLAY",
            before: Value::Null,
            after: json!({ "status": done.status }),
            metadata: json!({}),
        };
        audit::record(c, admin, change).await?;
    }
    Ok((done, true))
}

/// The event's object in the layout of any API version since 2024-06-20 ([`wire`]).
fn read(kind: EventKind, object: &Value) -> Result<StripeObject, String> {
    Ok(match kind {
        EventKind::CheckoutCompleted => StripeObject::Checkout(wire::checkout(object)?),
        EventKind::SubscriptionCreated
        | EventKind::SubscriptionUpdated
        | EventKind::SubscriptionDeleted => StripeObject::Subscription(wire::subscription(object)?),
        _ => StripeObject::Invoice(wire::invoice(object)?),
    })
}
