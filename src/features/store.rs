//! Feature SQL. Scope is applied by the caller's transaction.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use super::model::{FeatureDefinition, FeatureOverride};
use crate::db::schema::{feature_definitions, tenant_features};
use crate::db::Conn;
use crate::ids::TenantId;

pub async fn definitions(conn: &mut Conn) -> QueryResult<Vec<FeatureDefinition>> {
    feature_definitions::table
        .order(feature_definitions::key.asc())
        .select(FeatureDefinition::as_select())
        .load(conn)
        .await
}

pub async fn overrides_of(
    conn: &mut Conn,
    tenant_ids: &[TenantId],
) -> QueryResult<Vec<FeatureOverride>> {
    tenant_features::table
        .filter(tenant_features::tenant_id.eq_any(tenant_ids))
        .select(FeatureOverride::as_select())
        .load(conn)
        .await
}

/// Inserts or replaces the override of `key`, stamped with who set it.
#[allow(clippy::too_many_arguments)]
pub async fn upsert_override(
    conn: &mut Conn,
    tenant_id: TenantId,
    key: &str,
    enabled: bool,
    expires_at: Option<DateTime<Utc>>,
    set_by: Option<&str>,
    set_by_type: &str,
    now: DateTime<Utc>,
) -> QueryResult<usize> {
    diesel::insert_into(tenant_features::table)
        .values((
            tenant_features::tenant_id.eq(tenant_id),
            tenant_features::feature_key.eq(key),
            tenant_features::enabled.eq(enabled),
            tenant_features::expires_at.eq(expires_at),
            tenant_features::set_by.eq(set_by),
            tenant_features::set_by_type.eq(set_by_type),
        ))
        .on_conflict((tenant_features::tenant_id, tenant_features::feature_key))
        .do_update()
        .set((
            tenant_features::enabled.eq(enabled),
            tenant_features::expires_at.eq(expires_at),
            tenant_features::set_by.eq(set_by),
            tenant_features::set_by_type.eq(set_by_type),
            tenant_features::updated_at.eq(now),
        ))
        .execute(conn)
        .await
}

pub async fn delete_override(
    conn: &mut Conn,
    tenant_id: TenantId,
    key: &str,
) -> QueryResult<usize> {
    diesel::delete(
        tenant_features::table
            .filter(tenant_features::tenant_id.eq(tenant_id))
            .filter(tenant_features::feature_key.eq(key)),
    )
    .execute(conn)
    .await
}

/// Deletes the tenant's enabling overrides of features not in `keep`; returns them.
pub async fn delete_enabling_except(
    conn: &mut Conn,
    tenant_id: TenantId,
    keep: &[String],
) -> QueryResult<Vec<FeatureOverride>> {
    diesel::delete(
        tenant_features::table
            .filter(tenant_features::tenant_id.eq(tenant_id))
            .filter(tenant_features::enabled.eq(true))
            .filter(diesel::dsl::not(tenant_features::feature_key.eq_any(keep))),
    )
    .returning(FeatureOverride::as_returning())
    .get_results(conn)
    .await
}

/// Inserts a feature definition; `None` when its key exists already (nothing written).
pub async fn insert_definition(
    conn: &mut Conn,
    key: &str,
    name: &str,
    description: &str,
) -> QueryResult<Option<FeatureDefinition>> {
    diesel::insert_into(feature_definitions::table)
        .values((
            feature_definitions::key.eq(key),
            feature_definitions::name.eq(name),
            feature_definitions::description.eq(description),
        ))
        .on_conflict_do_nothing()
        .returning(FeatureDefinition::as_returning())
        .get_result(conn)
        .await
        .optional()
}
