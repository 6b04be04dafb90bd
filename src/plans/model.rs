//! Plan rows and plan-related enums.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use uuid::Uuid;

use crate::db::schema::{plan_prices, plan_quotas, plans};

#[derive(Queryable, Selectable, Debug, Clone)]
#[diesel(table_name = plans, check_for_backend(diesel::pg::Pg))]
pub struct PlanRow {
    pub id: Uuid,
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
    pub plan_id: Uuid,
    pub region: String,
    pub currency: String,
    pub billing_cycle: String,
    pub amount: i64,
    pub stripe_price_id: Option<String>,
}

#[derive(Queryable, Selectable, Debug, Clone)]
#[diesel(table_name = plan_quotas, check_for_backend(diesel::pg::Pg))]
pub struct PlanQuotaRow {
    pub plan_id: Uuid,
    pub resource: String,
    pub limit: i64,
    pub unit: String,
    pub reset_period: String,
    pub enforcement: String,
}

#[derive(async_graphql::Enum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum BillingCycle {
    Monthly,
    Yearly,
}

impl BillingCycle {
    pub fn as_str(self) -> &'static str {
        match self {
            BillingCycle::Monthly => "MONTHLY",
            BillingCycle::Yearly => "YEARLY",
        }
    }

    pub fn parse(s: &str) -> Self {
        if s == "YEARLY" {
            BillingCycle::Yearly
        } else {
            BillingCycle::Monthly
        }
    }
}
