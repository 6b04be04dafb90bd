//! Billing rules. Plan changes go through an intent (PENDING → COMPLETED/FAILED/EXPIRED,
//! optimistic `version`); in LOCAL mode the change applies in the same transaction. Applying a
//! plan switches the tenant's plan, quotas (limits from the new plan, usage kept) and so its
//! features, and the subscription mirror — one function, shared with the Stripe webhook.

use chrono::{DateTime, Duration, Months, Utc};
use scoped_futures::ScopedFutureExt;
use serde_json::json;
use uuid::Uuid;

use super::model::{BillingMode, IntentRow, IntentStatus, SubscriptionRow, SubscriptionStatus};
use super::store::{self, SubscriptionChanges};
use crate::app::App;
use crate::audit;
use crate::auth::{Actor, Role};
use crate::db::Conn;
use crate::error::{AppError, AppResult};
use crate::plans::model::{BillingCycle, PlanPriceRow, PlanQuotaRow, PlanRow};
use crate::quotas::model::{QuotaRow, ResetPeriod};
use crate::tenants::model::TenantRow;
use crate::tenants::service::target_scope;
use crate::{plans, quotas, tenants};

pub const INTENT_TTL_HOURS: i64 = 24;

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

fn may_manage(actor: &Actor) -> AppResult<()> {
    if actor.is_platform() || actor.role.is_some_and(|r| r.satisfies(Role::TenantAdmin)) {
        Ok(())
    } else {
        Err(AppError::forbidden("requires role tenant_admin"))
    }
}

fn require_local(app: &App) -> AppResult<()> {
    match mode(app) {
        BillingMode::Local => Ok(()),
        BillingMode::Stripe => Err(AppError::Billing(
            "Stripe billing is not available in this version yet".into(),
        )),
    }
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
/// reset period changes), the subscription mirror, and audit entries. Features follow the plan.
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

/// `changePlan`: an intent, applied at once in LOCAL mode.
pub async fn change_plan(
    app: &App,
    actor: &Actor,
    tenant_id: Uuid,
    plan_slug: &str,
    cycle: BillingCycle,
) -> AppResult<(IntentRow, PlanRow, PlanRow)> {
    may_manage(actor)?;
    require_local(app)?;
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
                let from = plans::store::by_ids(c, &[tenant.plan_id])
                    .await?
                    .pop()
                    .ok_or_else(|| AppError::not_found("plan"))?;
                let now = Utc::now();
                let intent = store::insert_intent(
                    c,
                    &IntentRow {
                        tenant_id,
                        id: Uuid::now_v7(),
                        from_plan_id: from.id,
                        to_plan_id: to.id,
                        billing_cycle: cycle.as_str().into(),
                        status: IntentStatus::Pending.as_str().into(),
                        version: 1,
                        error: None,
                        requested_by: actor_c.id.clone(),
                        expires_at: now + Duration::hours(INTENT_TTL_HOURS),
                        completed_at: None,
                    },
                )
                .await?;
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
        .find(|p| p.plan_id == plan && p.region == region && p.billing_cycle == cycle.as_str())
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
    app.db
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
                Ok(Preview {
                    from,
                    to,
                    cycle,
                    currency,
                    proration_amount: proration,
                    quota_changes,
                    features_added,
                    features_removed,
                })
            }
            .scope_boxed()
        })
        .await
}

/// `cancelSubscription`: at period end (default) or at once.
pub async fn cancel(
    app: &App,
    actor: &Actor,
    tenant_id: Uuid,
    at_period_end: bool,
) -> AppResult<SubscriptionRow> {
    may_manage(actor)?;
    require_local(app)?;
    change_subscription(app, actor, tenant_id, "CANCEL", move |s, now| {
        if s.status == SubscriptionStatus::Canceled.as_str() {
            return Err(AppError::conflict(
                None,
                "the subscription is already canceled",
            ));
        }
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
    may_manage(actor)?;
    require_local(app)?;
    change_subscription(app, actor, tenant_id, "RESUME", |s, _| {
        if !s.cancel_at_period_end || s.status == SubscriptionStatus::Canceled.as_str() {
            return Err(AppError::conflict(None, "no cancellation is scheduled"));
        }
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
    app.db
        .scoped(scope, |c| {
            async move {
                locked_tenant(c, tenant_id).await?;
                let before = store::subscription_for_update(c, tenant_id)
                    .await?
                    .ok_or_else(|| AppError::not_found("subscription"))?;
                let now = Utc::now();
                let mut changes = decide(&before, now)?;
                changes.updated_at = Some(now);
                let after = store::update_subscription(c, tenant_id, &changes).await?;
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
        .await
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
    app.db
        .scoped(crate::db::Scope::Platform("maintenance_override"), |c| {
            async move {
                locked_tenant(c, tenant_id).await?;
                let before = store::subscription_for_update(c, tenant_id)
                    .await?
                    .ok_or_else(|| AppError::not_found("subscription"))?;
                let now = Utc::now();
                let changes = SubscriptionChanges {
                    status: Some(status.as_str().into()),
                    updated_at: Some(now),
                    ..Default::default()
                };
                let after = store::update_subscription(c, tenant_id, &changes).await?;
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
        .await
}
