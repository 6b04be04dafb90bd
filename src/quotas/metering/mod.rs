//! Usage metering — the hot path (SPEC §4 "Quotas"). Callers hand increments to a small set
//! of writer tasks and wait; each writer takes whatever has queued up (up to `MAX_BATCH`) and
//! commits it in ONE transaction (group commit), then answers every caller. So:
//! - an answer is sent only after PostgreSQL committed the increment (no ack is lost by a
//!   crash; a caller that disconnects does not cancel the write: it lives in the writer task);
//! - a HARD quota is checked and incremented by one conditional `UPDATE` holding the row lock,
//!   so no interleaving can admit more than the limit;
//! - a SOFT quota is capped the same way, at the limit plus the plan's overage ceiling
//!   (`plans.overage_limit_percent`), or at the limit for callers not allowed into overage;
//! - idempotency keys are claimed by a unique index; a repeat returns the stored first answer,
//!   the same key on another resource is refused (BAD_USER_INPUT);
//! - threshold crossings insert into `quota_alerts` under a unique key, so each fires once per
//!   (tenant, resource, period, threshold), and are published after the commit.
//!
//! Increments of one (tenant, resource) always go to the same writer, so writers never wait on
//! each other's row locks.
//!
//! Files: `writer` (the writer tasks and the batch transaction), `batch` (the set-based path:
//! all increments of a batch, across tenants, in one statement per table), `one` (the
//! one-by-one path the writer falls back to when a batch fails). The SQL shared by both
//! paths (the quota cap, the hourly roll-up) lives here.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text, Timestamptz, Uuid as SqlUuid};
use diesel_async::RunQueryDsl;
use serde::Serialize;

use crate::bus::AlertEvent;
use crate::db::Conn;
use crate::error::{AppError, AppResult};
use crate::ids::TenantId;
use crate::quotas::model::QuotaEnforcement;

pub const MAX_BATCH: usize = 256;
pub const MAX_AMOUNT: i64 = 1_000_000_000_000_000;

#[derive(Debug, Clone)]
pub struct UsageRequest {
    pub tenant_id: TenantId,
    pub resource: String,
    pub amount: i64,
    pub idempotency_key: Option<String>,
    /// May this increment take a SOFT quota past its limit (up to the plan's overage
    /// ceiling)? False for tenant members under `USAGE_MEMBER_SOFT_POLICY=within_limit`.
    pub soft_overage: bool,
}

/// The SQL of a quota's cap for one increment: `app_usage_cap` with the plan's overage
/// ceiling. `$q` is the quota row's alias, `$overage` the bind of `soft_overage`.
macro_rules! usage_cap_sql {
    ($q:literal, $overage:literal) => {
        concat!(
            "app_usage_cap(", $q, ".\"limit\", ", $q, ".enforcement, ", $overage,
            ", (select p.overage_limit_percent from tenants t join plans p on p.id = t.plan_id where t.id = ",
            $q, ".tenant_id))"
        )
    };
}

mod batch;
mod one;
mod writer;

pub use writer::Meter;

/// The same idempotency key sent for another resource: refused, nothing recorded.
fn key_reused(first_resource: &str) -> AppError {
    AppError::bad_input(
        "idempotencyKey",
        format!("this idempotencyKey was already used for another resource ({first_resource:?})"),
    )
}

/// The answer to an increment (stored with the record, so a repeated key gets it again).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UsageOutcome {
    pub resource: String,
    pub allowed: bool,
    pub used: i64,
    pub limit: i64,
    pub remaining: i64,
    /// Usage above the limit (SOFT quotas), billed as overage.
    pub overage: i64,
    /// True when this answer repeats the first one for the same idempotency key.
    pub duplicate: bool,
}

impl UsageOutcome {
    fn new(resource: &str, used: i64, limit: i64, duplicate: bool) -> Self {
        UsageOutcome {
            resource: resource.to_owned(),
            allowed: true,
            used,
            limit,
            remaining: (limit - used).max(0),
            overage: (used - limit).max(0),
            duplicate,
        }
    }
}

pub fn validate(req: &UsageRequest) -> AppResult<()> {
    if req.amount <= 0 || req.amount > MAX_AMOUNT {
        return Err(AppError::bad_input(
            "amount",
            "amount must be a positive whole number (at most 10^15)",
        ));
    }
    if req.resource.is_empty() || req.resource.len() > 64 {
        return Err(AppError::bad_input(
            "resource",
            "resource must be 1-64 characters",
        ));
    }
    if let Some(k) = &req.idempotency_key {
        if k.is_empty() || k.len() > 255 {
            return Err(AppError::bad_input(
                "idempotencyKey",
                "idempotencyKey must be 1-255 characters",
            ));
        }
    }
    Ok(())
}

type ItemResult = AppResult<(UsageOutcome, Vec<AlertEvent>)>;

/// A quota row as the metering statements read it (period already rolled over).
#[derive(QueryableByName)]
struct Locked {
    #[diesel(sql_type = BigInt)]
    used: i64,
    #[diesel(sql_type = BigInt)]
    limit: i64,
    #[diesel(sql_type = Timestamptz)]
    period_start: DateTime<Utc>,
    #[diesel(sql_type = diesel::sql_types::Array<diesel::sql_types::Int4>)]
    alert_thresholds: Vec<i32>,
    #[diesel(sql_type = Text)]
    enforcement: QuotaEnforcement,
    /// The most `used` may reach for a caller allowed into overage (`app_usage_cap`).
    #[diesel(sql_type = BigInt)]
    cap: i64,
}

/// Whether going from `before` to `after` crosses `threshold` percent of `limit`.
pub fn crosses(before: i64, after: i64, limit: i64, threshold: i32) -> bool {
    let t = threshold as i128;
    let (before, after, limit) = (before as i128, after as i128, limit as i128);
    if limit == 0 {
        return before == 0 && after > 0;
    }
    before * 100 < t * limit && after * 100 >= t * limit
}

async fn add_hourly(
    conn: &mut Conn,
    tenant: TenantId,
    resource: &str,
    now: DateTime<Utc>,
    amount: i64,
) -> QueryResult<()> {
    diesel::sql_query(
        "insert into usage_hourly (tenant_id, resource, hour_start, amount)
         values ($1, $2, date_trunc('hour', $3, 'UTC'), $4)
         on conflict (tenant_id, resource, hour_start) do update set amount = usage_hourly.amount + excluded.amount",
    )
    .bind::<SqlUuid, _>(tenant)
    .bind::<Text, _>(resource)
    .bind::<Timestamptz, _>(now)
    .bind::<BigInt, _>(amount)
    .execute(conn)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::crosses;

    #[test]
    fn thresholds_fire_on_the_increment_that_reaches_them() {
        assert!(crosses(749, 750, 1000, 75));
        assert!(!crosses(750, 751, 1000, 75));
        assert!(crosses(0, 1000, 1000, 100));
        assert!(crosses(0, 1000, 1000, 75));
        assert!(!crosses(0, 749, 1000, 75));
        assert!(crosses(2, 3, 3, 100));
        assert!(!crosses(0, 0, 0, 100));
        assert!(crosses(i64::MAX - 1, i64::MAX, i64::MAX, 100));
    }
}
