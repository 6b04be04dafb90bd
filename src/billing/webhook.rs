//! `POST /webhooks/stripe` (SPEC §4): the signature check over the raw body, then each event
//! processed exactly once — its effects and its processed-events row commit in one
//! transaction, and a second delivery of the same id (even a concurrent one) waits for the
//! first and changes nothing. Subscription and invoice states carry Stripe's event time;
//! an event older than the stored state changes nothing (out-of-order safety).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Duration, Utc};
use scoped_futures::ScopedFutureExt;
use serde::Deserialize;
use serde_json::{json, Value};
use uuid::Uuid;

use super::events::{self, EventRow, EventStatus};
use super::model::{IntentStatus, InvoiceStatus, SubscriptionRow, SubscriptionStatus};
use super::service::{apply_plan, downgrade_to_free, GRACE_PERIOD_DAYS, NONPAYMENT_SUSPEND_REASON};
use super::store::{self, InvoiceWrite, SubscriptionChanges};
use super::stripe::{ts, InvoiceState, SubscriptionState};
use crate::app::{App, HttpState};
use crate::audit;
use crate::auth::Actor;
use crate::db::{Conn, Scope};
use crate::error::{AppError, AppResult};
use crate::tenants::model::{TenantRow, TenantStatus};
use crate::{plans, tenants};

/// Stripe's default tolerance for the signature timestamp.
pub const TOLERANCE_SECS: i64 = 300;

/// The event types with effects (SPEC §4); others are recorded as IGNORED and acknowledged.
pub const HANDLED: &[&str] = &[
    "checkout.session.completed",
    "customer.subscription.created",
    "customer.subscription.updated",
    "customer.subscription.deleted",
    "invoice.created",
    "invoice.finalized",
    "invoice.paid",
    "invoice.payment_succeeded",
    "invoice.payment_failed",
    "invoice.voided",
];

#[derive(Debug, PartialEq, Eq)]
pub enum SignatureError {
    NoSecret,
    Malformed,
    Stale,
    Mismatch,
}

impl SignatureError {
    fn message(&self) -> &'static str {
        match self {
            SignatureError::NoSecret => "webhook signing secret is not configured",
            SignatureError::Malformed => "malformed Stripe-Signature header",
            SignatureError::Stale => "signature timestamp outside the tolerance",
            SignatureError::Mismatch => "no signature matches the payload",
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The `v1` signature Stripe computes: HMAC-SHA256 over `{t}.{body}`, hex encoded.
pub fn sign(secret: &str, t: i64, body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    let mut ctx = ring::hmac::Context::with_key(&key);
    ctx.update(t.to_string().as_bytes());
    ctx.update(b".");
    ctx.update(body);
    hex(ctx.sign().as_ref())
}

/// Checks `Stripe-Signature: t=...,v1=...,v1=...` against every configured secret: any `v1`
/// matching any secret passes, if `t` is within the tolerance of `now`.
pub fn verify(
    secrets: &[String],
    header: &str,
    body: &[u8],
    now: i64,
) -> Result<(), SignatureError> {
    if secrets.is_empty() {
        return Err(SignatureError::NoSecret);
    }
    let mut t = None;
    let mut v1 = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", v)) => t = v.parse::<i64>().ok(),
            Some(("v1", v)) => v1.push(v.to_owned()),
            _ => {}
        }
    }
    let t = t.ok_or(SignatureError::Malformed)?;
    if v1.is_empty() {
        return Err(SignatureError::Malformed);
    }
    // `t` comes from the request: `now - t` overflows for t near i64::MIN/MAX (a panic in
    // debug builds, a wrapped "fresh" timestamp in release). No answer = outside tolerance.
    let age = now.checked_sub(t).and_then(i64::checked_abs);
    if age.is_none_or(|age| age > TOLERANCE_SECS) {
        return Err(SignatureError::Stale);
    }
    let expected: Vec<String> = secrets.iter().map(|s| sign(s, t, body)).collect();
    let ok = v1.iter().any(|got| {
        expected
            .iter()
            .any(|e| constant_time_eq::constant_time_eq(e.as_bytes(), got.as_bytes()))
    });
    if ok {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

#[derive(Deserialize)]
struct Envelope {
    id: String,
    #[serde(rename = "type")]
    kind: String,
    created: i64,
}

fn bad_request(msg: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({ "error": { "code": "BAD_REQUEST", "message": msg } })),
    )
        .into_response()
}

pub async fn handler(State(state): State<HttpState>, headers: HeaderMap, body: Bytes) -> Response {
    let app = state.app;
    let started = std::time::Instant::now();
    let header = headers
        .get("stripe-signature")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if let Err(e) = verify(
        &app.settings.stripe_webhook_secrets,
        header,
        &body,
        Utc::now().timestamp(),
    ) {
        metrics::counter!("tenantry_webhook_events_total", "type" => "unknown", "outcome" => "bad_signature").increment(1);
        return bad_request(e.message());
    }
    let Ok(env) = serde_json::from_slice::<Envelope>(&body) else {
        return bad_request("the body is not a Stripe event");
    };
    let Ok(payload) = serde_json::from_slice::<Value>(&body) else {
        return bad_request("the body is not JSON");
    };
    if !payload
        .pointer("/data/object")
        .is_some_and(Value::is_object)
    {
        return bad_request("the event has no data.object");
    }
    let Some(created) = ts(env.created) else {
        return bad_request("bad event timestamp");
    };
    metrics::histogram!("tenantry_webhook_lag_seconds")
        .record((Utc::now() - created).num_milliseconds().max(0) as f64 / 1000.0);
    let kind = env.kind.clone();
    let outcome = receive(&app, &env.id, &env.kind, &payload, created).await;
    metrics::histogram!("tenantry_webhook_duration_seconds")
        .record(started.elapsed().as_secs_f64());
    match outcome {
        Ok(row) => {
            let label = row.status.to_ascii_lowercase();
            metrics::counter!("tenantry_webhook_events_total", "type" => kind, "outcome" => label)
                .increment(1);
            (
                StatusCode::OK,
                Json(json!({ "received": true, "status": row.status })),
            )
                .into_response()
        }
        Err(e) => {
            metrics::counter!("tenantry_webhook_events_total", "type" => kind, "outcome" => "failed")
                .increment(1);
            tracing::error!(event = %env.id, error = %e, "stripe event failed; Stripe will retry");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                Json(json!({ "error": { "code": "INTERNAL", "message": "event processing failed; retry later" } })),
            )
                .into_response()
        }
    }
}

/// Records a verified delivery and processes it unless it was processed before.
pub async fn receive(
    app: &App,
    id: &str,
    kind: &str,
    payload: &Value,
    created: DateTime<Utc>,
) -> AppResult<EventRow> {
    let (id_c, kind_c, payload_c) = (id.to_owned(), kind.to_owned(), payload.clone());
    let result = app
        .db
        .scoped(Scope::Platform("stripe_webhook"), |c| {
            async move {
                events::insert_new(c, &id_c, &kind_c, &payload_c, created).await?;
                process_locked(c, &id_c).await
            }
            .scope_boxed()
        })
        .await;
    settle(app, id, kind, payload, created, result).await
}

/// Processes a stored event again (admin replay and the retry job). A processed event is
/// left alone: CONFLICT.
pub async fn reprocess(app: &App, id: &str) -> AppResult<EventRow> {
    let id_c = id.to_owned();
    let row = app
        .db
        .scoped(Scope::Platform("stripe_webhook"), |c| {
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
    let id_c = id.to_owned();
    let result = app
        .db
        .scoped(Scope::Platform("stripe_webhook"), |c| {
            async move { process_locked(c, &id_c).await }.scope_boxed()
        })
        .await;
    settle(
        app,
        id,
        &row.event_type,
        &row.payload,
        row.event_created,
        result,
    )
    .await
}

/// After the transaction: caches on success, the failure recorded on error.
async fn settle(
    app: &App,
    id: &str,
    kind: &str,
    payload: &Value,
    created: DateTime<Utc>,
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
            let (id_c, kind_c, payload_c) = (id.to_owned(), kind.to_owned(), payload.clone());
            let recorded = app
                .db
                .scoped(Scope::Platform("stripe_webhook"), |c| {
                    async move {
                        events::fail(c, &id_c, &kind_c, &payload_c, created, &msg).await?;
                        Ok(())
                    }
                    .scope_boxed()
                })
                .await;
            if let Err(r) = recorded {
                tracing::error!(event = %id, error = %r, "could not record the event's failure");
            }
            Err(e)
        }
    }
}

/// Locks the event row and, unless it is done, applies its effects and marks it. Returns the
/// row and whether this pass did the work.
async fn process_locked(c: &mut Conn, id: &str) -> AppResult<(EventRow, bool)> {
    let row = events::lock(c, id)
        .await?
        .ok_or_else(|| AppError::not_found("webhook event"))?;
    if row.is_done() {
        return Ok((row, false));
    }
    let actor = Actor::webhook(id);
    let created = row.event_created;
    let object = row
        .payload
        .pointer("/data/object")
        .cloned()
        .unwrap_or(Value::Null);
    let outcome = if HANDLED.contains(&row.event_type.as_str()) {
        apply(c, &actor, &row.event_type, &object, created).await?
    } else {
        Outcome::ignored(None, "event type not handled")
    };
    let done = events::finish(c, id, outcome.status, outcome.tenant_id, outcome.note).await?;
    Ok((done, true))
}

struct Outcome {
    status: EventStatus,
    tenant_id: Option<Uuid>,
    note: Option<&'static str>,
}

impl Outcome {
    fn processed(tenant_id: Uuid) -> Self {
        Outcome {
            status: EventStatus::Processed,
            tenant_id: Some(tenant_id),
            note: None,
        }
    }

    fn ignored(tenant_id: Option<Uuid>, note: &'static str) -> Self {
        Outcome {
            status: EventStatus::Ignored,
            tenant_id,
            note: Some(note),
        }
    }
}

fn malformed(what: &str) -> AppError {
    AppError::Internal(Arc::new(anyhow::anyhow!(
        "the event's {what} object cannot be read"
    )))
}

fn typed<T: miniserde::Deserialize>(object: &Value, what: &str) -> AppResult<T> {
    miniserde::json::from_str(&object.to_string()).map_err(|_| malformed(what))
}

async fn apply(
    c: &mut Conn,
    actor: &Actor,
    kind: &str,
    object: &Value,
    created: DateTime<Utc>,
) -> AppResult<Outcome> {
    if kind == "checkout.session.completed" {
        let customer = object["customer"].as_str().unwrap_or_default();
        let Some(tenant) = tenants::store::find_by_stripe_customer(c, customer).await? else {
            return Ok(Outcome::ignored(None, "unknown customer"));
        };
        let sub_id = object["subscription"].as_str().map(str::to_owned);
        let current = store::subscription_with_version(c, tenant.id).await?;
        let replaces_live = current.as_ref().is_some_and(|v| {
            v.row.stripe_subscription_id.is_some()
                && v.row.stripe_subscription_id != sub_id
                && is_live(&v.row.status)
        });
        if replaces_live {
            return Ok(Outcome::ignored(
                Some(tenant.id),
                "the tenant has another live subscription",
            ));
        }
        let changes = SubscriptionChanges {
            stripe_subscription_id: sub_id.clone().map(Some),
            stripe_customer_id: Some(Some(customer.to_owned())),
            updated_at: Some(Utc::now()),
            ..Default::default()
        };
        store::update_subscription(c, tenant.id, &changes).await?;
        record(
            c,
            actor,
            tenant.id,
            "subscription",
            "CHECKOUT_COMPLETED",
            json!({}),
            json!({ "stripeSubscriptionId": sub_id }),
        )
        .await?;
        return Ok(Outcome::processed(tenant.id));
    }
    if let Some(rest) = kind.strip_prefix("customer.subscription.") {
        let sub: stripe_shared::Subscription = typed(object, "subscription")?;
        let state = SubscriptionState::from(sub);
        return subscription_event(c, actor, &state, rest == "deleted", created).await;
    }
    let inv: stripe_shared::Invoice = typed(object, "invoice")?;
    let state = InvoiceState::from_invoice(inv).ok_or_else(|| malformed("invoice"))?;
    invoice_event(c, actor, kind, &state, created).await
}

async fn record(
    c: &mut Conn,
    actor: &Actor,
    tenant_id: Uuid,
    entity_type: &'static str,
    action: &'static str,
    before: Value,
    after: Value,
) -> AppResult<()> {
    audit::record(
        c,
        actor,
        audit::Change {
            tenant_id: Some(tenant_id),
            entity_type,
            entity_id: tenant_id.to_string(),
            action,
            before,
            after,
            metadata: json!({ "source": "stripe" }),
        },
    )
    .await?;
    Ok(())
}

pub fn map_status(stripe: &str) -> SubscriptionStatus {
    match stripe {
        "trialing" => SubscriptionStatus::Trialing,
        "active" => SubscriptionStatus::Active,
        "past_due" => SubscriptionStatus::PastDue,
        "canceled" => SubscriptionStatus::Canceled,
        "unpaid" => SubscriptionStatus::Unpaid,
        "incomplete" => SubscriptionStatus::Incomplete,
        // incomplete_expired, and paused (a trial that ended without a payment method).
        _ => SubscriptionStatus::Expired,
    }
}

/// Whether the stored state is newer than an event created at `created`.
fn stale(stored: Option<DateTime<Utc>>, created: DateTime<Utc>) -> bool {
    stored.is_some_and(|s| s > created)
}

fn is_live(status: &str) -> bool {
    status != SubscriptionStatus::Canceled.as_str()
        && status != SubscriptionStatus::Expired.as_str()
}

async fn subscription_event(
    c: &mut Conn,
    actor: &Actor,
    s: &SubscriptionState,
    deleted: bool,
    created: DateTime<Utc>,
) -> AppResult<Outcome> {
    let Some(tenant) = tenants::store::find_by_stripe_customer(c, &s.customer).await? else {
        return Ok(Outcome::ignored(None, "unknown customer"));
    };
    let Some(before) = store::subscription_with_version(c, tenant.id).await? else {
        return Ok(Outcome::ignored(
            Some(tenant.id),
            "tenant has no subscription row",
        ));
    };
    if stale(before.stripe_updated_at, created) {
        return Ok(Outcome::ignored(
            Some(tenant.id),
            "older than the stored state",
        ));
    }
    if before
        .row
        .stripe_subscription_id
        .as_ref()
        .is_some_and(|id| *id != s.id)
        && is_live(&before.row.status)
    {
        // The tenant runs on another subscription now; this one must not move its state.
        return Ok(Outcome::ignored(
            Some(tenant.id),
            "event of a replaced subscription",
        ));
    }
    let action = if deleted { "CANCEL" } else { "UPDATE" };
    apply_state(c, actor, &tenant, &before, s, deleted, created, action).await?;
    Ok(Outcome::processed(tenant.id))
}

/// Mirrors a subscription state Stripe reported at `at` (a webhook event, or the answer to
/// our own cancel/resume call): the plan of its price (completing the intent named in its
/// metadata), period, flags, and the status unless a newer payment outcome set it. Audited
/// as `action`.
#[allow(clippy::too_many_arguments)]
pub async fn apply_state(
    c: &mut Conn,
    actor: &Actor,
    tenant: &TenantRow,
    before: &store::VersionedSubscription,
    s: &SubscriptionState,
    deleted: bool,
    at: DateTime<Utc>,
    action: &'static str,
) -> AppResult<SubscriptionRow> {
    let now = Utc::now();
    // The plan follows the subscription's price (a plan change confirmed by Stripe).
    let price = match &s.price_id {
        Some(p) => plans::store::price_by_stripe_id(c, p).await?,
        None => None,
    };
    if let (Some(price), false) = (&price, deleted) {
        let cycle = price.billing_cycle;
        if price.plan_id != tenant.plan_id || before.row.billing_cycle != cycle.as_str() {
            let plan = plans::store::by_ids(c, &[price.plan_id])
                .await?
                .pop()
                .ok_or_else(|| AppError::not_found("plan"))?;
            apply_plan(c, actor, tenant, &plan, cycle, now).await?;
        }
        complete_intent(c, tenant, s, price.plan_id).await?;
    }
    let status = if deleted {
        SubscriptionStatus::Canceled
    } else if stale(before.payment_updated_at, at) {
        // A newer payment outcome decided the status already.
        SubscriptionStatus::parse(&before.row.status).unwrap_or(map_status(&s.status))
    } else {
        map_status(&s.status)
    };
    let grace = match status {
        SubscriptionStatus::PastDue | SubscriptionStatus::Unpaid => before
            .row
            .grace_period_end
            .or(Some(at + Duration::days(GRACE_PERIOD_DAYS))),
        _ => None,
    };
    let changes = SubscriptionChanges {
        status: Some(status.as_str().into()),
        stripe_subscription_id: Some(Some(s.id.clone())),
        stripe_customer_id: Some(Some(s.customer.clone())),
        current_period_start: s.period_start.map(Some),
        current_period_end: s.period_end.map(Some),
        trial_end: Some(s.trial_end),
        cancel_at_period_end: Some(s.cancel_at_period_end),
        canceled_at: Some(s.canceled_at.or(deleted.then_some(now))),
        grace_period_end: Some(grace),
        stripe_updated_at: Some(Some(at)),
        updated_at: Some(now),
        ..Default::default()
    };
    let mut after = store::update_subscription(c, tenant.id, &changes).await?;
    if deleted {
        // The subscription has ended (cancelled now, or at the end of its period).
        after = downgrade_to_free(c, actor, tenant, now)
            .await?
            .unwrap_or(after);
    }
    if status == SubscriptionStatus::Active {
        reactivate_after_payment(c, actor, tenant).await?;
    }
    let view = |s: &SubscriptionRow| json!({ "status": s.status, "planId": s.plan_id, "cancelAtPeriodEnd": s.cancel_at_period_end, "gracePeriodEnd": s.grace_period_end });
    record(
        c,
        actor,
        tenant.id,
        "subscription",
        action,
        view(&before.row),
        view(&after),
    )
    .await?;
    Ok(after)
}

/// The intent Stripe confirmed (named in the subscription's metadata) becomes COMPLETED,
/// with the optimistic version check; a lost race is re-read once.
async fn complete_intent(
    c: &mut Conn,
    tenant: &TenantRow,
    s: &SubscriptionState,
    plan_id: Uuid,
) -> AppResult<()> {
    let Some(intent_id) = s
        .metadata
        .get("plan_change_intent")
        .and_then(|v| Uuid::parse_str(v).ok())
    else {
        return Ok(());
    };
    for _ in 0..2 {
        let Some(intent) = store::intent(c, tenant.id, intent_id).await? else {
            return Ok(());
        };
        // PENDING, or FAILED by a timeout although Stripe applied the change: Stripe decides.
        let open = intent.status == IntentStatus::Pending.as_str()
            || intent.status == IntentStatus::Failed.as_str();
        if !open || intent.to_plan_id != plan_id {
            return Ok(());
        }
        let done = store::advance_intent(
            c,
            tenant.id,
            intent.id,
            intent.version,
            IntentStatus::Completed.as_str(),
            None,
        )
        .await?;
        if done.is_some() {
            return Ok(());
        }
    }
    Err(AppError::conflict(
        None,
        "the plan change intent kept changing",
    ))
}

/// A tenant suspended by the grace-period job comes back once Stripe says it is paid.
async fn reactivate_after_payment(
    c: &mut Conn,
    actor: &Actor,
    tenant: &TenantRow,
) -> AppResult<()> {
    if tenant.status() != TenantStatus::Suspended
        || tenant.suspend_reason.as_deref() != Some(NONPAYMENT_SUSPEND_REASON)
    {
        return Ok(());
    }
    let changes = tenants::store::TenantChanges {
        status: Some(TenantStatus::Active.as_str().into()),
        suspended_at: Some(None),
        suspend_reason: Some(None),
        updated_at: Some(Utc::now()),
        ..Default::default()
    };
    tenants::store::update(c, tenant.id, &changes).await?;
    audit::record(
        c,
        actor,
        audit::Change {
            tenant_id: Some(tenant.id),
            entity_type: "tenant",
            entity_id: tenant.id.to_string(),
            action: "REACTIVATE",
            before: json!({ "status": "SUSPENDED", "suspendReason": NONPAYMENT_SUSPEND_REASON }),
            after: json!({ "status": "ACTIVE" }),
            metadata: json!({ "source": "stripe", "reason": "payment received" }),
        },
    )
    .await?;
    Ok(())
}

fn invoice_status(kind: &str, stripe: Option<&str>) -> InvoiceStatus {
    match (kind, stripe) {
        ("invoice.paid" | "invoice.payment_succeeded", _) | (_, Some("paid")) => {
            InvoiceStatus::Paid
        }
        ("invoice.voided", _) | (_, Some("void")) => InvoiceStatus::Void,
        (_, Some("uncollectible")) => InvoiceStatus::Uncollectible,
        (_, Some("draft")) => InvoiceStatus::Draft,
        _ => InvoiceStatus::Open,
    }
}

/// Final invoice states never go back to DRAFT/OPEN, whatever the timestamps say.
fn is_final(s: &str) -> bool {
    matches!(
        InvoiceStatus::parse(s),
        Some(InvoiceStatus::Paid | InvoiceStatus::Void | InvoiceStatus::Uncollectible)
    )
}

async fn invoice_event(
    c: &mut Conn,
    actor: &Actor,
    kind: &str,
    inv: &InvoiceState,
    created: DateTime<Utc>,
) -> AppResult<Outcome> {
    let customer = inv.customer.as_deref().unwrap_or_default();
    let Some(tenant) = tenants::store::find_by_stripe_customer(c, customer).await? else {
        return Ok(Outcome::ignored(None, "unknown customer"));
    };
    let status = invoice_status(kind, inv.status.as_deref());
    let existing = store::invoice_by_stripe_id(c, &inv.id).await?;
    if let Some((row, _)) = &existing {
        if row.tenant_id != tenant.id {
            return Ok(Outcome::ignored(
                Some(tenant.id),
                "invoice belongs to another customer",
            ));
        }
    }
    let keep_invoice = existing.as_ref().is_some_and(|(row, at)| {
        stale(*at, created) || (is_final(&row.status) && !is_final(status.as_str()))
    });
    let now = Utc::now();
    if !keep_invoice {
        let w = InvoiceWrite {
            tenant_id: tenant.id,
            id: existing.as_ref().map_or_else(Uuid::now_v7, |(r, _)| r.id),
            stripe_invoice_id: inv.id.clone(),
            amount_due: inv.amount_due,
            amount_paid: inv.amount_paid,
            currency: inv.currency.clone(),
            status: status.as_str().into(),
            period_start: inv.period_start,
            period_end: inv.period_end,
            due_date: inv.due_date,
            paid_at: inv
                .paid_at
                .or((status == InvoiceStatus::Paid).then_some(created)),
            hosted_invoice_url: inv.hosted_invoice_url.clone(),
            stripe_updated_at: Some(created),
            updated_at: now,
        };
        let saved = store::upsert_invoice(c, &w).await?;
        record(
            c,
            actor,
            tenant.id,
            "invoice",
            if existing.is_some() { "UPDATE" } else { "CREATE" },
            existing.as_ref().map_or(Value::Null, |(r, _)| json!({ "status": r.status })),
            json!({ "stripeInvoiceId": saved.stripe_invoice_id, "status": saved.status, "amountDue": saved.amount_due }),
        )
        .await?;
    }
    // Payment outcomes move the subscription's status, unless a newer state or payment outcome
    // holds already, and only for the tenant's current subscription.
    let Some(before) = store::subscription_with_version(c, tenant.id).await? else {
        return Ok(Outcome::processed(tenant.id));
    };
    let other_subscription = match (&inv.subscription, &before.row.stripe_subscription_id) {
        (Some(a), Some(b)) => a != b,
        _ => false,
    };
    if stale(before.stripe_updated_at, created)
        || stale(before.payment_updated_at, created)
        || other_subscription
    {
        return Ok(Outcome::processed(tenant.id));
    }
    let sub = &before.row;
    let changes = match kind {
        "invoice.payment_failed" if is_live(&sub.status) => Some(SubscriptionChanges {
            status: Some(SubscriptionStatus::PastDue.as_str().into()),
            grace_period_end: Some(Some(
                sub.grace_period_end
                    .unwrap_or(created + Duration::days(GRACE_PERIOD_DAYS)),
            )),
            ..Default::default()
        }),
        "invoice.paid" | "invoice.payment_succeeded"
            if [
                SubscriptionStatus::PastDue,
                SubscriptionStatus::Unpaid,
                SubscriptionStatus::Incomplete,
            ]
            .iter()
            .any(|s| s.as_str() == sub.status) =>
        {
            Some(SubscriptionChanges {
                status: Some(SubscriptionStatus::Active.as_str().into()),
                grace_period_end: Some(None),
                ..Default::default()
            })
        }
        _ => None,
    };
    let payment_outcome = matches!(
        kind,
        "invoice.payment_failed" | "invoice.paid" | "invoice.payment_succeeded"
    );
    if payment_outcome && changes.is_none() {
        // No status change, but this outcome is now the newest one.
        let stamp = SubscriptionChanges {
            payment_updated_at: Some(Some(created)),
            ..Default::default()
        };
        store::update_subscription(c, tenant.id, &stamp).await?;
    }
    if let Some(mut ch) = changes {
        ch.payment_updated_at = Some(Some(created));
        ch.updated_at = Some(now);
        let after = store::update_subscription(c, tenant.id, &ch).await?;
        if after.status == SubscriptionStatus::Active.as_str() {
            reactivate_after_payment(c, actor, &tenant).await?;
        }
        record(
            c,
            actor,
            tenant.id,
            "subscription",
            "UPDATE",
            json!({ "status": sub.status, "gracePeriodEnd": sub.grace_period_end }),
            json!({ "status": after.status, "gracePeriodEnd": after.grace_period_end }),
        )
        .await?;
    }
    Ok(Outcome::processed(tenant.id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_v1_with_any_secret_within_tolerance() {
        let body = br#"{"id":"evt_1"}"#;
        let secrets = vec!["whsec_old".to_owned(), "whsec_new".to_owned()];
        let good = sign("whsec_new", 1000, body);
        let header = format!("t=1000,v1=deadbeef,v1={good},v0=ignored");
        assert_eq!(
            verify(&secrets, &header, body, 1000 + TOLERANCE_SECS),
            Ok(())
        );
        assert_eq!(
            verify(&secrets, &header, body, 1000 + TOLERANCE_SECS + 1),
            Err(SignatureError::Stale)
        );
        assert_eq!(
            verify(&secrets, &header, b"{}", 1000),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(&["whsec_other".into()], &header, body, 1000),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(&secrets, "v1=abc", body, 1000),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            verify(&[], &header, body, 1000),
            Err(SignatureError::NoSecret)
        );
    }

    #[test]
    fn extreme_timestamps_are_stale_not_a_panic() {
        let body = br#"{"id":"evt_1"}"#;
        let secrets = vec!["whsec_a".to_owned()];
        for t in [i64::MIN, i64::MIN + 1, i64::MAX, i64::MIN / 2] {
            // Even with a signature that matches the secret for that `t`.
            let header = format!("t={t},v1={}", sign("whsec_a", t, body));
            for now in [0, 1_700_000_000, i64::MAX, i64::MIN] {
                if now.abs_diff(t) <= TOLERANCE_SECS as u64 {
                    continue; // genuinely fresh
                }
                assert_eq!(
                    verify(&secrets, &header, body, now),
                    Err(SignatureError::Stale),
                    "t={t} now={now}"
                );
            }
        }
        // Out of i64 range does not parse: malformed.
        assert_eq!(
            verify(&secrets, "t=-9223372036854775809,v1=00", body, 0),
            Err(SignatureError::Malformed)
        );
    }

    #[test]
    fn known_vector() {
        // HMAC-SHA256("secret", "1.{}"), computed independently with Python's hmac module.
        assert_eq!(
            sign("secret", 1, b"{}"),
            "1122767b193110cfec322b6f199b599edbf608ed087f2d27afb0b97d99523908"
        );
    }
}
