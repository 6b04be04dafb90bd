//! Quota rules. Provisioning: a new tenant gets its plan's quotas plus the defaults for
//! resources the plan does not name, in the caller's transaction.

use chrono::{DateTime, Utc};
use diesel::QueryResult;

use super::model::{QuotaRow, ResetPeriod, DEFAULT_ALERT_THRESHOLDS, DEFAULT_QUOTAS};
use super::store;
use crate::db::{Conn, Scope};
use crate::ids::{PlanId, TenantId};
use crate::plans::model::PlanQuotaRow;

pub fn provisioned_quotas(
    tenant_id: TenantId,
    plan: &[PlanQuotaRow],
    now: DateTime<Utc>,
) -> Vec<QuotaRow> {
    let row = |resource: &str, limit, unit: &str, period: ResetPeriod, enforcement| QuotaRow {
        tenant_id,
        resource: resource.to_owned(),
        limit,
        used: 0,
        unit: unit.to_owned(),
        reset_period: period,
        period_start: period.period_start(now),
        alert_thresholds: DEFAULT_ALERT_THRESHOLDS.to_vec(),
        enforcement,
        overridden: false,
    };
    let mut rows: Vec<QuotaRow> = plan
        .iter()
        .map(|q| row(&q.resource, q.limit, &q.unit, q.reset_period, q.enforcement))
        .collect();
    for (resource, limit, unit, period) in DEFAULT_QUOTAS {
        if !plan.iter().any(|q| q.resource == *resource) {
            rows.push(row(resource, *limit, unit, *period, QuotaEnforcement::Hard));
        }
    }
    rows
}

pub async fn provision(
    conn: &mut Conn,
    tenant_id: TenantId,
    plan: &[PlanQuotaRow],
    now: DateTime<Utc>,
) -> QueryResult<Vec<QuotaRow>> {
    let rows = provisioned_quotas(tenant_id, plan, now);
    store::insert_many(conn, &rows).await?;
    Ok(rows)
}

use chrono::Utc as Clock;
use scoped_futures::ScopedFutureExt;
use serde_json::json;

use super::metering::{UsageOutcome, UsageRequest};
use super::model::QuotaEnforcement;
use crate::app::App;
use crate::audit;
use crate::auth::{Actor, Role};
use crate::config::MemberSoftPolicy;
use crate::error::{AppError, AppResult};
use crate::resource_types::service as resource_types;
use crate::tenants::model::TenantStatus;
use crate::tenants::service::target_scope;

/// The tenant must exist, not be deleted, and (for writes) not be suspended. Returns its plan.
async fn live_tenant(app: &App, tenant_id: TenantId, write: bool) -> AppResult<PlanId> {
    match app.tenant_cache.by_id(&app.db, tenant_id).await? {
        None => Err(AppError::not_found("tenant")),
        Some(t) => match t.status {
            TenantStatus::Deleted => Err(AppError::not_found("tenant")),
            TenantStatus::Suspended if write => Err(AppError::TenantSuspended),
            _ => Ok(t.plan_id),
        },
    }
}

/// The most a quota's usage may reach for a caller (the SQL twin is `app_usage_cap`).
pub fn usage_cap(quota: &QuotaRow, soft_overage: bool, overage_limit_percent: i32) -> i64 {
    if quota.enforcement == QuotaEnforcement::Soft && soft_overage {
        let cap = quota.limit as i128 * (100 + overage_limit_percent as i128) / 100;
        cap.min(i64::MAX as i128) as i64
    } else {
        quota.limit
    }
}

/// May this caller's increments take a SOFT quota into overage? Tenant admins, platform
/// actors and the service token may (up to the plan's overage ceiling); tenant members as
/// `USAGE_MEMBER_SOFT_POLICY` says (`within_limit` by default, `deny` = no usage at all).
fn soft_overage(app: &App, actor: &Actor) -> AppResult<bool> {
    if actor.is_platform() || actor.role != Some(Role::TenantMember) {
        return Ok(true);
    }
    match app.settings.bounds.usage_member_soft_policy {
        MemberSoftPolicy::Allow => Ok(true),
        MemberSoftPolicy::WithinLimit => Ok(false),
        MemberSoftPolicy::Deny => Err(AppError::forbidden(
            "tenant members may not record usage (USAGE_MEMBER_SOFT_POLICY=deny)",
        )),
    }
}

/// Records usage (GraphQL `recordUsage` and `POST /internal/tenants/{id}/usage`).
pub async fn record_usage(
    app: &App,
    actor: &Actor,
    tenant_id: TenantId,
    resource: String,
    amount: i64,
    idempotency_key: Option<String>,
) -> AppResult<UsageOutcome> {
    target_scope(actor, tenant_id, "usage")?;
    let soft_overage = soft_overage(app, actor)?;
    let max = app.settings.bounds.usage_max_amount;
    if amount <= 0 || amount > max {
        return Err(AppError::bad_input(
            "amount",
            format!("amount must be a whole number from 1 to {max} (USAGE_MAX_AMOUNT)"),
        ));
    }
    let req = UsageRequest {
        tenant_id,
        resource,
        amount,
        idempotency_key,
        soft_overage,
    };
    super::metering::validate(&req)?;
    resource_types::require_known(app, "resource", &req.resource).await?;
    live_tenant(app, tenant_id, true).await?;
    app.meter.record(req).await
}

#[derive(Debug, Clone)]
pub struct QuotaCheck {
    pub allowed: bool,
    pub quota: QuotaRow,
}

/// Would `amount` more be admitted now? (Nothing is recorded.)
pub async fn check(
    app: &App,
    actor: &Actor,
    tenant_id: TenantId,
    resource: &str,
    amount: i64,
) -> AppResult<QuotaCheck> {
    if amount < 0 {
        return Err(AppError::bad_input("amount", "amount must not be negative"));
    }
    let scope = target_scope(actor, tenant_id, "quota_read")?;
    resource_types::require_known(app, "resource", resource).await?;
    let plan_id = live_tenant(app, tenant_id, false).await?;
    let overage_percent = app
        .plans
        .by_id(&app.db, plan_id)
        .await?
        .overage_limit_percent;
    let soft_overage = soft_overage(app, actor).unwrap_or(false);
    let resource_c = resource.to_owned();
    let row = app
        .db
        .scoped(scope, |c| {
            async move { Ok(store::find(c, tenant_id, &resource_c).await?) }.scope_boxed()
        })
        .await?
        .ok_or_else(|| AppError::NotFound(format!("no quota for resource {resource:?}")))?
        .current(Clock::now());
    let cap = usage_cap(&row, soft_overage, overage_percent);
    let allowed = row
        .used
        .checked_add(amount)
        .is_some_and(|total| total <= cap);
    metrics::counter!("tenantry_quota_checks_total", "allowed" => allowed.to_string()).increment(1);
    Ok(QuotaCheck {
        allowed,
        quota: row,
    })
}

pub struct SetQuota {
    pub resource: String,
    pub limit: i64,
    pub unit: Option<String>,
    pub reset_period: Option<ResetPeriod>,
    pub alert_thresholds: Option<Vec<i32>>,
    pub enforcement: Option<QuotaEnforcement>,
}

/// The bounds a quota's limit and unit keep, for a tenant's quota and a plan's alike.
pub fn check_limit_and_unit(limit: i64, unit: Option<&str>) -> AppResult<()> {
    if limit < 0 {
        return Err(AppError::bad_input("limit", "limit must not be negative"));
    }
    if unit.is_some_and(|u| u.is_empty() || u.len() > 32) {
        return Err(AppError::bad_input("unit", "unit must be 1-32 characters"));
    }
    Ok(())
}

/// Creates or adjusts a tenant's quota (platform admins) on a known resource type. Changing
/// the reset period starts a new period from zero; otherwise `used` is kept. A new quota
/// takes the resource type's unit and default enforcement unless the input names them.
pub async fn set_quota(
    app: &App,
    actor: &Actor,
    tenant_id: TenantId,
    input: SetQuota,
) -> AppResult<QuotaRow> {
    actor.require(Role::PlatformAdmin)?;
    let kind = resource_types::require_known(app, "resource", &input.resource).await?;
    check_limit_and_unit(input.limit, input.unit.as_deref())?;
    let thresholds = match input.alert_thresholds {
        None => None,
        Some(mut t) => {
            t.sort_unstable();
            t.dedup();
            if t.len() > 10 || t.iter().any(|v| !(1..=1000).contains(v)) {
                return Err(AppError::bad_input(
                    "alertThresholds",
                    "up to 10 thresholds, each 1-1000 (percent)",
                ));
            }
            Some(t)
        }
    };
    let actor_c = actor.clone();
    let row = app
        .db
        .scoped(Scope::Platform("quota_admin"), |c| {
            async move {
                let tenant = crate::tenants::lifecycle::lock_live(c, tenant_id).await?;
                let now = Clock::now();
                let before = store::find(c, tenant.id, &input.resource)
                    .await?
                    .map(|q| q.current(now));
                let period = input
                    .reset_period
                    .or_else(|| before.as_ref().map(|b| b.reset_period))
                    .unwrap_or(ResetPeriod::Monthly);
                let same_period = before.as_ref().is_some_and(|b| b.reset_period == period);
                let row = QuotaRow {
                    tenant_id: tenant.id,
                    resource: input.resource.clone(),
                    limit: input.limit,
                    used: if same_period {
                        before.as_ref().map_or(0, |b| b.used)
                    } else {
                        0
                    },
                    unit: input
                        .unit
                        .or_else(|| before.as_ref().map(|b| b.unit.clone()))
                        .unwrap_or(kind.unit),
                    reset_period: period,
                    period_start: period.period_start(now),
                    alert_thresholds: thresholds
                        .or_else(|| before.as_ref().map(|b| b.alert_thresholds.clone()))
                        .unwrap_or_else(|| DEFAULT_ALERT_THRESHOLDS.to_vec()),
                    enforcement: input
                        .enforcement
                        .or_else(|| before.as_ref().map(|b| b.enforcement))
                        .unwrap_or(kind.default_enforcement),
                    overridden: true,
                };
                let saved = store::upsert(c, &row).await?;
                let view = |q: &QuotaRow| {
                    json!({ "limit": q.limit, "unit": q.unit, "resetPeriod": q.reset_period,
                            "alertThresholds": q.alert_thresholds, "enforcement": q.enforcement,
                            "overridden": q.overridden })
                };
                audit::record(
                    c,
                    &actor_c,
                    audit::Change {
                        tenant_id: Some(tenant.id),
                        entity_type: "quota",
                        entity_id: saved.resource.clone(),
                        action: if before.is_some() { "UPDATE" } else { "CREATE" },
                        before: before.as_ref().map_or(serde_json::Value::Null, view),
                        after: view(&saved),
                        metadata: json!({}),
                    },
                )
                .await?;
                Ok(saved)
            }
            .scope_boxed()
        })
        .await?;
    Ok(row)
}
