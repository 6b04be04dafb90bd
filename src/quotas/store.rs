//! Quota SQL. Scope is applied by the caller's transaction.

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use uuid::Uuid;

use super::model::{AlertRow, QuotaRow, UsageBucket};
use crate::db::schema::quotas;
use crate::db::Conn;
use crate::ids::TenantId;

pub async fn insert_many(conn: &mut Conn, rows: &[QuotaRow]) -> QueryResult<usize> {
    diesel::insert_into(quotas::table)
        .values(rows)
        .on_conflict_do_nothing()
        .execute(conn)
        .await
}

pub async fn of_tenants(conn: &mut Conn, tenant_ids: &[TenantId]) -> QueryResult<Vec<QuotaRow>> {
    quotas::table
        .filter(quotas::tenant_id.eq_any(tenant_ids))
        .order((quotas::tenant_id, quotas::resource))
        .select(QuotaRow::as_select())
        .load(conn)
        .await
}

/// Usage of one resource summed per `unit` ('hour' | 'day' | 'month', UTC) over [from, to).
pub async fn usage_series(
    conn: &mut Conn,
    tenant_id: TenantId,
    resource: &str,
    from: chrono::DateTime<chrono::Utc>,
    to: chrono::DateTime<chrono::Utc>,
    unit: &'static str,
) -> QueryResult<Vec<UsageBucket>> {
    use diesel::sql_types::{Text, Timestamptz, Uuid as SqlUuid};
    diesel::sql_query(
        "select date_trunc($1, hour_start, 'UTC') as period_start, sum(amount)::bigint as amount
           from usage_hourly
          where tenant_id = $2 and resource = $3 and hour_start >= $4 and hour_start < $5
          group by 1 order by 1",
    )
    .bind::<Text, _>(unit)
    .bind::<SqlUuid, _>(tenant_id)
    .bind::<Text, _>(resource)
    .bind::<Timestamptz, _>(from)
    .bind::<Timestamptz, _>(to)
    .load(conn)
    .await
}

pub async fn find(
    conn: &mut Conn,
    tenant_id: TenantId,
    resource: &str,
) -> QueryResult<Option<QuotaRow>> {
    quotas::table
        .find((tenant_id, resource))
        .select(QuotaRow::as_select())
        .first(conn)
        .await
        .optional()
}

pub async fn upsert(conn: &mut Conn, row: &QuotaRow) -> QueryResult<QuotaRow> {
    diesel::insert_into(quotas::table)
        .values(row)
        .on_conflict((quotas::tenant_id, quotas::resource))
        .do_update()
        .set((
            quotas::limit.eq(row.limit),
            quotas::used.eq(row.used),
            quotas::unit.eq(&row.unit),
            quotas::reset_period.eq(&row.reset_period),
            quotas::period_start.eq(row.period_start),
            quotas::alert_thresholds.eq(&row.alert_thresholds),
            quotas::enforcement.eq(&row.enforcement),
            quotas::overridden.eq(row.overridden),
            quotas::updated_at.eq(chrono::Utc::now()),
        ))
        .returning(QuotaRow::as_returning())
        .get_result(conn)
        .await
}

pub async fn count_alerts(conn: &mut Conn, tenant_id: TenantId) -> QueryResult<i64> {
    use crate::db::schema::quota_alerts as qa;
    qa::table
        .filter(qa::tenant_id.eq(tenant_id))
        .count()
        .get_result(conn)
        .await
}

/// A tenant's alerts, newest first, keyset on (created_at, id) descending.
pub async fn alerts(
    conn: &mut Conn,
    tenant_id: TenantId,
    before: Option<(chrono::DateTime<chrono::Utc>, Uuid)>,
    limit: i64,
) -> QueryResult<Vec<AlertRow>> {
    use crate::db::schema::quota_alerts as qa;
    let mut q = qa::table.filter(qa::tenant_id.eq(tenant_id)).into_boxed();
    if let Some((ts, id)) = before {
        q = q.filter(
            qa::created_at
                .lt(ts)
                .or(qa::created_at.eq(ts).and(qa::id.lt(id))),
        );
    }
    q.order((qa::created_at.desc(), qa::id.desc()))
        .limit(limit)
        .select(AlertRow::as_select())
        .load(conn)
        .await
}
