//! Configuration SQL. Scope is applied by the caller's transaction.

use chrono::Utc;
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use serde_json::Value;

use super::model::{ConfigDataType, ConfigDefault, ConfigRow};
use crate::db::schema::{config_defaults, configs};
use crate::db::Conn;
use crate::ids::TenantId;

pub async fn of_tenants(conn: &mut Conn, tenant_ids: &[TenantId]) -> QueryResult<Vec<ConfigRow>> {
    configs::table
        .filter(configs::tenant_id.eq_any(tenant_ids))
        .order((configs::category, configs::key))
        .select(ConfigRow::as_select())
        .load(conn)
        .await
}

pub async fn defaults(conn: &mut Conn) -> QueryResult<Vec<ConfigDefault>> {
    config_defaults::table
        .order((config_defaults::category, config_defaults::key))
        .select(ConfigDefault::as_select())
        .load(conn)
        .await
}

pub async fn find(
    conn: &mut Conn,
    tenant_id: TenantId,
    category: &str,
    key: &str,
) -> QueryResult<Option<ConfigRow>> {
    configs::table
        .filter(configs::tenant_id.eq(tenant_id))
        .filter(configs::category.eq(category))
        .filter(configs::key.eq(key))
        .select(ConfigRow::as_select())
        .first(conn)
        .await
        .optional()
}

pub struct Upsert<'a> {
    pub tenant_id: TenantId,
    pub category: &'a str,
    pub key: &'a str,
    pub value: Option<Value>,
    pub encrypted_value: Option<Vec<u8>>,
    pub data_type: ConfigDataType,
    pub encrypted: bool,
    pub updated_by: Option<&'a str>,
}

pub async fn upsert(conn: &mut Conn, u: Upsert<'_>) -> QueryResult<ConfigRow> {
    diesel::insert_into(configs::table)
        .values((
            configs::tenant_id.eq(u.tenant_id),
            configs::category.eq(u.category),
            configs::key.eq(u.key),
            configs::value.eq(&u.value),
            configs::encrypted_value.eq(&u.encrypted_value),
            configs::data_type.eq(u.data_type),
            configs::encrypted.eq(u.encrypted),
            configs::updated_by.eq(u.updated_by),
        ))
        .on_conflict((configs::tenant_id, configs::category, configs::key))
        .do_update()
        .set((
            configs::value.eq(&u.value),
            configs::encrypted_value.eq(&u.encrypted_value),
            configs::data_type.eq(u.data_type),
            configs::encrypted.eq(u.encrypted),
            configs::updated_by.eq(u.updated_by),
            configs::updated_at.eq(Utc::now()),
        ))
        .returning(ConfigRow::as_returning())
        .get_result(conn)
        .await
}

/// Deletes matching rows (one key, one category, or all) and returns them.
pub async fn delete(
    conn: &mut Conn,
    tenant_id: TenantId,
    category: Option<&str>,
    key: Option<&str>,
) -> QueryResult<Vec<ConfigRow>> {
    let mut q = diesel::delete(configs::table)
        .filter(configs::tenant_id.eq(tenant_id))
        .into_boxed();
    if let Some(c) = category {
        q = q.filter(configs::category.eq(c.to_owned()));
    }
    if let Some(k) = key {
        q = q.filter(configs::key.eq(k.to_owned()));
    }
    q.returning(ConfigRow::as_returning())
        .get_results(conn)
        .await
}

#[derive(QueryableByName, Debug, Clone, Copy, PartialEq, Eq)]
pub struct Totals {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    pub entries: i64,
    /// Stored size: the JSON text of plain values, the ciphertext of encrypted ones.
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    pub bytes: i64,
}

/// A tenant's configuration entries and the sum of their stored value sizes.
pub async fn totals(conn: &mut Conn, tenant_id: TenantId) -> QueryResult<Totals> {
    diesel::sql_query(
        "select count(*)::bigint as entries,
                coalesce(sum(coalesce(octet_length(value::text), 0) + coalesce(octet_length(encrypted_value), 0)), 0)::bigint as bytes
           from configs where tenant_id = $1",
    )
    .bind::<diesel::sql_types::Uuid, _>(tenant_id)
    .get_result(conn)
    .await
}
