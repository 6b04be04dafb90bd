//! Switching a tenant's plan: the one function every path that changes a plan goes through
//! (LOCAL `changePlan`, Stripe events and our own Stripe answers, cancellation, trial expiry,
//! maintenance overrides), the fallback to `free`, and a new tenant's first subscription.

use chrono::{DateTime, Duration, Months, Utc};
use serde_json::json;

use super::model::{SubscriptionRow, SubscriptionStatus};
use super::store::{self, SubscriptionChanges};
use crate::audit;
use crate::auth::Actor;
use crate::db::Conn;
use crate::error::AppResult;
use crate::ids::TenantId;
use crate::plans::model::{BillingCycle, PlanQuotaRow, PlanRow};
use crate::quotas::model::QuotaRow;
use crate::tenants::model::TenantRow;
use crate::{plans, quotas, tenants};

fn period_end(start: DateTime<Utc>, cycle: BillingCycle) -> DateTime<Utc> {
    let months = if cycle == BillingCycle::Yearly { 12 } else { 1 };
    start
        .checked_add_months(Months::new(months))
        .unwrap_or(start)
}

/// The subscription a new tenant starts with: TRIALING for `trial_days` when the plan has a
/// trial, ACTIVE otherwise.
pub fn initial_subscription(
    tenant_id: TenantId,
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
        },
        plan_id: plan.id,
        billing_cycle: BillingCycle::Monthly,
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
        let period = q.reset_period;
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
            reset_period: q.reset_period,
            period_start: period.period_start(now),
            alert_thresholds: before.map_or_else(
                || crate::quotas::model::DEFAULT_ALERT_THRESHOLDS.to_vec(),
                |b| b.alert_thresholds,
            ),
            enforcement: q.enforcement,
            overridden: false,
        };
        quotas::store::upsert(c, &row).await?;
    }
    let changes = SubscriptionChanges {
        plan_id: Some(plan.id),
        billing_cycle: Some(cycle),
        updated_at: Some(now),
        ..Default::default()
    };
    store::update_subscription(c, tenant.id, &changes).await?;
    // A change of billing cycle alone keeps every override: entitlements follow the plan.
    if plan.id != tenant.plan_id {
        crate::features::service::reconcile_with_plan(c, actor, tenant.id, plan).await?;
        let from = plans::store::by_ids(c, &[tenant.plan_id]).await?.pop();
        let data = json!({ "fromPlan": from.map(|p| p.slug), "toPlan": plan.slug,
            "billingCycle": cycle.as_str() });
        crate::notifications::outbox::emit(
            c,
            tenant.id,
            crate::notifications::outbox::EventType::PlanChanged,
            data,
        )
        .await?;
    }
    audit::record(
        c,
        actor,
        audit::Change::new(
            tenant.id,
            "tenant",
            tenant.id,
            "PLAN_CHANGE",
            json!({ "planId": tenant.plan_id }),
            json!({ "planId": plan.id, "plan": plan.slug, "billingCycle": cycle.as_str() }),
        ),
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
