//! Quota rules. Provisioning: a new tenant gets its plan's quotas plus the defaults for
//! resources the plan does not name, in the caller's transaction.

use chrono::{DateTime, Utc};
use diesel::QueryResult;
use uuid::Uuid;

use super::model::{QuotaRow, ResetPeriod, DEFAULT_ALERT_THRESHOLDS, DEFAULT_QUOTAS};
use super::store;
use crate::db::Conn;
use crate::plans::model::PlanQuotaRow;

pub fn provisioned_quotas(
    tenant_id: Uuid,
    plan: &[PlanQuotaRow],
    now: DateTime<Utc>,
) -> Vec<QuotaRow> {
    let row =
        |resource: &str, limit, unit: &str, period: ResetPeriod, enforcement: &str| QuotaRow {
            tenant_id,
            resource: resource.to_owned(),
            limit,
            used: 0,
            unit: unit.to_owned(),
            reset_period: period.as_str().to_owned(),
            period_start: period.period_start(now),
            alert_thresholds: DEFAULT_ALERT_THRESHOLDS.to_vec(),
            enforcement: enforcement.to_owned(),
        };
    let mut rows: Vec<QuotaRow> = plan
        .iter()
        .map(|q| {
            row(
                &q.resource,
                q.limit,
                &q.unit,
                ResetPeriod::parse(&q.reset_period),
                &q.enforcement,
            )
        })
        .collect();
    for (resource, limit, unit, period) in DEFAULT_QUOTAS {
        if !plan.iter().any(|q| q.resource == *resource) {
            rows.push(row(resource, *limit, unit, *period, "HARD"));
        }
    }
    rows
}

pub async fn provision(
    conn: &mut Conn,
    tenant_id: Uuid,
    plan: &[PlanQuotaRow],
    now: DateTime<Utc>,
) -> QueryResult<Vec<QuotaRow>> {
    let rows = provisioned_quotas(tenant_id, plan, now);
    store::insert_many(conn, &rows).await?;
    Ok(rows)
}
