//! GraphQL: the platform admins' `setPlanPrice` (issue 14). The rules live in
//! `billing::catalogue_prices` (a price is billing's as much as the catalogue's).

use async_graphql::{Context, InputObject, Object, Result};

use super::graphql::Plan;
use super::model::BillingCycle;
use crate::auth::Role;
use crate::billing::catalogue_prices::{self, PriceInput};
use crate::graphql::context::CtxExt;
use crate::graphql::guards::RequireRole;
use crate::graphql::scalars::BigInt;

/// A plan's price for one region and billing cycle.
#[derive(InputObject)]
pub struct SetPlanPriceInput {
    /// `US`, `CA`, `EU`, `GB` or `AU` (any case).
    pub region: String,
    pub billing_cycle: BillingCycle,
    /// A three-letter ISO 4217 code Stripe supports, any case; stored lower case.
    pub currency: String,
    /// In the currency's smallest unit: 0-99,999,999.
    pub amount: BigInt,
    /// With Stripe: also move the subscriptions of this plan, region and cycle to the new
    /// price now (prorated, each through a plan-change intent). Without it they keep their
    /// price until they change plan. LOCAL billing has nothing to move.
    #[graphql(default_with = "Some(false)")]
    pub apply_to_existing: Option<bool>,
}

#[derive(Default)]
pub struct PlanPriceMutation;

#[Object]
impl PlanPriceMutation {
    /// Sets a plan's price for a region and billing cycle (platform admins); archived plans
    /// may be priced. An unknown plan is NOT_FOUND; the same price again changes nothing.
    #[graphql(guard = "RequireRole(Role::PlatformAdmin)")]
    async fn set_plan_price(
        &self,
        ctx: &Context<'_>,
        plan_slug: String,
        input: SetPlanPriceInput,
    ) -> Result<Plan> {
        let price = PriceInput {
            region: input.region,
            cycle: input.billing_cycle,
            currency: input.currency,
            amount: input.amount.0,
            apply_to_existing: input.apply_to_existing.unwrap_or(false),
        };
        let actor = ctx.req().actor();
        let row = catalogue_prices::set_plan_price(ctx.app(), &actor, &plan_slug, price).await?;
        Ok(Plan::list(vec![row]).remove(0))
    }
}
