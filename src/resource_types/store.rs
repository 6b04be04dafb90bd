//! Resource type SQL. Platform data: no RLS; the caller's transaction picks the scope.

use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use super::model::ResourceTypeRow;
use crate::db::schema::resource_types;
use crate::db::Conn;

/// Every resource type, by key.
pub async fn list(conn: &mut Conn) -> QueryResult<Vec<ResourceTypeRow>> {
    resource_types::table
        .order(resource_types::key.asc())
        .select(ResourceTypeRow::as_select())
        .load(conn)
        .await
}

/// Inserts `row`; `None` when its key exists already (nothing written).
pub async fn insert(
    conn: &mut Conn,
    row: &ResourceTypeRow,
) -> QueryResult<Option<ResourceTypeRow>> {
    diesel::insert_into(resource_types::table)
        .values(row)
        .on_conflict_do_nothing()
        .returning(ResourceTypeRow::as_returning())
        .get_result(conn)
        .await
        .optional()
}
