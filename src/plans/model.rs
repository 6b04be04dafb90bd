//! Plan rows and plan-related enums.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use uuid::Uuid;

use crate::db::schema::{plan_prices, plan_quotas, plans};
use crate::db::text_enum::text_enum;
use crate::ids::PlanId;
use crate::quotas::model::{QuotaEnforcement, ResetPeriod};

#[derive(Queryable, Selectable, Debug, Clone)]
#[diesel(table_name = plans, check_for_backend(diesel::pg::Pg))]
pub struct PlanRow {
    pub id: PlanId,
    pub slug: String,
    pub name: String,
    pub description: String,
    pub sort_order: i32,
    pub trial_days: i32,
    pub rate_limit_per_minute: i32,
    pub is_active: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Ceiling of SOFT-quota overage in one period, in percent of the limit.
    pub overage_limit_percent: i32,
}

#[derive(Queryable, Selectable, Debug, Clone)]
#[diesel(table_name = plan_prices, check_for_backend(diesel::pg::Pg))]
pub struct PlanPriceRow {
    pub id: Uuid,
    pub plan_id: PlanId,
    pub region: String,
    pub currency: String,
    pub billing_cycle: BillingCycle,
    pub amount: i64,
    pub stripe_price_id: Option<String>,
}

#[derive(Queryable, Selectable, Debug, Clone)]
#[diesel(table_name = plan_quotas, check_for_backend(diesel::pg::Pg))]
pub struct PlanQuotaRow {
    pub plan_id: PlanId,
    pub resource: String,
    pub limit: i64,
    pub unit: String,
    pub reset_period: ResetPeriod,
    pub enforcement: QuotaEnforcement,
}

// A price's billing cycle (`plan_prices.billing_cycle`, also subscriptions and intents). No doc
// comment: it would become the GraphQL description and change schema.graphql.
text_enum!(
    #[derive(async_graphql::Enum, Debug, Clone, Copy, PartialEq, Eq)]
    pub enum BillingCycle {
        Monthly = "MONTHLY",
        Yearly = "YEARLY",
    }
);

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn billing_cycle_round_trips_and_refuses_unknown_text() {
        crate::db::text_enum::testing::assert_round_trip!(BillingCycle, "WEEKLY");
    }
}
