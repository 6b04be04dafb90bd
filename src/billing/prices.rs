//! The catalogue as billing reads it: an active plan by slug, and a plan's price for a region
//! and billing cycle.

use crate::db::Conn;
use crate::error::{AppError, AppResult};
use crate::ids::PlanId;
use crate::plans;
use crate::plans::model::{BillingCycle, PlanPriceRow, PlanRow};

/// The plan a tenant may move to: unknown and archived plans are BAD_USER_INPUT.
pub(super) async fn active_plan(c: &mut Conn, slug: &str) -> AppResult<PlanRow> {
    plans::service::offered(c, "planSlug", slug).await
}

/// The Stripe price of `plan` for the tenant's region and `cycle`.
pub(super) async fn stripe_price(
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

pub(super) fn price(
    prices: &[PlanPriceRow],
    plan: PlanId,
    region: &str,
    cycle: BillingCycle,
) -> Option<PlanPriceRow> {
    prices
        .iter()
        .find(|p| p.plan_id == plan && p.region == region && p.billing_cycle == cycle)
        .cloned()
}
