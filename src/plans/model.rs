//! Plan rows and plan-related enums.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use uuid::Uuid;

use crate::db::schema::{plan_prices, plan_quotas, plan_stripe_prices, plans};
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

/// A new plan's row (`createPlan`): no prices, features or quotas of its own yet.
#[derive(Insertable, Debug, Clone)]
#[diesel(table_name = plans, check_for_backend(diesel::pg::Pg))]
pub struct NewPlan {
    pub id: PlanId,
    pub slug: String,
    pub name: String,
    pub description: String,
    pub sort_order: i32,
    pub trial_days: i32,
    pub rate_limit_per_minute: i32,
}

/// The fields `updatePlan` may change; `None` keeps the stored value.
#[derive(AsChangeset, Debug, Clone, Default)]
#[diesel(table_name = plans, check_for_backend(diesel::pg::Pg))]
pub struct PlanChanges {
    pub name: Option<String>,
    pub description: Option<String>,
    pub trial_days: Option<i32>,
    pub rate_limit_per_minute: Option<i32>,
    pub is_active: Option<bool>,
    pub updated_at: Option<DateTime<Utc>>,
}

/// Longest plan slug (the column's CHECK allows 50).
pub const MAX_SLUG: usize = 50;
/// Longest plan name (the column's CHECK).
pub const MAX_NAME: usize = 100;
/// Longest free trial a plan may offer, in days.
pub const MAX_TRIAL_DAYS: i32 = 365;
/// Highest rate limit a plan may set, in requests per minute.
pub const MAX_RATE_LIMIT: i32 = 1_000_000;

/// Is `slug` a well-formed plan slug, `[a-z][a-z0-9-]{1,49}` not ending with `-` (like tenant
/// slugs, within the column's CHECK `^[a-z0-9-]{1,50}$`)?
pub fn valid_slug(slug: &str) -> bool {
    (2..=MAX_SLUG).contains(&slug.len())
        && slug.starts_with(|c: char| c.is_ascii_lowercase())
        && !slug.ends_with('-')
        && slug
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
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

/// A plan's price for one region and cycle as `setPlanPrice` writes it (an upsert on the
/// (plan, region, cycle) key).
#[derive(Insertable, Debug, Clone)]
#[diesel(table_name = plan_prices, check_for_backend(diesel::pg::Pg))]
pub struct NewPlanPrice {
    pub id: Uuid,
    pub plan_id: PlanId,
    pub region: String,
    pub currency: String,
    pub billing_cycle: BillingCycle,
    pub amount: i64,
    pub stripe_price_id: Option<String>,
}

/// One Stripe Price a plan has had (`plan_stripe_prices`): the current one, or one replaced
/// since (`archived_at`) that subscriptions may still be on.
#[derive(Queryable, Selectable, Insertable, Debug, Clone)]
#[diesel(table_name = plan_stripe_prices, check_for_backend(diesel::pg::Pg))]
pub struct StripePriceRow {
    pub stripe_price_id: String,
    pub plan_id: PlanId,
    pub region: String,
    pub billing_cycle: BillingCycle,
    pub currency: String,
    pub amount: i64,
    pub archived_at: Option<DateTime<Utc>>,
}

/// The plan and cycle a Stripe price stands for (the webhook's price → plan mapping).
#[derive(Debug, Clone, Copy)]
pub struct PriceOwner {
    pub plan_id: PlanId,
    pub billing_cycle: BillingCycle,
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

    #[test]
    fn plan_slugs_start_with_a_letter_and_fit_the_column() {
        for ok in ["free", "pro-2", "ab", &"a".repeat(50)] {
            assert!(valid_slug(ok), "{ok}");
        }
        for bad in [
            "",
            "a",
            "2pro",
            "-pro",
            "Pro",
            "pro_2",
            "pro 2",
            "pro-",
            &"a".repeat(51),
        ] {
            assert!(!valid_slug(bad), "{bad}");
        }
    }

    #[tokio::test]
    async fn billing_cycle_round_trips_and_refuses_unknown_text() {
        crate::db::text_enum::testing::assert_round_trip!(BillingCycle, "WEEKLY");
    }
}
