//! API key SQL. No rules; the scope (RLS) is applied by the caller's transaction. The hash
//! column is written by [`insert`] and read only as the filter of [`find_by_hash`].

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use uuid::Uuid;

use super::model::{ApiKeyRow, NewApiKey};
use crate::db::schema::api_keys;
use crate::db::Conn;
use crate::ids::TenantId;

pub async fn insert(c: &mut Conn, key: &NewApiKey) -> QueryResult<ApiKeyRow> {
    diesel::insert_into(api_keys::table)
        .values(key)
        .returning(ApiKeyRow::as_returning())
        .get_result(c)
        .await
}

/// The key with this secret hash (authentication: the caller's transaction is the platform
/// scope, since no tenant is known yet).
pub async fn find_by_hash(c: &mut Conn, hash: &[u8]) -> QueryResult<Option<ApiKeyRow>> {
    api_keys::table
        .filter(api_keys::secret_hash.eq(hash))
        .select(ApiKeyRow::as_select())
        .first(c)
        .await
        .optional()
}

/// The key `id` visible in the transaction's scope.
pub async fn find(c: &mut Conn, id: Uuid) -> QueryResult<Option<ApiKeyRow>> {
    api_keys::table
        .filter(api_keys::id.eq(id))
        .select(ApiKeyRow::as_select())
        .first(c)
        .await
        .optional()
}

/// Like [`find`], locking the row for the rest of the transaction.
pub async fn find_for_update(c: &mut Conn, id: Uuid) -> QueryResult<Option<ApiKeyRow>> {
    api_keys::table
        .filter(api_keys::id.eq(id))
        .select(ApiKeyRow::as_select())
        .for_update()
        .first(c)
        .await
        .optional()
}

/// The tenant's keys that are neither revoked nor expired at `now`, newest first.
pub async fn list_live(
    c: &mut Conn,
    tenant_id: TenantId,
    now: DateTime<Utc>,
) -> QueryResult<Vec<ApiKeyRow>> {
    api_keys::table
        .filter(api_keys::tenant_id.eq(tenant_id))
        .filter(api_keys::revoked_at.is_null())
        .filter(
            api_keys::expires_at
                .is_null()
                .or(api_keys::expires_at.gt(now)),
        )
        .order((api_keys::created_at.desc(), api_keys::id.desc()))
        .select(ApiKeyRow::as_select())
        .load(c)
        .await
}

/// Whether a key was made by rotating `id`.
pub async fn has_successor(c: &mut Conn, tenant_id: TenantId, id: Uuid) -> QueryResult<bool> {
    diesel::select(diesel::dsl::exists(
        api_keys::table
            .filter(api_keys::tenant_id.eq(tenant_id))
            .filter(api_keys::rotated_from.eq(id)),
    ))
    .get_result(c)
    .await
}

pub async fn set_revoked(
    c: &mut Conn,
    tenant_id: TenantId,
    id: Uuid,
    at: DateTime<Utc>,
) -> QueryResult<ApiKeyRow> {
    diesel::update(api_keys::table.find((tenant_id, id)))
        .set(api_keys::revoked_at.eq(at))
        .returning(ApiKeyRow::as_returning())
        .get_result(c)
        .await
}

pub async fn set_expiry(
    c: &mut Conn,
    tenant_id: TenantId,
    id: Uuid,
    at: DateTime<Utc>,
) -> QueryResult<ApiKeyRow> {
    diesel::update(api_keys::table.find((tenant_id, id)))
        .set(api_keys::expires_at.eq(at))
        .returning(ApiKeyRow::as_returning())
        .get_result(c)
        .await
}

/// Records a use at `now`, unless one at most `min_gap` earlier is recorded already (another
/// instance wrote it): at most one write per key per gap, whatever the number of instances.
pub async fn touch(
    c: &mut Conn,
    tenant_id: TenantId,
    id: Uuid,
    now: DateTime<Utc>,
    min_gap: chrono::Duration,
) -> QueryResult<usize> {
    diesel::update(api_keys::table.find((tenant_id, id)))
        .filter(
            api_keys::last_used_at
                .is_null()
                .or(api_keys::last_used_at.lt(now - min_gap)),
        )
        .set(api_keys::last_used_at.eq(now))
        .execute(c)
        .await
}
