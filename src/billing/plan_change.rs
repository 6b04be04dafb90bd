//! `changePlan` through an intent (PENDING → COMPLETED/FAILED/EXPIRED, optimistic
//! `version`): applied in the same transaction in LOCAL mode, confirmed by Stripe's webhook
//! otherwise.

use chrono::{DateTime, Duration, Utc};
use scoped_futures::ScopedFutureExt;
use serde_json::{json, Value};

use super::model::{IntentRow, IntentStatus};
use super::payments::Payments;
use super::plan_apply::apply_plan;
use super::prices::{active_plan, stripe_price};
use super::store;
use crate::app::App;
use crate::audit;
use crate::auth::{Actor, Role};
use crate::db::{Conn, Db, Scope};
use crate::error::{AppError, AppResult};
use crate::ids::{IntentId, PlanId, TenantId};
use crate::plans;
use crate::plans::model::{BillingCycle, PlanRow};
use crate::tenants::lifecycle::lock_live;
use crate::tenants::model::TenantRow;
use crate::tenants::service::target_scope;

pub const INTENT_TTL_HOURS: i64 = 24;

/// A new PENDING intent (version 1, expiring after 24 h) from the tenant's plan to `to`;
/// returns it with the plan it starts from.
async fn open_intent(
    c: &mut Conn,
    actor: &Actor,
    tenant: &TenantRow,
    to: &PlanRow,
    cycle: BillingCycle,
    now: DateTime<Utc>,
) -> AppResult<(IntentRow, PlanRow)> {
    let from = plans::store::by_ids(c, &[tenant.plan_id])
        .await?
        .pop()
        .ok_or_else(|| AppError::not_found("plan"))?;
    let row = IntentRow {
        tenant_id: tenant.id,
        id: IntentId::now_v7(),
        from_plan_id: from.id,
        to_plan_id: to.id,
        billing_cycle: cycle,
        status: IntentStatus::Pending,
        version: 1,
        error: None,
        requested_by: actor.id.clone(),
        expires_at: now + Duration::hours(INTENT_TTL_HOURS),
        completed_at: None,
    };
    Ok((store::insert_intent(c, &row).await?, from))
}

/// `changePlan`: an intent, applied at once in LOCAL mode.
pub async fn change_plan(
    app: &App,
    actor: &Actor,
    tenant_id: TenantId,
    plan_slug: &str,
    cycle: BillingCycle,
) -> AppResult<(IntentRow, PlanRow, PlanRow)> {
    actor.require(Role::TenantAdmin)?;
    if let Some(api) = app.payments.as_deref() {
        return change_plan_stripe(&app.db, api, actor, (tenant_id, plan_slug, cycle)).await;
    }
    let scope = target_scope(actor, tenant_id, "billing")?;
    let (actor_c, slug) = (actor.clone(), plan_slug.to_owned());
    let out = app
        .db
        .scoped(scope, |c| {
            async move {
                // Billing recovery stays possible while suspended: no TENANT_SUSPENDED here.
                let tenant = lock_live(c, tenant_id).await?;
                let to = active_plan(c, &slug).await?;
                let sub = store::subscription_for_update(c, tenant_id).await?;
                let same_cycle = sub.as_ref().is_none_or(|s| s.billing_cycle == cycle);
                if to.id == tenant.plan_id && same_cycle {
                    return Err(AppError::conflict(
                        Some("planSlug"),
                        "the tenant is already on this plan",
                    ));
                }
                let now = Utc::now();
                let (intent, from) = open_intent(c, &actor_c, &tenant, &to, cycle, now).await?;
                apply_plan(c, &actor_c, &tenant, &to, cycle, now).await?;
                let done = store::advance_intent(
                    c,
                    tenant_id,
                    intent.id,
                    intent.version,
                    IntentStatus::Completed,
                    None,
                )
                .await?
                .ok_or_else(|| {
                    AppError::conflict(None, "the plan change was modified concurrently")
                })?;
                Ok((done, from, to))
            }
            .scope_boxed()
        })
        .await?;
    app.tenant_changed(tenant_id).await;
    Ok(out)
}

/// One of the tenant's plan-change intents with the plans it goes from and to.
pub async fn intent(
    db: &Db,
    actor: &Actor,
    tenant_id: TenantId,
    intent_id: IntentId,
) -> AppResult<(IntentRow, PlanRow, PlanRow)> {
    let scope = target_scope(actor, tenant_id, "billing")?;
    db.scoped(scope, |c| {
        async move {
            let i = store::intent(c, tenant_id, intent_id)
                .await?
                .ok_or_else(|| AppError::not_found("plan change intent"))?;
            let plans = plans::store::by_ids(c, &[i.from_plan_id, i.to_plan_id]).await?;
            let find = |id: PlanId| plans.iter().find(|p| p.id == id).cloned();
            let (Some(from), Some(to)) = (find(i.from_plan_id), find(i.to_plan_id)) else {
                return Err(AppError::not_found("plan"));
            };
            Ok((i, from, to))
        }
        .scope_boxed()
    })
    .await
}

/// What a plan change needs from the database before Stripe is called.
struct PlanChangeStart {
    intent: IntentRow,
    from: PlanRow,
    to: PlanRow,
    subscription_id: String,
    price_id: String,
}

/// Where a Stripe plan change takes a tenant's subscription.
enum Target {
    /// A plan the tenant asks for (`changePlan`): offered plans only, and not the plan and
    /// cycle it is on.
    Plan(String, BillingCycle),
    /// The current price of the plan and cycle the tenant is on (`setPlanPrice` with
    /// `applyToExisting`): archived plans too; a tenant that has left them meanwhile is CONFLICT.
    Reprice(PlanId, BillingCycle),
}

/// `changePlan` with Stripe: the intent is committed PENDING first; Stripe's subscription
/// update carries the intent id as Idempotency-Key and in the metadata; the webhook applies
/// the plan and completes the intent. A Stripe failure marks the intent FAILED and changes
/// nothing else.
async fn change_plan_stripe(
    db: &Db,
    api: &dyn Payments,
    actor: &Actor,
    (tenant_id, plan_slug, cycle): (TenantId, &str, BillingCycle),
) -> AppResult<(IntentRow, PlanRow, PlanRow)> {
    let target = Target::Plan(plan_slug.to_owned(), cycle);
    let start = start_stripe_change(db, actor, tenant_id, target).await?;
    send_stripe_change(db, api, actor, &start).await?;
    Ok((start.intent, start.from, start.to))
}

/// Moves a tenant's Stripe subscription to the current price of its plan and `cycle` (a
/// re-priced plan), through the same intent as `changePlan`: the webhook completes it.
/// Returns the intent's id.
pub async fn reprice_stripe(
    db: &Db,
    api: &dyn Payments,
    actor: &Actor,
    tenant_id: TenantId,
    (plan, cycle): (PlanId, BillingCycle),
) -> AppResult<IntentId> {
    let target = Target::Reprice(plan, cycle);
    let start = start_stripe_change(db, actor, tenant_id, target).await?;
    send_stripe_change(db, api, actor, &start).await?;
    Ok(start.intent.id)
}

/// The transaction before Stripe is called: checks, the PENDING intent and its
/// PLAN_CHANGE_REQUESTED audit entry.
async fn start_stripe_change(
    db: &Db,
    actor: &Actor,
    tenant_id: TenantId,
    target: Target,
) -> AppResult<PlanChangeStart> {
    let scope = target_scope(actor, tenant_id, "billing")?;
    let actor_c = actor.clone();
    db.scoped(scope, |c| {
        async move {
            let tenant = lock_live(c, tenant_id).await?;
            let sub = store::subscription_for_update(c, tenant_id)
                .await?
                .ok_or_else(|| AppError::not_found("subscription"))?;
            let Some(subscription_id) = sub.stripe_subscription_id.clone() else {
                return Err(AppError::conflict(
                    Some("planSlug"),
                    "the tenant has no paid subscription yet: start one with createCheckoutSession",
                ));
            };
            let (to, cycle) = match target {
                Target::Plan(slug, cycle) => {
                    let to = active_plan(c, &slug).await?;
                    if to.id == tenant.plan_id && sub.billing_cycle == cycle {
                        return Err(AppError::conflict(
                            Some("planSlug"),
                            "the tenant is already on this plan",
                        ));
                    }
                    (to, cycle)
                }
                Target::Reprice(plan, cycle) => {
                    if tenant.plan_id != plan || sub.billing_cycle != cycle {
                        return Err(AppError::conflict(
                            None,
                            "the tenant is no longer on this plan and cycle",
                        ));
                    }
                    let to = plans::store::by_ids(c, &[plan])
                        .await?
                        .pop()
                        .ok_or_else(|| AppError::not_found("plan"))?;
                    (to, cycle)
                }
            };
            let now = Utc::now();
            if store::pending_intent(c, tenant_id, now).await?.is_some() {
                return Err(AppError::conflict(
                    None,
                    "another plan change is waiting for Stripe's confirmation",
                ));
            }
            let price_id = stripe_price(c, &to, &tenant.region, cycle).await?;
            let (intent, from) = open_intent(c, &actor_c, &tenant, &to, cycle, now).await?;
            store::set_intent_subscription(c, tenant_id, intent.id, &subscription_id).await?;
            audit::record(
                c,
                &actor_c,
                audit::Change::new(tenant_id, "plan_change_intent", intent.id, "PLAN_CHANGE_REQUESTED", Value::Null, json!({ "from": from.slug, "to": to.slug, "billingCycle": cycle.as_str(), "status": intent.status })),
            )
            .await?;
            Ok(PlanChangeStart { intent, from, to, subscription_id, price_id })
        }
        .scope_boxed()
    })
    .await
}

/// Stripe's side of a started change: the subscription update keyed by the intent id. A
/// failure marks the intent FAILED (with its audit entry) and is returned.
async fn send_stripe_change(
    db: &Db,
    api: &dyn Payments,
    actor: &Actor,
    start: &PlanChangeStart,
) -> AppResult<()> {
    let called = async {
        let current = api.subscription(&start.subscription_id).await?;
        api.change_price(&current, &start.price_id, start.intent.id)
            .await
    }
    .await;
    if let Err(e) = called {
        fail_intent(db, actor, &start.intent, &e.to_string()).await?;
        return Err(e);
    }
    Ok(())
}

/// Marks a PENDING intent FAILED (optimistic version check) with its audit entry.
async fn fail_intent(db: &Db, actor: &Actor, intent: &IntentRow, error: &str) -> AppResult<()> {
    let (actor_c, intent_c, error) = (actor.clone(), intent.clone(), error.to_owned());
    db.scoped(Scope::Tenant(intent.tenant_id), |c| {
        async move {
            let failed = store::advance_intent(
                c,
                intent_c.tenant_id,
                intent_c.id,
                intent_c.version,
                IntentStatus::Failed,
                Some(&error),
            )
            .await?;
            if failed.is_some() {
                audit::record(
                    c,
                    &actor_c,
                    audit::Change::new(
                        intent_c.tenant_id,
                        "plan_change_intent",
                        intent_c.id,
                        "PLAN_CHANGE_FAILED",
                        json!({ "status": intent_c.status }),
                        json!({ "status": "FAILED", "error": error }),
                    ),
                )
                .await?;
            }
            Ok(())
        }
        .scope_boxed()
    })
    .await
}
