//! Quota SQL. Scope is applied by the caller's transaction.

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use uuid::Uuid;

use super::model::QuotaRow;
use crate::db::schema::quotas;
use crate::db::Conn;

pub async fn insert_many(conn: &mut Conn, rows: &[QuotaRow]) -> QueryResult<usize> {
    diesel::insert_into(quotas::table)
        .values(rows)
        .on_conflict_do_nothing()
        .execute(conn)
        .await
}

pub async fn of_tenants(conn: &mut Conn, tenant_ids: &[Uuid]) -> QueryResult<Vec<QuotaRow>> {
    quotas::table
        .filter(quotas::tenant_id.eq_any(tenant_ids))
        .order((quotas::tenant_id, quotas::resource))
        .select(QuotaRow::as_select())
        .load(conn)
        .await
}

#[derive(diesel::QueryableByName, Debug, Clone)]
pub struct UsageBucket {
    #[diesel(sql_type = diesel::sql_types::Timestamptz)]
    pub period_start: chrono::DateTime<chrono::Utc>,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    pub amount: i64,
}

/// Usage of one resource summed per `unit` ('hour' | 'day' | 'month', UTC) over [from, to).
pub async fn usage_series(
    conn: &mut Conn,
    tenant_id: Uuid,
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
