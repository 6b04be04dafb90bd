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
