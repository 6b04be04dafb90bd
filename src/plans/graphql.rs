//! GraphQL: `plans`, `plan(slug)` and the `Plan` type with prices, features and quotas; the
//! platform admins' `createPlan`, `updatePlan` and `archivePlan`.

use std::sync::Arc;

use async_graphql::{Context, InputObject, Object, Result, SimpleObject, ID};

use super::loader::{ActivePlanBySlug, FeaturesOfPlan, PricesOfPlan, QuotasOfPlan};
use super::model::{BillingCycle, PlanPriceRow, PlanQuotaRow, PlanRow};
use super::service::{self, PlanInput};
use crate::auth::Role;
use crate::graphql::context::CtxExt;
use crate::graphql::guards::RequireRole;
use crate::graphql::loaders::SiblingBatch;
use crate::graphql::scalars::BigInt;
use crate::ids::PlanId;
use crate::quotas::model::{QuotaEnforcement, ResetPeriod};

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
}
