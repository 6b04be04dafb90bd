//! Usage-based billing: the overage of SOFT quotas (usage beyond the limit, so a SOFT quota
//! with limit 0 is a purely metered resource) is reported to Stripe as meter events named
//! `tenantry_<resource>`, one row per (tenant, resource, period) in `usage_reports`.
//!
//! Idempotency: a report first records its target (the cumulative overage) and a
//! deterministic identifier, then sends the difference to what Stripe has acknowledged.
//! A failed or unanswered send is repeated with the same identifier, which Stripe
//! deduplicates, until it is acknowledged; only then can a new target be recorded.

use chrono::{DateTime, Utc};
use diesel::sql_types::{BigInt, Text, Timestamptz, Uuid as SqlUuid};
use diesel::QueryableByName;
use diesel_async::RunQueryDsl;
use scoped_futures::ScopedFutureExt;
use uuid::Uuid;

use crate::app::App;
use crate::db::Scope;
use crate::error::AppResult;

pub const METER_EVENT_PREFIX: &str = "tenantry_";

#[derive(QueryableByName, Debug)]
struct Pending {
    #[diesel(sql_type = SqlUuid)]
    tenant_id: Uuid,
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
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ReportSummary {
    pub reported: usize,
    pub failed: usize,
}

/// Records new report targets and sends every pending report. In LOCAL mode nothing is
/// recorded or sent.
pub async fn report(app: &App, now: DateTime<Utc>) -> AppResult<ReportSummary> {
    let Some(api) = app.stripe.as_ref() else {
        return Ok(ReportSummary::default());
    };
    let pending: Vec<Pending> = app
        .db
        .scoped(Scope::Platform("usage_report"), |c| {
            async move {
                diesel::sql_query(
                    "INSERT INTO usage_reports AS r (tenant_id, resource, period_start, quantity, identifier, status)
                     SELECT q.tenant_id, q.resource, q.period_start, q.used - q.\"limit\",
                            q.tenant_id || ':' || q.resource || ':' || extract(epoch FROM q.period_start)::bigint
                                || ':' || (q.used - q.\"limit\"),
                            'PENDING'
                     FROM quotas q JOIN tenants t ON t.id = q.tenant_id
                     WHERE q.enforcement = 'SOFT' AND q.used > q.\"limit\"
                       AND t.stripe_customer_id IS NOT NULL AND t.deleted_at IS NULL
                     ON CONFLICT (tenant_id, resource, period_start) DO UPDATE
                        SET quantity = excluded.quantity, identifier = excluded.identifier,
                            status = 'PENDING'
                        WHERE r.status = 'REPORTED' AND excluded.quantity > r.reported_quantity",
                )
                .execute(c)
                .await?;
                Ok(diesel::sql_query(
                    "SELECT r.tenant_id, r.resource, r.period_start,
                            r.quantity - r.reported_quantity AS delta, r.identifier,
                            t.stripe_customer_id AS customer
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
            .meter_event(&name, &p.customer, p.delta, &p.identifier, now)
            .await;
        let error = sent.as_ref().err().map(|e| e.to_string());
        match &error {
            None => summary.reported += 1,
            Some(_) => summary.failed += 1,
        }
        app.db
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
