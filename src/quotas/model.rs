//! Quota rows, reset periods (UTC calendar boundaries) and enforcement.

use chrono::{DateTime, Datelike, Duration, TimeZone, Timelike, Utc};
use diesel::prelude::*;
use uuid::Uuid;

use crate::db::schema::quotas;
use crate::db::text_enum::text_enum;
use crate::ids::TenantId;

#[derive(Queryable, Selectable, Insertable, Debug, Clone)]
#[diesel(table_name = quotas, check_for_backend(diesel::pg::Pg))]
pub struct QuotaRow {
    pub tenant_id: TenantId,
    pub resource: String,
    pub limit: i64,
    pub used: i64,
    pub unit: String,
    pub reset_period: ResetPeriod,
    pub period_start: DateTime<Utc>,
    pub alert_thresholds: Vec<i32>,
    pub enforcement: QuotaEnforcement,
    /// Set for this tenant by a platform admin (`setQuota`): a change of its plan's quota
    /// leaves it alone (a plan switch clears it).
    pub overridden: bool,
}

text_enum!(
    #[derive(async_graphql::Enum, Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub enum ResetPeriod {
        Hourly = "HOURLY",
        Daily = "DAILY",
        Weekly = "WEEKLY",
        Monthly = "MONTHLY",
        Never = "NEVER",
    }
);

impl ResetPeriod {
    /// Start of the period containing `at`, on UTC calendar boundaries (weeks start Monday).
    /// `NEVER` has one period, starting at the epoch.
    pub fn period_start(self, at: DateTime<Utc>) -> DateTime<Utc> {
        let day = Utc
            .with_ymd_and_hms(at.year(), at.month(), at.day(), 0, 0, 0)
            .unwrap();
        match self {
            ResetPeriod::Hourly => day + Duration::hours(at.hour() as i64),
            ResetPeriod::Daily => day,
            ResetPeriod::Weekly => day - Duration::days(at.weekday().num_days_from_monday() as i64),
            ResetPeriod::Monthly => Utc
                .with_ymd_and_hms(at.year(), at.month(), 1, 0, 0, 0)
                .unwrap(),
            ResetPeriod::Never => DateTime::<Utc>::UNIX_EPOCH,
        }
    }
}

text_enum!(
    #[derive(async_graphql::Enum, Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub enum QuotaEnforcement {
        Hard = "HARD",
        Soft = "SOFT",
    }
);

pub const DEFAULT_ALERT_THRESHOLDS: [i32; 4] = [75, 90, 95, 100];

/// Quotas every tenant gets when its plan names no limit for them (SPEC §4).
pub const DEFAULT_QUOTAS: &[(&str, i64, &str, ResetPeriod)] = &[
    ("users", 100, "users", ResetPeriod::Never),
    (
        "storage",
        10 * 1024 * 1024 * 1024,
        "bytes",
        ResetPeriod::Never,
    ),
    ("api_calls", 10_000, "calls", ResetPeriod::Monthly),
    (
        "bandwidth",
        100 * 1024 * 1024 * 1024,
        "bytes",
        ResetPeriod::Monthly,
    ),
];

impl QuotaRow {
    /// The row as of `now`: when its period has ended, the new period has used nothing yet
    /// (the next increment or the reset job writes that down).
    pub fn current(mut self, now: DateTime<Utc>) -> QuotaRow {
        let start = self.reset_period.period_start(now);
        if self.period_start < start {
            self.used = 0;
            self.period_start = start;
        }
        self
    }

    pub fn remaining(&self) -> i64 {
        (self.limit - self.used).max(0)
    }
}

/// A quota alert as stored: one threshold crossed in one period.
#[derive(Queryable, Selectable, Debug, Clone)]
#[diesel(table_name = crate::db::schema::quota_alerts, check_for_backend(diesel::pg::Pg))]
pub struct AlertRow {
    pub tenant_id: TenantId,
    pub id: Uuid,
    pub resource: String,
    pub threshold: i32,
    pub used: i64,
    pub limit: i64,
    pub period_start: chrono::DateTime<chrono::Utc>,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

/// Usage summed over one period of a series.
#[derive(diesel::QueryableByName, Debug, Clone)]
pub struct UsageBucket {
    #[diesel(sql_type = diesel::sql_types::Timestamptz)]
    pub period_start: chrono::DateTime<chrono::Utc>,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    pub amount: i64,
}

// The period of a usage series' points (not a doc comment: it would reach schema.graphql).
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_start_on_utc_calendar_boundaries() {
        let at = Utc.with_ymd_and_hms(2026, 11, 25, 13, 47, 5).unwrap(); // a Wednesday
        let start = |p: ResetPeriod| p.period_start(at).to_rfc3339();
        assert_eq!(start(ResetPeriod::Hourly), "2026-11-25T13:00:00+00:00");
        assert_eq!(start(ResetPeriod::Daily), "2026-11-25T00:00:00+00:00");
        assert_eq!(start(ResetPeriod::Weekly), "2026-11-23T00:00:00+00:00");
        assert_eq!(start(ResetPeriod::Monthly), "2026-11-01T00:00:00+00:00");
        assert_eq!(start(ResetPeriod::Never), "1970-01-01T00:00:00+00:00");
    }
}
