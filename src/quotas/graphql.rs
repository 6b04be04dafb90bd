//! GraphQL shape of a quota (SPEC §5 `Quota`).

use async_graphql::Object;
use chrono::{DateTime, Utc};

use super::model::{QuotaEnforcement, QuotaRow, ResetPeriod};
use crate::graphql::scalars::BigInt;

pub struct Quota(pub QuotaRow);

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
        ResetPeriod::parse(&self.0.reset_period)
    }
    async fn period_start(&self) -> DateTime<Utc> {
        self.0.period_start
    }
    /// `used / limit` in percent (100 when the limit is 0 and anything is used).
    async fn percent_used(&self) -> f64 {
        match (self.0.limit, self.0.used) {
            (0, 0) => 0.0,
            (0, _) => 100.0,
            (l, u) => (u as f64) * 100.0 / (l as f64),
        }
    }
    async fn alert_thresholds(&self) -> &[i32] {
        &self.0.alert_thresholds
    }
    async fn enforcement(&self) -> QuotaEnforcement {
        QuotaEnforcement::parse(&self.0.enforcement)
    }
}

#[derive(async_graphql::Enum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Granularity {
    Hour,
    Day,
    Month,
}

impl Granularity {
    pub fn sql_unit(self) -> &'static str {
        match self {
            Granularity::Hour => "hour",
            Granularity::Day => "day",
            Granularity::Month => "month",
        }
    }

    /// Longest range a series may span, so one query cannot ask for millions of points.
    pub fn max_span(self) -> chrono::Duration {
        match self {
            Granularity::Hour => chrono::Duration::days(93),
            Granularity::Day => chrono::Duration::days(3 * 366),
            Granularity::Month => chrono::Duration::days(20 * 366),
        }
    }
}

#[derive(async_graphql::SimpleObject)]
pub struct UsagePoint {
    pub period_start: DateTime<Utc>,
    pub amount: BigInt,
}
