//! Usage-based billing: the overage of SOFT quotas (usage beyond the limit, so a SOFT quota
//! with limit 0 is a purely metered resource) is reported to Stripe as meter events named
//! `tenantry_<resource>`, one row per (tenant, resource, period) in `usage_reports`.
//!
//! The overage of a period comes from the durable usage records (`used_after - limit_at`), so a
//! period reset cannot lose what was used after the last report; records of the last two
//! days are read, so the job may be down for up to two days without losing a period's end
//! (Stripe accepts meter events up to 35 days old).
//!
//! Idempotency: a report first records its target (the cumulative overage), a deterministic
//! identifier and the event time (the last usage of the target), then sends the difference to
//! what Stripe has acknowledged.
//! A failed or unanswered send is repeated with the same identifier, which Stripe
//! deduplicates, until it is acknowledged; only then can a new target be recorded.

use chrono::{DateTime, Utc};
use diesel::sql_types::{BigInt, Text, Timestamptz, Uuid as SqlUuid};
use diesel::QueryableByName;
use diesel_async::RunQueryDsl;
use scoped_futures::ScopedFutureExt;

use super::payments::Payments;
use crate::db::{Db, Scope};
use crate::error::AppResult;
use crate::ids::TenantId;

pub const METER_EVENT_PREFIX: &str = "tenantry_";

#[derive(QueryableByName, Debug)]
struct Pending {
    #[diesel(sql_type = SqlUuid)]
    tenant_id: TenantId,
    #[diesel(sql_type = Text)]
    resource: String,
    #[diesel(sql_type = Timestamptz)]
    period_start: DateTime<Utc>,
    #[diesel(sql_type = BigInt)]
    delta: i64,
    #[diesel(sql_type = Text)]
    identifier: String,
    #[diesel(sql_type = Text)]
    customer: String,
    #[diesel(sql_type = Timestamptz)]
    event_at: DateTime<Utc>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ReportSummary {
    pub reported: usize,
    pub failed: usize,
}

/// Records new report targets and sends every pending report. In LOCAL mode nothing is
/// recorded or sent.
pub async fn report(db: &Db, api: Option<&dyn Payments>) -> AppResult<ReportSummary> {
    let Some(api) = api else {
        return Ok(ReportSummary::default());
    };
    let pending: Vec<Pending> = db
        .scoped(Scope::Platform("usage_report"), |c| {
            async move {
                diesel::sql_query(
                    "WITH o AS (
                        SELECT u.tenant_id, u.resource, u.period_start,
                               max(u.used_after - u.limit_at) AS overage, max(u.recorded_at) AS last_at
                        FROM usage_records u
                        JOIN quotas q ON q.tenant_id = u.tenant_id AND q.resource = u.resource
                        JOIN tenants t ON t.id = u.tenant_id
                        WHERE q.enforcement = 'SOFT' AND u.recorded_at > now() - interval '2 days'
                          AND t.stripe_customer_id IS NOT NULL AND t.deleted_at IS NULL
                        GROUP BY u.tenant_id, u.resource, u.period_start
                        HAVING max(u.used_after - u.limit_at) > 0)
                     INSERT INTO usage_reports AS r (tenant_id, resource, period_start, quantity, identifier, status, event_at)
                     SELECT o.tenant_id, o.resource, o.period_start, o.overage,
                            o.tenant_id || ':' || o.resource || ':' || extract(epoch FROM o.period_start)::bigint
                                || ':' || o.overage,
                            'PENDING', o.last_at
                     FROM o
                     ON CONFLICT (tenant_id, resource, period_start) DO UPDATE
                        SET quantity = excluded.quantity, identifier = excluded.identifier,
                            status = 'PENDING', event_at = excluded.event_at
                        WHERE r.status = 'REPORTED' AND excluded.quantity > r.reported_quantity",
                )
                .execute(c)
                .await?;
                Ok(diesel::sql_query(
                    "SELECT r.tenant_id, r.resource, r.period_start,
                            r.quantity - r.reported_quantity AS delta, r.identifier,
                            t.stripe_customer_id AS customer, r.event_at
                     FROM usage_reports r JOIN tenants t ON t.id = r.tenant_id
                     WHERE r.status = 'PENDING' AND t.stripe_customer_id IS NOT NULL
                     ORDER BY r.created_at LIMIT 500",
                )
                .load(c)
                .await?)
            }
            .scope_boxed()
        })
        .await?;
    let mut summary = ReportSummary::default();
    for p in pending {
        let name = format!("{METER_EVENT_PREFIX}{}", p.resource);
        let sent = api
            .meter_event(&name, &p.customer, p.delta, &p.identifier, p.event_at)
            .await;
        let error = sent.as_ref().err().map(|e| e.to_string());
        match &error {
            None => summary.reported += 1,
            Some(_) => summary.failed += 1,
        }
        db
            .scoped(Scope::Platform("usage_report"), |c| {
                async move {
                    diesel::sql_query(
                        "UPDATE usage_reports SET attempts = attempts + 1, last_error = $5,
                            status = CASE WHEN $5 IS NULL THEN 'REPORTED' ELSE status END,
                            reported_quantity = CASE WHEN $5 IS NULL THEN quantity ELSE reported_quantity END,
                            reported_at = CASE WHEN $5 IS NULL THEN now() ELSE reported_at END
                         WHERE tenant_id = $1 AND resource = $2 AND period_start = $3 AND identifier = $4",
                    )
                    .bind::<SqlUuid, _>(p.tenant_id)
                    .bind::<Text, _>(&p.resource)
                    .bind::<Timestamptz, _>(p.period_start)
                    .bind::<Text, _>(&p.identifier)
                    .bind::<diesel::sql_types::Nullable<Text>, _>(error)
                    .execute(c)
                    .await?;
                    Ok(())
                }
                .scope_boxed()
            })
            .await?;
    }
    Ok(summary)
}
