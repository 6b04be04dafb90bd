//! Billing rules. Plan changes go through an intent (PENDING → COMPLETED/FAILED/EXPIRED,
//! optimistic `version`); in LOCAL mode the change applies in the same transaction. Applying a
//! plan switches the tenant's plan, quotas (limits from the new plan, usage kept) and so its
//! features, and the subscription mirror — one function, shared with the Stripe webhook.

use chrono::{DateTime, Duration, Months, Utc};
use scoped_futures::ScopedFutureExt;
use serde_json::{json, Value};
use uuid::Uuid;

use super::model::{BillingMode, IntentRow, IntentStatus, SubscriptionRow, SubscriptionStatus};
use super::store::{self, SubscriptionChanges};
use super::stripe::SubscriptionState;
use crate::app::App;
use crate::audit;
use crate::auth::Actor;
use crate::db::{Conn, Scope};
use crate::error::{AppError, AppResult};
use crate::plans::model::{BillingCycle, PlanPriceRow, PlanQuotaRow, PlanRow};
use crate::quotas::model::{QuotaRow, ResetPeriod};
use crate::tenants::model::TenantRow;
use crate::tenants::service::target_scope;
use crate::{plans, quotas, tenants};

pub const INTENT_TTL_HOURS: i64 = 24;
/// Days a PAST_DUE subscription keeps its tenant running before the job suspends it.
pub const GRACE_PERIOD_DAYS: i64 = 7;
/// The suspension reason of the grace-period job; a payment lifts exactly this suspension.
pub const NONPAYMENT_SUSPEND_REASON: &str = "payment overdue: grace period ended";

pub fn mode(app: &App) -> BillingMode {
    if app.settings.billing_live() {
        BillingMode::Stripe
    } else {
        BillingMode::Local
    }
}

fn period_end(start: DateTime<Utc>, cycle: BillingCycle) -> DateTime<Utc> {
    let months = if cycle == BillingCycle::Yearly { 12 } else { 1 };
    start
        .checked_add_months(Months::new(months))
        .unwrap_or(start)
}

/// The subscription a new tenant starts with: TRIALING for `trial_days` when the plan has a
/// trial, ACTIVE otherwise.
pub fn initial_subscription(
    tenant_id: Uuid,
    plan: &PlanRow,
    now: DateTime<Utc>,
) -> SubscriptionRow {
    let trial_end = (plan.trial_days > 0).then(|| now + Duration::days(plan.trial_days as i64));
    SubscriptionRow {
        tenant_id,
        status: if trial_end.is_some() {
            SubscriptionStatus::Trialing
        } else {
            SubscriptionStatus::Active
        }
        .as_str()
        .into(),
        plan_id: plan.id,
        billing_cycle: BillingCycle::Monthly.as_str().into(),
        stripe_customer_id: None,
        stripe_subscription_id: None,
        current_period_start: Some(now),
        current_period_end: Some(
            trial_end.unwrap_or_else(|| period_end(now, BillingCycle::Monthly)),
        ),
        trial_end,
        cancel_at_period_end: false,
        canceled_at: None,
        grace_period_end: None,
    }
}

/// The tenant's subscription mirror, read in the caller's scope.
async fn subscription_row(app: &App, actor: &Actor, tenant_id: Uuid) -> AppResult<SubscriptionRow> {
    let scope = target_scope(actor, tenant_id, "billing")?;
    app.db
        .scoped(scope, |c| {
            async move {
                store::subscriptions_of(c, &[tenant_id])
                    .await?
                    .pop()
                    .ok_or_else(|| AppError::not_found("subscription"))
            }
            .scope_boxed()
        })
        .await
}

/// Mirrors the subscription Stripe answered our call with, at once (stamped now, so events
/// Stripe sent before the call cannot undo it): plan, period, flags, status.
async fn mirror_answer(
    app: &App,
    actor: &Actor,
    tenant_id: Uuid,
    action: &'static str,
    state: SubscriptionState,
) -> AppResult<SubscriptionRow> {
    let scope = target_scope(actor, tenant_id, "billing")?;
    let actor_c = actor.clone();
    let after = app
        .db
        .scoped(scope, |c| {
            async move {
                let tenant = locked_tenant(c, tenant_id).await?;
                let before = store::subscription_with_version(c, tenant_id)
                    .await?
                    .ok_or_else(|| AppError::not_found("subscription"))?;
                let ended = state.status == "canceled";
                // Whole seconds, like the `created` of the events Stripe sends after this call.
                let at = chrono::SubsecRound::trunc_subsecs(Utc::now(), 0);
                super::webhook::apply_state(
                    c, &actor_c, &tenant, &before, &state, ended, at, action,
                )
                .await
            }
            .scope_boxed()
        })
        .await?;
    app.tenant_changed(tenant_id).await;
    Ok(after)
}

async fn locked_tenant(c: &mut Conn, tenant_id: Uuid) -> AppResult<TenantRow> {
    tenants::store::find_for_update(c, tenant_id)
        .await?
        .filter(|t| t.deleted_at.is_none())
        .ok_or_else(|| AppError::not_found("tenant"))
}

async fn active_plan(c: &mut Conn, slug: &str) -> AppResult<PlanRow> {
    plans::store::find_by_slug(c, slug)
        .await?
        .filter(|p| p.is_active)
        .ok_or_else(|| AppError::bad_input("planSlug", format!("unknown plan {slug:?}")))
}

/// Switches `tenant` to `plan`: the tenant row, its quotas' limits (usage kept unless the
/// reset period changes), the subscription mirror, and audit entries. Features follow the plan:
/// overrides enabling what the new plan lacks are removed. Every path that changes a tenant's
/// plan (LOCAL `changePlan`, Stripe events and our own Stripe answers, cancellation, trial
/// expiry, maintenance overrides) comes through here; callers run `App::tenant_changed` after
/// commit so every instance drops its cached features.
pub async fn apply_plan(
    c: &mut Conn,
    actor: &Actor,
    tenant: &TenantRow,
    plan: &PlanRow,
    cycle: BillingCycle,
    now: DateTime<Utc>,
) -> AppResult<()> {
    tenants::store::update(
        c,
        tenant.id,
        &tenants::store::TenantChanges {
            plan_id: Some(plan.id),
            updated_at: Some(now),
            ..Default::default()
        },
    )
    .await?;
    let new_quotas: Vec<PlanQuotaRow> = plans::store::quotas_of(c, &[plan.id]).await?;
    let current = quotas::store::of_tenants(c, &[tenant.id]).await?;
    for q in &new_quotas {
        let period = ResetPeriod::parse(&q.reset_period);
        let before = current
            .iter()
            .find(|r| r.resource == q.resource)
            .cloned()
            .map(|r| r.current(now));
        let keep_used = before
            .as_ref()
            .filter(|b| b.reset_period == q.reset_period)
            .map_or(0, |b| b.used);
        let row = QuotaRow {
            tenant_id: tenant.id,
            resource: q.resource.clone(),
            limit: q.limit,
            used: keep_used,
            unit: q.unit.clone(),
            reset_period: q.reset_period.clone(),
            period_start: period.period_start(now),
            alert_thresholds: before.map_or_else(
                || crate::quotas::model::DEFAULT_ALERT_THRESHOLDS.to_vec(),
                |b| b.alert_thresholds,
            ),
            enforcement: q.enforcement.clone(),
        };
        quotas::store::upsert(c, &row).await?;
    }
    let changes = SubscriptionChanges {
        plan_id: Some(plan.id),
        billing_cycle: Some(cycle.as_str().into()),
        updated_at: Some(now),
        ..Default::default()
    };
    store::update_subscription(c, tenant.id, &changes).await?;
    // A change of billing cycle alone keeps every override: entitlements follow the plan.
    if plan.id != tenant.plan_id {
        crate::features::service::reconcile_with_plan(c, actor, tenant.id, plan).await?;
    }
    audit::record(
        c,
        actor,
        audit::Change {
            tenant_id: Some(tenant.id),
            entity_type: "tenant",
            entity_id: tenant.id.to_string(),
            action: "PLAN_CHANGE",
            before: json!({ "planId": tenant.plan_id }),
            after: json!({ "planId": plan.id, "plan": plan.slug, "billingCycle": cycle.as_str() }),
            metadata: json!({}),
        },
    )
    .await?;
    Ok(())
}

/// The plan a tenant falls back to when its subscription ends: `free`. Returns the updated
/// subscription when the plan changed.
pub async fn downgrade_to_free(
    c: &mut Conn,
    actor: &Actor,
    tenant: &TenantRow,
    now: DateTime<Utc>,
) -> AppResult<Option<SubscriptionRow>> {
    let Some(free) = plans::store::find_by_slug(c, "free")
        .await?
        .filter(|p| p.is_active && p.id != tenant.plan_id)
    else {
        return Ok(None);
    };
    apply_plan(c, actor, tenant, &free, BillingCycle::Monthly, now).await?;
    Ok(store::subscriptions_of(c, &[tenant.id]).await?.pop())
}

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
        id: Uuid::now_v7(),
        from_plan_id: from.id,
        to_plan_id: to.id,
        billing_cycle: cycle.as_str().into(),
        status: IntentStatus::Pending.as_str().into(),
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
    tenant_id: Uuid,
    plan_slug: &str,
    cycle: BillingCycle,
) -> AppResult<(IntentRow, PlanRow, PlanRow)> {
    actor.require_tenant_admin()?;
    if app.stripe.is_some() {
        return change_plan_stripe(app, actor, tenant_id, plan_slug, cycle).await;
    }
    let scope = target_scope(actor, tenant_id, "billing")?;
    let (actor_c, slug) = (actor.clone(), plan_slug.to_owned());
    let out = app
        .db
        .scoped(scope, |c| {
            async move {
                // Billing recovery stays possible while suspended: no TENANT_SUSPENDED here.
                let tenant = locked_tenant(c, tenant_id).await?;
                let to = active_plan(c, &slug).await?;
                let sub = store::subscription_for_update(c, tenant_id).await?;
                let same_cycle = sub
                    .as_ref()
                    .is_none_or(|s| s.billing_cycle == cycle.as_str());
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
                    IntentStatus::Completed.as_str(),
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

/// What a plan change needs from the database before Stripe is called.
struct PlanChangeStart {
    intent: IntentRow,
    from: PlanRow,
    to: PlanRow,
    subscription_id: String,
    price_id: String,
}

/// The Stripe price of `plan` for the tenant's region and `cycle`.
async fn stripe_price(
    c: &mut Conn,
    plan: &PlanRow,
    region: &str,
    cycle: BillingCycle,
) -> AppResult<String> {
    let prices = plans::store::prices_of(c, &[plan.id]).await?;
    price(&prices, plan.id, region, cycle)
        .and_then(|p| p.stripe_price_id)
        .ok_or_else(|| {
            AppError::bad_input(
                "planSlug",
                format!(
                    "plan {:?} has no Stripe price for region {region} and cycle {}",
                    plan.slug,
                    cycle.as_str()
                ),
            )
        })
}

/// `changePlan` with Stripe: the intent is committed PENDING first; Stripe's subscription
/// update carries the intent id as Idempotency-Key and in the metadata; the webhook applies
/// the plan and completes the intent. A Stripe failure marks the intent FAILED and changes
/// nothing else.
async fn change_plan_stripe(
    app: &App,
    actor: &Actor,
    tenant_id: Uuid,
    plan_slug: &str,
    cycle: BillingCycle,
) -> AppResult<(IntentRow, PlanRow, PlanRow)> {
    let Some(api) = app.stripe.as_ref() else {
        return Err(AppError::Billing("Stripe is not configured".into()));
    };
    let scope = target_scope(actor, tenant_id, "billing")?;
    let (actor_c, slug) = (actor.clone(), plan_slug.to_owned());
    let start = app
        .db
        .scoped(scope, |c| {
            async move {
                let tenant = locked_tenant(c, tenant_id).await?;
                let to = active_plan(c, &slug).await?;
                let sub = store::subscription_for_update(c, tenant_id)
                    .await?
                    .ok_or_else(|| AppError::not_found("subscription"))?;
                let Some(subscription_id) = sub.stripe_subscription_id.clone() else {
                    return Err(AppError::conflict(
                        Some("planSlug"),
                        "the tenant has no paid subscription yet: start one with createCheckoutSession",
                    ));
                };
                if to.id == tenant.plan_id && sub.billing_cycle == cycle.as_str() {
                    return Err(AppError::conflict(
                        Some("planSlug"),
                        "the tenant is already on this plan",
                    ));
                }
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
                    audit::Change {
                        tenant_id: Some(tenant_id),
                        entity_type: "plan_change_intent",
                        entity_id: intent.id.to_string(),
                        action: "PLAN_CHANGE_REQUESTED",
                        before: Value::Null,
                        after: json!({ "from": from.slug, "to": to.slug, "billingCycle": cycle.as_str(), "status": intent.status }),
                        metadata: json!({}),
                    },
                )
                .await?;
                Ok(PlanChangeStart { intent, from, to, subscription_id, price_id })
            }
            .scope_boxed()
        })
        .await?;
    let called = async {
        let current = api.subscription(&start.subscription_id).await?;
        api.change_price(&current, &start.price_id, start.intent.id)
            .await
    }
    .await;
    match called {
        Ok(_) => Ok((start.intent, start.from, start.to)),
        Err(e) => {
            fail_intent(app, actor, &start.intent, &e.to_string()).await?;
            Err(e)
        }
    }
}

/// Marks a PENDING intent FAILED (optimistic version check) with its audit entry.
async fn fail_intent(app: &App, actor: &Actor, intent: &IntentRow, error: &str) -> AppResult<()> {
    let (actor_c, intent_c, error) = (actor.clone(), intent.clone(), error.to_owned());
    app.db
        .scoped(Scope::Tenant(intent.tenant_id), |c| {
            async move {
                let failed = store::advance_intent(
                    c,
                    intent_c.tenant_id,
                    intent_c.id,
                    intent_c.version,
                    IntentStatus::Failed.as_str(),
                    Some(&error),
                )
                .await?;
                if failed.is_some() {
                    audit::record(
                        c,
                        &actor_c,
                        audit::Change {
                            tenant_id: Some(intent_c.tenant_id),
                            entity_type: "plan_change_intent",
                            entity_id: intent_c.id.to_string(),
                            action: "PLAN_CHANGE_FAILED",
                            before: json!({ "status": intent_c.status }),
                            after: json!({ "status": "FAILED", "error": error }),
                            metadata: json!({}),
                        },
                    )
                    .await?;
                }
                Ok(())
            }
            .scope_boxed()
        })
        .await
}

/// `createCheckoutSession` with Stripe: a subscription-mode Checkout session for the tenant's
/// customer and the plan's price. Returns (session id, URL). The plan applies when Stripe's
/// webhook reports the new subscription.
pub async fn checkout_stripe(
    app: &App,
    actor: &Actor,
    tenant_id: Uuid,
    plan_slug: &str,
    cycle: BillingCycle,
    success_url: &str,
    cancel_url: &str,
) -> AppResult<(String, String)> {
    actor.require_tenant_admin()?;
    let Some(api) = app.stripe.as_ref() else {
        return Err(AppError::Billing("Stripe is not configured".into()));
    };
    let scope = target_scope(actor, tenant_id, "billing")?;
    let slug = plan_slug.to_owned();
    let (tenant, plan, price_id) = app
        .db
        .scoped(scope, |c| {
            async move {
                let tenant = locked_tenant(c, tenant_id).await?;
                let plan = active_plan(c, &slug).await?;
                let sub = store::subscriptions_of(c, &[tenant_id]).await?.pop();
                let paid = sub.as_ref().is_some_and(|s| {
                    s.stripe_subscription_id.is_some()
                        && s.status != SubscriptionStatus::Canceled.as_str()
                        && s.status != SubscriptionStatus::Expired.as_str()
                });
                if paid {
                    return Err(AppError::conflict(
                        Some("planSlug"),
                        "the tenant already has a paid subscription: use changePlan",
                    ));
                }
                let price_id = stripe_price(c, &plan, &tenant.region, cycle).await?;
                Ok((tenant, plan, price_id))
            }
            .scope_boxed()
        })
        .await?;
    let customer = match tenant.stripe_customer_id.clone() {
        Some(c) => c,
        None => ensure_customer(app, &tenant).await?,
    };
    let session = api
        .checkout(
            tenant_id,
            &customer,
            &price_id,
            &plan.slug,
            success_url,
            cancel_url,
            Uuid::new_v4(),
        )
        .await?;
    let (actor_c, slug) = (actor.clone(), plan.slug.clone());
    app.db
        .scoped(Scope::Tenant(tenant_id), |c| {
            async move {
                audit::record(
                    c,
                    &actor_c,
                    audit::Change {
                        tenant_id: Some(tenant_id),
                        entity_type: "subscription",
                        entity_id: tenant_id.to_string(),
                        action: "CHECKOUT",
                        before: Value::Null,
                        after: json!({ "plan": slug, "billingCycle": cycle.as_str() }),
                        metadata: json!({}),
                    },
                )
                .await?;
                Ok(())
            }
            .scope_boxed()
        })
        .await?;
    Ok(session)
}

/// The tenant's Stripe customer, created (idempotently, keyed by the tenant id) when the
/// tenant predates live billing.
pub async fn ensure_customer(app: &App, tenant: &TenantRow) -> AppResult<String> {
    let Some(api) = app.stripe.as_ref() else {
        return Err(AppError::Billing("Stripe is not configured".into()));
    };
    let customer = api
        .create_customer(tenant.id, &tenant.name, &tenant.slug)
        .await?;
    let (id, cust) = (tenant.id, customer.clone());
    app.db
        .scoped(Scope::Platform("stripe_customer"), |c| {
            async move { link_customer(c, id, &cust).await }.scope_boxed()
        })
        .await?;
    Ok(customer)
}

/// Stores the customer → tenant mapping the webhook relies on.
pub async fn link_customer(c: &mut Conn, tenant_id: Uuid, customer: &str) -> AppResult<()> {
    tenants::store::update(
        c,
        tenant_id,
        &tenants::store::TenantChanges {
            stripe_customer_id: Some(Some(customer.to_owned())),
            ..Default::default()
        },
    )
    .await?;
    store::update_subscription(
        c,
        tenant_id,
        &SubscriptionChanges {
            stripe_customer_id: Some(Some(customer.to_owned())),
            ..Default::default()
        },
    )
    .await?;
    Ok(())
}

pub struct Preview {
    pub from: PlanRow,
    pub to: PlanRow,
    pub cycle: BillingCycle,
    pub currency: String,
    /// What the switch costs now for the rest of the period (negative: a credit).
    pub proration_amount: i64,
    pub quota_changes: Vec<(String, Option<i64>, Option<i64>)>,
    pub features_added: Vec<String>,
    pub features_removed: Vec<String>,
}

fn price(
    prices: &[PlanPriceRow],
    plan: Uuid,
    region: &str,
    cycle: BillingCycle,
) -> Option<PlanPriceRow> {
    prices
        .iter()
        .find(|p| p.plan_id == plan && p.region == region && p.billing_cycle == cycle)
        .cloned()
}

/// `previewPlanChange`: the differences, and the prorated amount for the rest of the period
/// (LOCAL mode computes it from the catalogue prices).
pub async fn preview(
    app: &App,
    actor: &Actor,
    tenant_id: Uuid,
    plan_slug: &str,
    cycle: BillingCycle,
) -> AppResult<Preview> {
    let scope = target_scope(actor, tenant_id, "billing")?;
    let slug = plan_slug.to_owned();
    let (mut preview, stripe_ids) = app
        .db
        .scoped(scope, |c| {
            async move {
                let tenant = tenants::store::find(c, tenant_id)
                    .await?
                    .ok_or_else(|| AppError::not_found("tenant"))?;
                let to = active_plan(c, &slug).await?;
                let from = plans::store::by_ids(c, &[tenant.plan_id])
                    .await?
                    .pop()
                    .ok_or_else(|| AppError::not_found("plan"))?;
                let ids = [from.id, to.id];
                let prices = plans::store::prices_of(c, &ids).await?;
                let quotas = plans::store::quotas_of(c, &ids).await?;
                let features = plans::store::features_of(c, &ids).await?;
                let sub = store::subscriptions_of(c, &[tenant_id]).await?.pop();
                let from_cycle = sub.as_ref().map_or(BillingCycle::Monthly, |s| {
                    BillingCycle::parse(&s.billing_cycle)
                });
                let old = price(&prices, from.id, &tenant.region, from_cycle);
                let new = price(&prices, to.id, &tenant.region, cycle);
                let now = Utc::now();
                let fraction = sub
                    .as_ref()
                    .and_then(|s| Some((s.current_period_start?, s.current_period_end?)))
                    .filter(|(a, b)| b > a && *b > now)
                    .map_or(1.0, |(a, b)| {
                        (b - now).num_seconds() as f64 / (b - a).num_seconds() as f64
                    });
                let stripe_ids = sub
                    .as_ref()
                    .and_then(|s| s.stripe_subscription_id.clone())
                    .zip(new.as_ref().and_then(|p| p.stripe_price_id.clone()));
                let amount = |p: &Option<PlanPriceRow>| p.as_ref().map_or(0, |p| p.amount) as f64;
                let proration = ((amount(&new) - amount(&old)) * fraction).round() as i64;
                let currency = new.or(old).map_or_else(|| "usd".into(), |p| p.currency);
                let mut resources: Vec<String> =
                    quotas.iter().map(|q| q.resource.clone()).collect();
                resources.sort();
                resources.dedup();
                let limit_of = |plan: Uuid, r: &str| {
                    quotas
                        .iter()
                        .find(|q| q.plan_id == plan && q.resource == r)
                        .map(|q| q.limit)
                };
                let quota_changes = resources
                    .into_iter()
                    .map(|r| (limit_of(from.id, &r), limit_of(to.id, &r), r))
                    .filter(|(a, b, _)| a != b)
                    .map(|(a, b, r)| (r, a, b))
                    .collect();
                let has = |plan: Uuid, f: &str| features.iter().any(|(p, k)| *p == plan && k == f);
                let mut keys: Vec<&String> = features.iter().map(|(_, k)| k).collect();
                keys.sort();
                keys.dedup();
                let features_added = keys
                    .iter()
                    .filter(|k| has(to.id, k) && !has(from.id, k))
                    .map(|k| k.to_string())
                    .collect();
                let features_removed = keys
                    .iter()
                    .filter(|k| has(from.id, k) && !has(to.id, k))
                    .map(|k| k.to_string())
                    .collect();
                let preview = Preview {
                    from,
                    to,
                    cycle,
                    currency,
                    proration_amount: proration,
                    quota_changes,
                    features_added,
                    features_removed,
                };
                Ok((preview, stripe_ids))
            }
            .scope_boxed()
        })
        .await?;
    // With Stripe, the amount is Stripe's own invoice preview of the proration.
    if let (Some(api), Some((sub_id, price_id))) = (app.stripe.as_ref(), stripe_ids) {
        let current = api.subscription(&sub_id).await?;
        let (amount, currency) = api.preview_change(&current, &price_id).await?;
        preview.proration_amount = amount;
        preview.currency = currency;
    }
    Ok(preview)
}

/// `cancelSubscription`: at period end (default) or at once.
pub async fn cancel(
    app: &App,
    actor: &Actor,
    tenant_id: Uuid,
    at_period_end: bool,
) -> AppResult<SubscriptionRow> {
    actor.require_tenant_admin()?;
    let check = |s: &SubscriptionRow| {
        if s.status == SubscriptionStatus::Canceled.as_str() {
            return Err(AppError::conflict(
                None,
                "the subscription is already canceled",
            ));
        }
        Ok(())
    };
    if let Some(api) = app.stripe.as_ref() {
        let row = subscription_row(app, actor, tenant_id).await?;
        if let Some(sub_id) = row.stripe_subscription_id.clone() {
            check(&row)?;
            let state = api.cancel(&sub_id, at_period_end, Uuid::new_v4()).await?;
            return mirror_answer(app, actor, tenant_id, "CANCEL", state).await;
        }
    }
    change_subscription(app, actor, tenant_id, "CANCEL", move |s, now| {
        check(s)?;
        Ok(if at_period_end {
            SubscriptionChanges {
                cancel_at_period_end: Some(true),
                ..Default::default()
            }
        } else {
            SubscriptionChanges {
                status: Some(SubscriptionStatus::Canceled.as_str().into()),
                canceled_at: Some(Some(now)),
                cancel_at_period_end: Some(false),
                current_period_end: Some(Some(now)),
                ..Default::default()
            }
        })
    })
    .await
}

/// `resumeSubscription`: undoes a cancellation scheduled for the period end.
pub async fn resume(app: &App, actor: &Actor, tenant_id: Uuid) -> AppResult<SubscriptionRow> {
    actor.require_tenant_admin()?;
    let check = |s: &SubscriptionRow| {
        if !s.cancel_at_period_end || s.status == SubscriptionStatus::Canceled.as_str() {
            return Err(AppError::conflict(None, "no cancellation is scheduled"));
        }
        Ok(())
    };
    if let Some(api) = app.stripe.as_ref() {
        let row = subscription_row(app, actor, tenant_id).await?;
        if let Some(sub_id) = row.stripe_subscription_id.clone() {
            check(&row)?;
            let state = api.resume(&sub_id, Uuid::new_v4()).await?;
            return mirror_answer(app, actor, tenant_id, "RESUME", state).await;
        }
    }
    change_subscription(app, actor, tenant_id, "RESUME", move |s, _| {
        check(s)?;
        Ok(SubscriptionChanges {
            cancel_at_period_end: Some(false),
            ..Default::default()
        })
    })
    .await
}

async fn change_subscription(
    app: &App,
    actor: &Actor,
    tenant_id: Uuid,
    action: &'static str,
    decide: impl FnOnce(&SubscriptionRow, DateTime<Utc>) -> AppResult<SubscriptionChanges>
        + Send
        + 'static,
) -> AppResult<SubscriptionRow> {
    let scope = target_scope(actor, tenant_id, "billing")?;
    let actor_c = actor.clone();
    let after = app
        .db
        .scoped(scope, |c| {
            async move {
                let tenant = locked_tenant(c, tenant_id).await?;
                let before = store::subscription_for_update(c, tenant_id)
                    .await?
                    .ok_or_else(|| AppError::not_found("subscription"))?;
                let now = Utc::now();
                let mut changes = decide(&before, now)?;
                changes.updated_at = Some(now);
                let mut after = store::update_subscription(c, tenant_id, &changes).await?;
                if after.status == SubscriptionStatus::Canceled.as_str()
                    && before.status != after.status
                {
                    after = downgrade_to_free(c, &actor_c, &tenant, now).await?.unwrap_or(after);
                }
                let view = |s: &SubscriptionRow| json!({ "status": s.status, "cancelAtPeriodEnd": s.cancel_at_period_end });
                audit::record(
                    c,
                    &actor_c,
                    audit::Change {
                        tenant_id: Some(tenant_id),
                        entity_type: "subscription",
                        entity_id: tenant_id.to_string(),
                        action,
                        before: view(&before),
                        after: view(&after),
                        metadata: json!({}),
                    },
                )
                .await?;
                Ok(after)
            }
            .scope_boxed()
        })
        .await?;
    // A cancellation may have moved the tenant to the free plan.
    app.tenant_changed(tenant_id).await;
    Ok(after)
}

/// Platform admins' manual override of a subscription's state, for support incidents. Only in
/// maintenance mode (`ADMIN_MAINTENANCE_MODE=true`), only with a reason and a ticket id, and
/// always audited with both.
pub async fn maintenance_override(
    app: &App,
    actor: &Actor,
    tenant_id: Uuid,
    status: SubscriptionStatus,
    reason: &str,
    ticket_id: &str,
) -> AppResult<SubscriptionRow> {
    if !actor.is_platform() {
        return Err(AppError::forbidden("requires role platform_admin"));
    }
    if !app.settings.admin_maintenance_mode {
        return Err(AppError::forbidden(
            "subscription overrides are allowed only in maintenance mode (ADMIN_MAINTENANCE_MODE=true)",
        ));
    }
    let (reason, ticket) = (reason.trim().to_owned(), ticket_id.trim().to_owned());
    if reason.is_empty() || reason.len() > 500 {
        return Err(AppError::bad_input(
            "reason",
            "a reason (1-500 characters) is required",
        ));
    }
    if ticket.is_empty() || ticket.len() > 100 {
        return Err(AppError::bad_input(
            "ticketId",
            "a ticket id (1-100 characters) is required",
        ));
    }
    let actor_c = actor.clone();
    let after = app
        .db
        .scoped(crate::db::Scope::Platform("maintenance_override"), |c| {
            async move {
                let tenant = locked_tenant(c, tenant_id).await?;
                let before = store::subscription_for_update(c, tenant_id)
                    .await?
                    .ok_or_else(|| AppError::not_found("subscription"))?;
                let now = Utc::now();
                let changes = SubscriptionChanges {
                    status: Some(status.as_str().into()),
                    updated_at: Some(now),
                    ..Default::default()
                };
                let mut after = store::update_subscription(c, tenant_id, &changes).await?;
                // An ended subscription ends its paid plan, whoever ended it.
                let ended = |s: &str| {
                    s == SubscriptionStatus::Canceled.as_str() || s == SubscriptionStatus::Expired.as_str()
                };
                if ended(&after.status) && !ended(&before.status) {
                    after = downgrade_to_free(c, &actor_c, &tenant, now).await?.unwrap_or(after);
                }
                audit::record(
                    c,
                    &actor_c,
                    audit::Change {
                        tenant_id: Some(tenant_id),
                        entity_type: "subscription",
                        entity_id: tenant_id.to_string(),
                        action: "OVERRIDE",
                        before: json!({ "status": before.status }),
                        after: json!({ "status": after.status }),
                        metadata: json!({ "reason": reason, "ticketId": ticket, "maintenanceMode": true }),
                    },
                )
                .await?;
                Ok(after)
            }
            .scope_boxed()
        })
        .await?;
    app.tenant_changed(tenant_id).await;
    Ok(after)
}
