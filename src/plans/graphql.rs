//! GraphQL: `plans`, `plan(slug)` and the `Plan` type with prices, features and quotas; the
//! platform admins' `createPlan`, `updatePlan`, `archivePlan`, `setPlanFeature` and
//! `setPlanQuota` (with `planRollout`, the progress of a quota change through the tenants).

use std::sync::Arc;

use async_graphql::{Context, InputObject, Object, Result, SimpleObject, ID};

use super::loader::{ActivePlanBySlug, FeaturesOfPlan, PricesOfPlan, QuotasOfPlan};
use super::model::{BillingCycle, PlanPriceRow, PlanQuotaRow, PlanRow};
use super::rollout::{self, RolloutRow, RolloutStatus};
use super::service::{self, PlanInput};
use crate::auth::Role;
use crate::graphql::context::CtxExt;
use crate::graphql::guards::RequireRole;
use crate::graphql::loaders::SiblingBatch;
use crate::graphql::scalars::BigInt;
use crate::ids::PlanId;
use crate::quotas::graphql::SetQuotaInput;
use crate::quotas::model::{QuotaEnforcement, ResetPeriod};
use crate::quotas::service::SetQuota;

/// The plans of one list: their prices, features and quotas load together.
pub struct PlanPage {
    prices: SiblingBatch<PricesOfPlan, Vec<PlanPriceRow>>,
    features: SiblingBatch<FeaturesOfPlan, Vec<String>>,
    quotas: SiblingBatch<QuotasOfPlan, Vec<PlanQuotaRow>>,
}

impl PlanPage {
    pub fn new(ids: &[PlanId]) -> Arc<PlanPage> {
        Arc::new(PlanPage {
            prices: SiblingBatch::new(ids.iter().map(|id| PricesOfPlan(*id)).collect()),
            features: SiblingBatch::new(ids.iter().map(|id| FeaturesOfPlan(*id)).collect()),
            quotas: SiblingBatch::new(ids.iter().map(|id| QuotasOfPlan(*id)).collect()),
        })
    }
}

pub struct Plan {
    row: PlanRow,
    page: Arc<PlanPage>,
}

impl Plan {
    pub fn in_page(row: PlanRow, page: Arc<PlanPage>) -> Plan {
        Plan { row, page }
    }

    pub fn list(rows: Vec<PlanRow>) -> Vec<Plan> {
        let page = PlanPage::new(&rows.iter().map(|p| p.id).collect::<Vec<_>>());
        rows.into_iter()
            .map(|row| Plan {
                row,
                page: page.clone(),
            })
            .collect()
    }
}

#[derive(SimpleObject)]
pub struct PlanPrice {
    pub region: String,
    /// ISO currency code, lower case as Stripe writes it.
    pub currency: String,
    pub billing_cycle: BillingCycle,
    /// In the smallest currency unit.
    pub amount: BigInt,
    pub stripe_price_id: Option<String>,
}

pub struct PlanQuota(PlanQuotaRow);

#[Object]
impl PlanQuota {
    async fn resource(&self) -> &str {
        &self.0.resource
    }
    async fn limit(&self) -> BigInt {
        BigInt(self.0.limit)
    }
    async fn unit(&self) -> &str {
        &self.0.unit
    }
    async fn reset_period(&self) -> ResetPeriod {
        self.0.reset_period
    }
    async fn enforcement(&self) -> QuotaEnforcement {
        self.0.enforcement
    }
}

#[Object]
impl Plan {
    async fn id(&self) -> ID {
        ID(self.row.id.to_string())
    }
    async fn slug(&self) -> &str {
        &self.row.slug
    }
    async fn name(&self) -> &str {
        &self.row.name
    }
    async fn description(&self) -> &str {
        &self.row.description
    }
    async fn trial_days(&self) -> i32 {
        self.row.trial_days
    }
    /// Requests per minute allowed to each tenant on this plan.
    async fn rate_limit_per_minute(&self) -> i32 {
        self.row.rate_limit_per_minute
    }
    /// How far usage of a SOFT quota may go past its limit in one period, in percent of the
    /// limit (100 = up to twice the limit); beyond it increments answer QUOTA_EXCEEDED.
    async fn overage_limit_percent(&self) -> i32 {
        self.row.overage_limit_percent
    }
    /// Archived plans keep their tenants and take no new ones; only platform admins see them.
    async fn archived(&self) -> bool {
        !self.row.is_active
    }
    async fn prices(&self, ctx: &Context<'_>) -> Result<Vec<PlanPrice>> {
        let rows = self
            .page
            .prices
            .get(ctx.loaders(), &PricesOfPlan(self.row.id))
            .await?
            .unwrap_or_default();
        Ok(rows
            .into_iter()
            .map(|p| PlanPrice {
                region: p.region,
                currency: p.currency,
                billing_cycle: p.billing_cycle,
                amount: BigInt(p.amount),
                stripe_price_id: p.stripe_price_id,
            })
            .collect())
    }
    /// Keys of the features this plan includes.
    async fn features(&self, ctx: &Context<'_>) -> Result<Vec<String>> {
        Ok(self
            .page
            .features
            .get(ctx.loaders(), &FeaturesOfPlan(self.row.id))
            .await?
            .unwrap_or_default())
    }
    async fn quotas(&self, ctx: &Context<'_>) -> Result<Vec<PlanQuota>> {
        let rows = self
            .page
            .quotas
            .get(ctx.loaders(), &QuotasOfPlan(self.row.id))
            .await?
            .unwrap_or_default();
        Ok(rows.into_iter().map(PlanQuota).collect())
    }
}

#[derive(Default)]
pub struct PlanQuery;

#[Object]
impl PlanQuery {
    /// The active plans, cheapest first. Public: no authentication needed. Platform admins
    /// may ask for the archived ones too (`includeArchived`); anyone else gets the active ones.
    async fn plans(
        &self,
        ctx: &Context<'_>,
        #[graphql(default)] include_archived: bool,
    ) -> Result<Vec<Plan>> {
        let rows = service::list(&ctx.req().db, &ctx.req().actor(), include_archived).await?;
        Ok(Plan::list(rows))
    }

    /// The plan with this slug; an archived plan is null but to platform admins.
    async fn plan(&self, ctx: &Context<'_>, slug: String) -> Result<Option<Plan>> {
        let row = service::find(&ctx.req().db, &ctx.req().actor(), &slug).await?;
        Ok(row.map(|p| Plan::list(vec![p]).remove(0)))
    }

    /// A plan quota change's progress through the plan's tenants (platform admins).
    #[graphql(guard = "RequireRole(Role::PlatformAdmin)")]
    async fn plan_rollout(&self, ctx: &Context<'_>, id: ID) -> Result<Option<PlanRollout>> {
        let Ok(id) = uuid::Uuid::parse_str(&id) else {
            return Err(crate::error::AppError::bad_input("id", "not a rollout id").into());
        };
        Ok(rollout::find(ctx.app(), id).await?.map(PlanRollout))
    }

    /// Federation: a `Plan` reference (`@key(fields: "slug")`); the catalogue is public, as
    /// in `plan(slug)`. All of a request's references share one read of the catalogue.
    #[graphql(entity)]
    async fn find_plan_by_slug(&self, ctx: &Context<'_>, slug: String) -> Result<Option<Plan>> {
        let row = ctx.loaders().load_one(ActivePlanBySlug(slug)).await?;
        Ok(row.map(|p| Plan::list(vec![p]).remove(0)))
    }
}

#[derive(InputObject)]
pub struct CreatePlanInput {
    /// `[a-z][a-z0-9-]{1,49}`, not ending with `-`; unique, never changes.
    pub slug: String,
    /// 1-100 characters.
    pub name: String,
    #[graphql(default)]
    pub description: String,
    /// 0-365.
    #[graphql(default)]
    pub trial_days: i32,
    /// 1-1,000,000.
    pub rate_limit_per_minute: i32,
}

/// The fields of a plan `updatePlan` changes; absent ones keep their value.
#[derive(InputObject)]
pub struct UpdatePlanInput {
    pub name: Option<String>,
    pub description: Option<String>,
    pub trial_days: Option<i32>,
    pub rate_limit_per_minute: Option<i32>,
}

#[derive(Default)]
pub struct PlanMutation;

#[Object]
impl PlanMutation {
    /// Adds a plan (platform admins), with no prices, features or quotas yet; a slug that
    /// exists is CONFLICT.
    #[graphql(guard = "RequireRole(Role::PlatformAdmin)")]
    async fn create_plan(&self, ctx: &Context<'_>, input: CreatePlanInput) -> Result<Plan> {
        let fields = PlanInput {
            name: Some(input.name),
            description: Some(input.description),
            trial_days: Some(input.trial_days),
            rate_limit_per_minute: Some(input.rate_limit_per_minute),
        };
        let row = service::create(ctx.app(), &ctx.req().actor(), input.slug, fields).await?;
        Ok(Plan::list(vec![row]).remove(0))
    }

    /// Changes a plan (platform admins); the slug never changes. An unknown slug is NOT_FOUND.
    #[graphql(guard = "RequireRole(Role::PlatformAdmin)")]
    async fn update_plan(
        &self,
        ctx: &Context<'_>,
        slug: String,
        input: UpdatePlanInput,
    ) -> Result<Plan> {
        let fields = PlanInput {
            name: input.name,
            description: input.description,
            trial_days: input.trial_days,
            rate_limit_per_minute: input.rate_limit_per_minute,
        };
        let row = service::update(ctx.app(), &ctx.req().actor(), &slug, fields).await?;
        Ok(Plan::list(vec![row]).remove(0))
    }

    /// Archives a plan (platform admins): its tenants keep it, new tenants and plan changes
    /// onto it are BAD_USER_INPUT. An unknown slug is NOT_FOUND.
    #[graphql(guard = "RequireRole(Role::PlatformAdmin)")]
    async fn archive_plan(&self, ctx: &Context<'_>, slug: String) -> Result<Plan> {
        let row = service::archive(ctx.app(), &ctx.req().actor(), &slug).await?;
        Ok(Plan::list(vec![row]).remove(0))
    }

    /// Includes a defined feature in the plan or leaves it out (platform admins). The plan's
    /// tenants follow at once; their own overrides are kept. An unknown plan is NOT_FOUND, an
    /// unknown feature BAD_USER_INPUT.
    #[graphql(guard = "RequireRole(Role::PlatformAdmin)")]
    async fn set_plan_feature(
        &self,
        ctx: &Context<'_>,
        plan_slug: String,
        key: String,
        enabled: bool,
    ) -> Result<Plan> {
        let row = crate::features::catalogue::set_plan_feature(
            ctx.app(),
            &ctx.req().actor(),
            &plan_slug,
            &key,
            enabled,
        )
        .await?;
        Ok(Plan::list(vec![row]).remove(0))
    }

    /// Sets the plan's quota on a known resource type (platform admins) and takes it to every
    /// tenant on the plan in batches; quotas set for one tenant (`Quota.overridden`) are kept.
    /// Answers when the rollout is done, or after 5 s with it RUNNING (`planRollout(id)`).
    /// `alertThresholds` belong to tenants' quotas and are BAD_USER_INPUT here.
    #[graphql(guard = "RequireRole(Role::PlatformAdmin)")]
    async fn set_plan_quota(
        &self,
        ctx: &Context<'_>,
        plan_slug: String,
        input: SetQuotaInput,
    ) -> Result<PlanQuotaChange> {
        let input = SetQuota {
            resource: input.resource,
            limit: input.limit.0,
            unit: input.unit,
            reset_period: input.reset_period,
            alert_thresholds: input.alert_thresholds,
            enforcement: input.enforcement,
        };
        let app = ctx.data_unchecked::<Arc<crate::app::App>>();
        let change = rollout::set_quota(app, &ctx.req().actor(), &plan_slug, input).await?;
        Ok(PlanQuotaChange {
            plan: Plan::list(vec![change.plan]).remove(0),
            quota: PlanQuota(change.quota),
            rollout: change.rollout.map(PlanRollout),
        })
    }
}

/// What `setPlanQuota` did.
#[derive(SimpleObject)]
pub struct PlanQuotaChange {
    pub plan: Plan,
    pub quota: PlanQuota,
    /// The change's way through the plan's tenants; null when the quota already had these
    /// values (nothing was written).
    pub rollout: Option<PlanRollout>,
}

/// A plan quota change reaching the plan's tenants, batch by batch.
pub struct PlanRollout(RolloutRow);

#[Object]
impl PlanRollout {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    async fn plan(&self, ctx: &Context<'_>) -> Result<Plan> {
        let row = ctx.app().plans.by_id(&ctx.req().db, self.0.plan_id).await?;
        Ok(Plan::list(vec![row]).remove(0))
    }
    async fn resource(&self) -> &str {
        &self.0.resource
    }
    async fn status(&self) -> RolloutStatus {
        self.0.status
    }
    /// Tenants on the plan whose quota follows it, counted when the change was made.
    async fn tenants_affected(&self) -> i32 {
        self.0.tenants_affected
    }
    /// Quota rows written so far (a tenant already at the new values is not rewritten).
    async fn tenants_updated(&self) -> i32 {
        self.0.tenants_updated
    }
    async fn created_at(&self) -> chrono::DateTime<chrono::Utc> {
        self.0.created_at
    }
    async fn finished_at(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        self.0.finished_at
    }
}
