//! The one apply step of billing: loads the stored state a Stripe event (or Stripe's answer to
//! our own call) concerns, asks the pure rules in [`super::decide`], and writes what they
//! decide — subscription, invoice, plan, tenant status — with audit entries, all in the
//! caller's transaction. Caches are the caller's to drop after commit.

use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use uuid::Uuid;

use super::decide::{self, EventKind, Ignore, Payment, Stored, StoredInvoice};
use super::model::{IntentStatus, PaymentOutcome, SubscriptionRow, SubscriptionStatus};
use super::payments::{InvoiceState, SubscriptionState};
use super::plan_apply::{apply_plan, downgrade_to_free};
use super::store::{self, InvoiceWrite, SubscriptionChanges, VersionedSubscription};
use super::wire::CheckoutState;
use crate::audit;
use crate::auth::Actor;
use crate::db::Conn;
use crate::error::{AppError, AppResult};
use crate::ids::{IntentId, PlanId, TenantId};
use crate::tenants::lifecycle::{self, Transition};
use crate::tenants::model::TenantRow;
use crate::{plans, tenants};

/// A handled event's object, read from the payload ([`super::wire`]).
pub enum StripeObject {
    Checkout(CheckoutState),
    Subscription(SubscriptionState),
    Invoice(InvoiceState),
}

/// What applying an event did: the tenant it concerned and, when nothing changed, why.
pub struct Applied {
    pub tenant_id: Option<TenantId>,
    pub ignored: Option<Ignore>,
}

impl Applied {
    fn done(tenant_id: TenantId) -> Self {
        Applied {
            tenant_id: Some(tenant_id),
            ignored: None,
        }
    }

    fn ignored(tenant_id: Option<TenantId>, why: Ignore) -> Self {
        Applied {
            tenant_id,
            ignored: Some(why),
        }
    }
}

impl Stored {
    fn of(v: &VersionedSubscription, last_payment: Option<PaymentOutcome>) -> Self {
        Stored {
            status: v.row.status,
            stripe_subscription_id: v.row.stripe_subscription_id.clone(),
            grace_period_end: v.row.grace_period_end,
            stripe_updated_at: v.stripe_updated_at,
            payment_updated_at: v.payment_updated_at,
            last_payment,
        }
    }
}

/// Applies one handled event created at `created`.
pub async fn event(
    c: &mut Conn,
    actor: &Actor,
    kind: EventKind,
    object: StripeObject,
    created: DateTime<Utc>,
) -> AppResult<Applied> {
    let customer = match &object {
        StripeObject::Checkout(s) => s.customer.clone(),
        StripeObject::Subscription(s) => Some(s.customer.clone()),
        StripeObject::Invoice(i) => i.customer.clone(),
    };
    let customer = customer.unwrap_or_default();
    let Some(tenant) = tenants::store::find_by_stripe_customer(c, &customer).await? else {
        return Ok(Applied::ignored(None, Ignore::UnknownCustomer));
    };
    match concerning(c, actor, &tenant, kind, object, created).await {
        Ok(()) => Ok(Applied::done(tenant.id)),
        Err(Skip::Ignored(why)) => Ok(Applied::ignored(Some(tenant.id), why)),
        Err(Skip::Failed(e)) => Err(e),
    }
}

/// [`event`] once the tenant is known.
async fn concerning(
    c: &mut Conn,
    actor: &Actor,
    tenant: &TenantRow,
    kind: EventKind,
    object: StripeObject,
    created: DateTime<Utc>,
) -> Result<(), Skip> {
    let before = store::subscription_with_version(c, tenant.id).await?;
    let stored = match &before {
        Some(v) => Some(Stored::of(v, store::payment_outcome(c, tenant.id).await?)),
        None => None,
    };
    match object {
        StripeObject::Checkout(s) => {
            decide::checkout(stored.as_ref(), s.subscription.as_deref())?;
            link_checkout(c, actor, tenant, s).await
        }
        StripeObject::Subscription(s) => {
            decide::subscription_event(stored.as_ref(), &s.id, created)?;
            let before = before.ok_or(Ignore::NoSubscriptionRow)?;
            let deleted = kind == EventKind::SubscriptionDeleted;
            let action = if deleted { "CANCEL" } else { "UPDATE" };
            mirror(c, actor, tenant, &before, &s, deleted, created, action).await?;
            Ok(())
        }
        StripeObject::Invoice(i) => invoice(c, actor, tenant, kind, &i, created, stored).await,
    }
}

/// Either an ignored event (the rules said no) or a failure.
enum Skip {
    Ignored(Ignore),
    Failed(AppError),
}

impl From<Ignore> for Skip {
    fn from(i: Ignore) -> Self {
        Skip::Ignored(i)
    }
}

impl From<AppError> for Skip {
    fn from(e: AppError) -> Self {
        Skip::Failed(e)
    }
}

impl From<diesel::result::Error> for Skip {
    fn from(e: diesel::result::Error) -> Self {
        Skip::Failed(e.into())
    }
}

async fn link_checkout(
    c: &mut Conn,
    actor: &Actor,
    tenant: &TenantRow,
    s: CheckoutState,
) -> Result<(), Skip> {
    let changes = SubscriptionChanges {
        stripe_subscription_id: s.subscription.clone().map(Some),
        stripe_customer_id: Some(s.customer),
        updated_at: Some(Utc::now()),
        ..Default::default()
    };
    store::update_subscription(c, tenant.id, &changes).await?;
    let after = json!({ "stripeSubscriptionId": s.subscription });
    record(
        c,
        actor,
        tenant.id,
        "subscription",
        "CHECKOUT_COMPLETED",
        json!({}),
        after,
    )
    .await?;
    Ok(())
}

/// Mirrors a subscription state Stripe reported at `at` (a webhook event, or the answer to
/// our own cancel/resume call): the plan of its price (completing the intent named in its
/// metadata), period, flags, and the status the rules decide. Audited as `action`.
#[allow(clippy::too_many_arguments)]
pub async fn mirror(
    c: &mut Conn,
    actor: &Actor,
    tenant: &TenantRow,
    before: &VersionedSubscription,
    s: &SubscriptionState,
    deleted: bool,
    at: DateTime<Utc>,
    action: &'static str,
) -> AppResult<SubscriptionRow> {
    let now = Utc::now();
    // The plan follows the subscription's price (a plan change confirmed by Stripe).
    let price = match &s.price_id {
        Some(p) => plans::store::price_owner(c, p).await?,
        None => None,
    };
    if let (Some(price), false) = (&price, deleted) {
        let cycle = price.billing_cycle;
        if price.plan_id != tenant.plan_id || before.row.billing_cycle != cycle {
            let plan = plans::store::by_ids(c, &[price.plan_id])
                .await?
                .pop()
                .ok_or_else(|| AppError::not_found("plan"))?;
            apply_plan(c, actor, tenant, &plan, cycle, now).await?;
        }
        complete_intent(c, tenant, s, price.plan_id).await?;
    }
    let last_payment = store::payment_outcome(c, tenant.id).await?;
    let m = decide::mirror(&Stored::of(before, last_payment), &s.status, deleted, at);
    let changes = SubscriptionChanges {
        status: Some(m.status),
        stripe_subscription_id: Some(Some(s.id.clone())),
        stripe_customer_id: Some(Some(s.customer.clone())),
        current_period_start: s.period_start.map(Some),
        current_period_end: s.period_end.map(Some),
        trial_end: Some(s.trial_end),
        cancel_at_period_end: Some(s.cancel_at_period_end),
        canceled_at: Some(s.canceled_at.or(deleted.then_some(now))),
        grace_period_end: Some(m.grace_period_end),
        stripe_updated_at: Some(Some(at)),
        updated_at: Some(now),
        ..Default::default()
    };
    let mut after = store::update_subscription(c, tenant.id, &changes).await?;
    if m.ends {
        // The subscription has ended (cancelled now, or at the end of its period).
        after = downgrade_to_free(c, actor, tenant, now)
            .await?
            .unwrap_or(after);
    }
    if m.status == SubscriptionStatus::Active {
        payment_received(c, actor, tenant).await?;
    }
    let view = |s: &SubscriptionRow| json!({ "status": s.status, "planId": s.plan_id, "cancelAtPeriodEnd": s.cancel_at_period_end, "gracePeriodEnd": s.grace_period_end });
    let (b, a) = (view(&before.row), view(&after));
    record(c, actor, tenant.id, "subscription", action, b, a).await?;
    Ok(after)
}

/// The intent Stripe confirmed (named in the subscription's metadata) becomes COMPLETED,
/// with the optimistic version check; a lost race is re-read once.
async fn complete_intent(
    c: &mut Conn,
    tenant: &TenantRow,
    s: &SubscriptionState,
    plan_id: PlanId,
) -> AppResult<()> {
    let Some(intent_id) = s
        .metadata
        .get("plan_change_intent")
        .and_then(|v| Uuid::parse_str(v).ok())
        .map(IntentId::from)
    else {
        return Ok(());
    };
    for _ in 0..2 {
        let Some(intent) = store::intent(c, tenant.id, intent_id).await? else {
            return Ok(());
        };
        // PENDING, or FAILED by a timeout although Stripe applied the change: Stripe decides.
        let open = matches!(intent.status, IntentStatus::Pending | IntentStatus::Failed);
        if !open || intent.to_plan_id != plan_id {
            return Ok(());
        }
        let completed = IntentStatus::Completed;
        let done =
            store::advance_intent(c, tenant.id, intent.id, intent.version, completed, None).await?;
        if done.is_some() {
            return Ok(());
        }
    }
    Err(AppError::conflict(
        None,
        "the plan change intent kept changing",
    ))
}

async fn invoice(
    c: &mut Conn,
    actor: &Actor,
    tenant: &TenantRow,
    kind: EventKind,
    inv: &InvoiceState,
    created: DateTime<Utc>,
    stored: Option<Stored>,
) -> Result<(), Skip> {
    let existing = store::invoice_by_stripe_id(c, &inv.id).await?;
    let known = existing.as_ref().map(|(row, at)| StoredInvoice {
        same_tenant: row.tenant_id == tenant.id,
        status: row.status,
        stripe_updated_at: *at,
    });
    let d = decide::invoice(
        kind,
        inv.status.as_deref(),
        inv.subscription.as_deref(),
        created,
        known.as_ref(),
        stored.as_ref(),
    )?;
    let now = Utc::now();
    if let Some(status) = d.invoice {
        let w = InvoiceWrite {
            tenant_id: tenant.id,
            id: existing.as_ref().map_or_else(Uuid::now_v7, |(r, _)| r.id),
            stripe_invoice_id: inv.id.clone(),
            amount_due: inv.amount_due,
            amount_paid: inv.amount_paid,
            currency: inv.currency.clone(),
            status,
            period_start: inv.period_start,
            period_end: inv.period_end,
            due_date: inv.due_date,
            paid_at: inv
                .paid_at
                .or((status == super::model::InvoiceStatus::Paid).then_some(created)),
            hosted_invoice_url: inv.hosted_invoice_url.clone(),
            stripe_updated_at: Some(created),
            updated_at: now,
        };
        let saved = store::upsert_invoice(c, &w).await?;
        let action = if existing.is_some() {
            "UPDATE"
        } else {
            "CREATE"
        };
        let before = existing
            .as_ref()
            .map_or(Value::Null, |(r, _)| json!({ "status": r.status }));
        let after = json!({ "stripeInvoiceId": saved.stripe_invoice_id, "status": saved.status, "amountDue": saved.amount_due });
        record(c, actor, tenant.id, "invoice", action, before, after).await?;
    }
    let Some(stored) = stored else {
        return Ok(());
    };
    let failed = matches!(
        d.payment,
        Payment::Stamp(PaymentOutcome::Failed)
            | Payment::Set {
                outcome: PaymentOutcome::Failed,
                ..
            }
    );
    if failed {
        // `invoice.payment_failed` for the tenant, in the transaction that records it.
        let data = json!({ "failedAt": created, "subscriptionStatus": stored.status });
        crate::notifications::outbox::emit(
            c,
            tenant.id,
            crate::notifications::outbox::EventType::PaymentFailed,
            data,
        )
        .await?;
    }
    match d.payment {
        Payment::Nothing => {}
        Payment::Stamp(outcome) => {
            let stamp = SubscriptionChanges {
                payment_updated_at: Some(Some(created)),
                ..Default::default()
            };
            store::update_subscription(c, tenant.id, &stamp).await?;
            store::set_payment_outcome(c, tenant.id, outcome).await?;
        }
        Payment::Set {
            outcome,
            status,
            grace_period_end,
        } => {
            let ch = SubscriptionChanges {
                status: Some(status),
                grace_period_end: Some(grace_period_end),
                payment_updated_at: Some(Some(created)),
                updated_at: Some(now),
                ..Default::default()
            };
            let after = store::update_subscription(c, tenant.id, &ch).await?;
            store::set_payment_outcome(c, tenant.id, outcome).await?;
            if after.status == SubscriptionStatus::Active {
                payment_received(c, actor, tenant).await?;
            }
            let before =
                json!({ "status": stored.status, "gracePeriodEnd": stored.grace_period_end });
            let after = json!({ "status": after.status, "gracePeriodEnd": after.grace_period_end });
            record(c, actor, tenant.id, "subscription", "UPDATE", before, after).await?;
        }
    }
    Ok(())
}

/// A paid subscription lifts the tenant's suspension for nonpayment (and only that one).
async fn payment_received(c: &mut Conn, actor: &Actor, tenant: &TenantRow) -> AppResult<()> {
    let metadata = json!({ "source": "stripe", "reason": "payment received" });
    lifecycle::apply(c, actor, tenant, Transition::PaymentReceived, metadata).await?;
    Ok(())
}

async fn record(
    c: &mut Conn,
    actor: &Actor,
    tenant_id: TenantId,
    entity_type: &'static str,
    action: &'static str,
    before: Value,
    after: Value,
) -> AppResult<()> {
    let change = audit::Change::new(tenant_id, entity_type, tenant_id, action, before, after)
        .with_metadata(json!({ "source": "stripe" }));
    audit::record(c, actor, change).await?;
    Ok(())
}
