//! Feature SQL.

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use uuid::Uuid;

use super::model::{FeatureDefinition, FeatureOverride};
use crate::db::schema::{feature_definitions, tenant_features};
use crate::db::Conn;

pub async fn definitions(conn: &mut Conn) -> QueryResult<Vec<FeatureDefinition>> {
    feature_definitions::table
        .order(feature_definitions::key.asc())
        .select(FeatureDefinition::as_select())
        .load(conn)
        .await
}

pub async fn overrides_of(
    conn: &mut Conn,
    tenant_ids: &[Uuid],
) -> QueryResult<Vec<FeatureOverride>> {
    tenant_features::table
        .filter(tenant_features::tenant_id.eq_any(tenant_ids))
        .select(FeatureOverride::as_select())
        .load(conn)
        .await
}
