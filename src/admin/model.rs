//! The rows of the platform figures.

use diesel::sql_types::{BigInt, Text};

use crate::plans::model::BillingCycle;

/// A count per key (a status, a plan slug).
#[derive(diesel::QueryableByName, Debug, Clone, PartialEq, Eq)]
pub struct Counted {
    #[diesel(sql_type = Text)]
    pub key: String,
    #[diesel(sql_type = BigInt)]
    pub n: i64,
}

/// `n` subscriptions billed `amount` (minor units) in `currency` every `billing_cycle`.
#[derive(diesel::QueryableByName, Debug, Clone, PartialEq, Eq)]
pub struct PricedSubscriptions {
    #[diesel(sql_type = Text)]
    pub currency: String,
    #[diesel(sql_type = Text)]
    pub billing_cycle: BillingCycle,
    #[diesel(sql_type = BigInt)]
    pub amount: i64,
    #[diesel(sql_type = BigInt)]
    pub n: i64,
}
