//! GraphQL shape of a quota (SPEC §5 `Quota`).

use async_graphql::Object;
use chrono::{DateTime, Utc};

pub use super::model::Granularity;
use super::model::{QuotaEnforcement, QuotaRow, ResetPeriod, UsageBucket};
use crate::graphql::scalars::BigInt;
use crate::ids::TenantId;

/// A quota as of now (a finished period shows as a new one with nothing used).
pub struct Quota(pub QuotaRow);

impl Quota {
    pub fn now(row: QuotaRow) -> Quota {
        Quota(row.current(Utc::now()))
    }
}

#[Object]
impl Quota {
    async fn resource(&self) -> &str {
        &self.0.resource
    }
    async fn limit(&self) -> BigInt {
        BigInt(self.0.limit)
    }
    async fn used(&self) -> BigInt {
        BigInt(self.0.used)
    }
    async fn remaining(&self) -> BigInt {
        BigInt((self.0.limit - self.0.used).max(0))
    }
    async fn unit(&self) -> &str {
        &self.0.unit
    }
    async fn reset_period(&self) -> ResetPeriod {
        self.0.reset_period
    }
    async fn period_start(&self) -> DateTime<Utc> {
        self.0.period_start
    }
    /// `used / limit` in percent (100 when the limit is 0 and anything is used).
    async fn percent_used(&self) -> f64 {
        percent(self.0.used, self.0.limit)
    }
    async fn alert_thresholds(&self) -> &[i32] {
        &self.0.alert_thresholds
    }
    async fn enforcement(&self) -> QuotaEnforcement {
        self.0.enforcement
    }
    /// Set for this tenant by a platform admin (`setQuota`): changes to its plan's quota
    /// (`setPlanQuota`) leave it as it is. A plan switch gives the new plan's quota again.
    async fn overridden(&self) -> bool {
        self.0.overridden
    }
}

#[derive(async_graphql::SimpleObject)]
pub struct UsagePoint {
    pub period_start: DateTime<Utc>,
    pub amount: BigInt,
}

impl From<UsageBucket> for UsagePoint {
    fn from(b: UsageBucket) -> Self {
        UsagePoint {
            period_start: b.period_start,
            amount: BigInt(b.amount),
        }
    }
}

use async_graphql::{Context, InputObject, Result, SimpleObject, ID};

use super::metering::UsageOutcome;
use super::model::AlertRow;
use super::service::{self, SetQuota};
use crate::auth::Role;
use crate::error::AppError;
use crate::graphql::context::CtxExt;
use crate::graphql::guards::RequireRole;
use crate::graphql::target_tenant;

/// The answer of `checkQuota`: would this amount be admitted now?
#[derive(SimpleObject)]
pub struct QuotaCheck {
    pub resource: String,
    pub allowed: bool,
    pub used: BigInt,
    pub limit: BigInt,
    pub remaining: BigInt,
    pub enforcement: QuotaEnforcement,
}

/// The answer of `recordUsage` (a refused HARD increment is the error QUOTA_EXCEEDED).
#[derive(SimpleObject)]
pub struct UsageResult {
    pub resource: String,
    pub allowed: bool,
    pub used: BigInt,
    pub limit: BigInt,
    pub remaining: BigInt,
    /// Usage above the limit of a SOFT quota, billed as overage.
    pub overage: BigInt,
    /// True when the idempotency key was seen before: this is the first answer again.
    pub duplicate: bool,
}

impl From<UsageOutcome> for UsageResult {
    fn from(o: UsageOutcome) -> Self {
        UsageResult {
            resource: o.resource,
            allowed: o.allowed,
            used: BigInt(o.used),
            limit: BigInt(o.limit),
            remaining: BigInt(o.remaining),
            overage: BigInt(o.overage),
            duplicate: o.duplicate,
        }
    }
}

#[derive(SimpleObject, Clone)]
pub struct QuotaAlert {
    pub id: ID,
    pub tenant_id: ID,
    pub resource: String,
    pub threshold: i32,
    pub used: BigInt,
    pub limit: BigInt,
    pub percent_used: f64,
    pub period_start: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
}

fn percent(used: i64, limit: i64) -> f64 {
    if limit == 0 {
        if used > 0 {
            100.0
        } else {
            0.0
        }
    } else {
        used as f64 * 100.0 / limit as f64
    }
}

impl From<AlertRow> for QuotaAlert {
    fn from(a: AlertRow) -> Self {
        QuotaAlert {
            id: ID(a.id.to_string()),
            tenant_id: ID(a.tenant_id.to_string()),
            resource: a.resource,
            threshold: a.threshold,
            used: BigInt(a.used),
            limit: BigInt(a.limit),
            percent_used: percent(a.used, a.limit),
            period_start: a.period_start,
            created_at: a.created_at,
        }
    }
}

impl From<crate::bus::AlertEvent> for QuotaAlert {
    fn from(a: crate::bus::AlertEvent) -> Self {
        QuotaAlert::from(AlertRow {
            tenant_id: a.tenant_id,
            id: a.id,
            resource: a.resource,
            threshold: a.threshold,
            used: a.used,
            limit: a.limit,
            period_start: a.period_start,
            created_at: a.created_at,
        })
    }
}

#[derive(InputObject)]
pub struct SetQuotaInput {
    pub resource: String,
    pub limit: BigInt,
    pub unit: Option<String>,
    pub reset_period: Option<ResetPeriod>,
    /// Percent values, e.g. [75, 90, 95, 100].
    pub alert_thresholds: Option<Vec<i32>>,
    pub enforcement: Option<QuotaEnforcement>,
}

fn own_tenant(ctx: &Context<'_>) -> Result<TenantId, AppError> {
    target_tenant(ctx, None)
}

#[derive(Default)]
pub struct QuotaQuery;

#[Object]
impl QuotaQuery {
    /// Would `amount` more of `resource` be admitted for the caller's tenant now? Records nothing.
    #[graphql(guard = "RequireRole(Role::TenantMember)")]
    async fn check_quota(
        &self,
        ctx: &Context<'_>,
        resource: String,
        #[graphql(default_with = "BigInt(1)")] amount: BigInt,
    ) -> Result<QuotaCheck> {
        let tenant_id = own_tenant(ctx)?;
        let c = service::check(
            ctx.app(),
            &ctx.req().actor(),
            tenant_id,
            &resource,
            amount.0,
        )
        .await?;
        let q = c.quota;
        Ok(QuotaCheck {
            allowed: c.allowed,
            used: BigInt(q.used),
            limit: BigInt(q.limit),
            remaining: BigInt(q.remaining()),
            enforcement: q.enforcement,
            resource: q.resource,
        })
    }
}

#[derive(Default)]
pub struct QuotaMutation;

#[Object]
impl QuotaMutation {
    /// Records usage for the caller's tenant. Committed before the answer; a repeated
    /// `idempotencyKey` (per tenant, 24 h) returns the first answer and counts once; a HARD
    /// quota refuses with QUOTA_EXCEEDED and records nothing. An unknown resource (see
    /// `resourceTypes`) is BAD_USER_INPUT naming the known ones.
    #[graphql(guard = "RequireRole(Role::TenantMember)")]
    async fn record_usage(
        &self,
        ctx: &Context<'_>,
        resource: String,
        amount: BigInt,
        idempotency_key: Option<String>,
    ) -> Result<UsageResult> {
        let tenant_id = own_tenant(ctx)?;
        let out = service::record_usage(
            ctx.app(),
            &ctx.req().actor(),
            tenant_id,
            resource,
            amount.0,
            idempotency_key,
        )
        .await?;
        Ok(out.into())
    }

    /// Creates or changes a tenant's quota (platform admins).
    #[graphql(guard = "RequireRole(Role::PlatformAdmin)")]
    async fn set_quota(
        &self,
        ctx: &Context<'_>,
        tenant_id: ID,
        input: SetQuotaInput,
    ) -> Result<Quota> {
        let tenant_id = target_tenant(ctx, Some(&tenant_id))?;
        let input = SetQuota {
            resource: input.resource,
            limit: input.limit.0,
            unit: input.unit,
            reset_period: input.reset_period,
            alert_thresholds: input.alert_thresholds,
            enforcement: input.enforcement,
        };
        Ok(Quota::now(
            service::set_quota(ctx.app(), &ctx.req().actor(), tenant_id, input).await?,
        ))
    }
}
