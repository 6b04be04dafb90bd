//! Cost-based limits (Shopify's and GitHub's model): an operation's requested cost is the
//! complexity validation computes (`first` × what each item selects, summed), taken from the
//! tenant's bucket before execution; its actual cost is the same rule over what was returned
//! (lists by their real length), and the difference is given back. Every answer says so in
//! `extensions.cost`. The bucket's size and refill come from the plan ([`shape`]).

use async_graphql::indexmap::IndexMap;
use async_graphql::{Name, SimpleObject, Value as ConstValue};

use crate::app::App;
use crate::auth::{Caller, Role};
use crate::config::BucketShape;
use crate::error::AppError;
use crate::http::ratelimit::Throttle;
use crate::ids::TenantId;
use crate::plans::model::PlanRow;
use crate::tenants::model::TenantRow;

/// What one operation cost, for `extensions.cost`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Cost {
    pub requested: u64,
    /// `None` until the operation ran (a refused operation has none).
    pub actual: Option<u64>,
    /// The tenant's bucket after this operation; `None` when no bucket applies (platform
    /// admins, anonymous callers, limits switched off).
    pub throttle: Option<Throttle>,
    /// Whose bucket was charged.
    pub tenant: Option<TenantId>,
}

impl Cost {
    /// `{ requestedQueryCost actualQueryCost throttleStatus { maximumAvailable
    /// currentlyAvailable restoreRate } }`.
    pub fn to_value(&self) -> ConstValue {
        let mut m = IndexMap::new();
        m.insert(
            Name::new("requestedQueryCost"),
            ConstValue::from(self.requested),
        );
        m.insert(
            Name::new("actualQueryCost"),
            self.actual.map_or(ConstValue::Null, ConstValue::from),
        );
        m.insert(
            Name::new("throttleStatus"),
            self.throttle.as_ref().map_or(ConstValue::Null, status),
        );
        ConstValue::Object(m)
    }
}

fn status(t: &Throttle) -> ConstValue {
    let mut m = IndexMap::new();
    m.insert(
        Name::new("maximumAvailable"),
        ConstValue::from(t.shape.size),
    );
    m.insert(
        Name::new("currentlyAvailable"),
        ConstValue::from(t.available.max(0.0).floor() as u64),
    );
    let rate = (t.shape.restore_rate * 100.0).round() / 100.0;
    m.insert(
        Name::new("restoreRate"),
        async_graphql::Number::from_f64(rate).map_or(ConstValue::Null, ConstValue::Number),
    );
    ConstValue::Object(m)
}

/// A tenant's API budget (`Tenant.apiUsage`).
#[derive(SimpleObject)]
pub struct ApiUsage {
    /// Requests a minute the plan's window allows (the second guard, beside cost).
    pub requests_per_minute: i32,
    /// Cost consumed in the current UTC day: what operations returned, by the rule of
    /// `extensions.cost.actualQueryCost`. Counted while rate limits are on.
    pub cost_consumed_today: i64,
    /// The cost bucket now; null when rate limits are off.
    pub throttle_status: Option<ThrottleStatus>,
}

/// A cost bucket, as in `extensions.cost.throttleStatus`.
#[derive(SimpleObject)]
pub struct ThrottleStatus {
    pub maximum_available: i32,
    pub currently_available: i32,
    /// Points a second.
    pub restore_rate: f64,
}

/// `Tenant.apiUsage`: a look at the tenant's bucket that charges nothing.
pub async fn usage(app: &App, tenant: &TenantRow) -> Result<ApiUsage, AppError> {
    let plan = app.plans.by_id(&app.db, tenant.plan_id).await?;
    let requests_per_minute = requests_per_minute(app, &plan) as i32;
    if !app.settings.rate_limits_enabled {
        return Ok(ApiUsage {
            requests_per_minute,
            cost_consumed_today: 0,
            throttle_status: None,
        });
    }
    let t = app
        .rate_limiter
        .bucket(tenant.id, shape(app, &plan), 0)
        .await;
    Ok(ApiUsage {
        requests_per_minute,
        cost_consumed_today: t.consumed_today.min(i64::MAX as u64) as i64,
        throttle_status: Some(ThrottleStatus {
            maximum_available: t.shape.size.min(i32::MAX as u32) as i32,
            currently_available: t.available.max(0.0).min(f64::from(i32::MAX)) as i32,
            restore_rate: (t.shape.restore_rate * 100.0).round() / 100.0,
        }),
    })
}

/// The cost of what was returned: one per field, lists by their length (the rule validation
/// applies to `first`, applied to the real items).
pub fn returned(value: &ConstValue) -> u64 {
    match value {
        ConstValue::Object(fields) => fields.values().map(|v| 1 + returned(v)).sum(),
        ConstValue::List(items) => items.iter().map(returned).sum(),
        _ => 0,
    }
}

/// The bucket of `plan`: `COST_LIMIT_<PLAN>` when set, else derived from its requests a
/// minute.
pub fn shape(app: &App, plan: &PlanRow) -> BucketShape {
    app.settings
        .cost_limit_overrides
        .iter()
        .find(|(slug, _)| *slug == plan.slug)
        .map(|(_, s)| *s)
        .unwrap_or_else(|| BucketShape::for_requests_per_minute(requests_per_minute(app, plan)))
}

/// The plan's window: `RATE_LIMIT_<PLAN>` when set, else the plan's own number.
pub fn requests_per_minute(app: &App, plan: &PlanRow) -> u32 {
    app.settings
        .rate_limit_overrides
        .iter()
        .find(|(slug, _)| *slug == plan.slug)
        .map(|(_, n)| *n)
        .unwrap_or(plan.rate_limit_per_minute.max(1) as u32)
}

/// The tenant whose plan limits this caller, with that plan; `None` for callers no plan
/// limits (platform admins, anonymous callers) or with limits switched off.
pub async fn limited(
    app: &App,
    caller: &Caller,
    tenant: Option<&TenantRow>,
) -> Result<Option<(TenantId, PlanRow)>, AppError> {
    if !app.settings.rate_limits_enabled {
        return Ok(None);
    }
    let (Some(p), Some(t)) = (caller.principal(), tenant) else {
        return Ok(None);
    };
    if p.role == Role::PlatformAdmin {
        return Ok(None);
    }
    Ok(Some((t.id, app.plans.by_id(&app.db, t.plan_id).await?)))
}

/// Takes `requested` points from the caller's bucket. `Err` when the operation may not run:
/// it costs more than the bucket holds at all (`BAD_USER_INPUT`: waiting cannot help) or than
/// it holds now (`RATE_LIMITED` with `retryAfter`).
pub async fn charge(
    app: &App,
    caller: &Caller,
    tenant: Option<&TenantRow>,
    requested: u64,
) -> Result<Cost, (Cost, AppError)> {
    let mut cost = Cost {
        requested,
        ..Cost::default()
    };
    let limited = limited(app, caller, tenant).await.map_err(|e| (cost, e))?;
    let Some((tenant_id, plan)) = limited else {
        return Ok(cost);
    };
    let shape = shape(app, &plan);
    if requested > u64::from(shape.size) {
        let msg = format!(
            "query costs {requested}; the {} plan's bucket holds at most {} points",
            plan.slug, shape.size
        );
        return Err((cost, AppError::bad_input("query", msg)));
    }
    let throttle = app.rate_limiter.bucket(tenant_id, shape, requested).await;
    cost.throttle = Some(throttle);
    if throttle.fallback && !throttle.allowed {
        // Redis is failing and the policy is `closed`: the window's answer, not a bucket's.
        return Err((
            cost,
            AppError::RateLimited {
                limit: u64::from(shape.size),
                retry_after_secs: crate::http::ratelimit::CLOSED_RETRY_SECS,
            },
        ));
    }
    if !throttle.allowed {
        metrics::counter!("tenantry_cost_throttled_total", "plan" => plan.slug.clone())
            .increment(1);
        return Err((
            cost,
            AppError::CostThrottled {
                requested,
                available: throttle.available.max(0.0).floor() as u64,
                size: u64::from(shape.size),
                rate: shape.restore_rate,
                retry_after_secs: throttle.retry_after_secs(requested),
            },
        ));
    }
    // Points taken can be given back; a fallback took none.
    cost.tenant = (!throttle.fallback).then_some(tenant_id);
    Ok(cost)
}

/// Records what the operation returned and gives back what it did not use.
pub async fn settle(app: &App, cost: &mut Cost, data: &ConstValue) {
    let actual = returned(data).min(cost.requested);
    cost.actual = Some(actual);
    let (Some(tenant_id), Some(throttle)) = (cost.tenant, cost.throttle) else {
        return;
    };
    metrics::counter!("tenantry_query_cost_total").increment(actual);
    let unused = cost.requested - actual;
    if unused > 0 {
        cost.throttle = Some(
            app.rate_limiter
                .refund(tenant_id, throttle.shape, unused, throttle.day)
                .await,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(json: serde_json::Value) -> ConstValue {
        ConstValue::from_json(json).unwrap()
    }

    #[test]
    fn what_was_returned_costs_one_per_field_and_lists_by_length() {
        assert_eq!(
            returned(&value(serde_json::json!({ "me": { "role": "X" } }))),
            2
        );
        let page = serde_json::json!({ "tenants": { "edges": [
            { "node": { "id": 1, "slug": "a" } },
            { "node": { "id": 2, "slug": "b" } },
        ] } });
        // tenants + edges + 2 × (node + id + slug)
        assert_eq!(returned(&value(page)), 8);
        assert_eq!(returned(&value(serde_json::json!({ "tenant": null }))), 1);
        assert_eq!(returned(&ConstValue::Null), 0);
    }
}
