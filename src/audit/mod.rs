//! The audit log (SPEC §4): every mutation writes an entry in the same transaction as its
//! effect. `record` is the only writer; the query surface comes with the audit-log issue.

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::auth::Actor;
use crate::db::schema::audit_logs;
use crate::db::Conn;

#[derive(Insertable, Debug)]
#[diesel(table_name = audit_logs)]
struct NewAuditLog<'a> {
    id: Uuid,
    tenant_id: Option<Uuid>,
    entity_type: &'a str,
    entity_id: String,
    action: &'a str,
    actor_type: &'a str,
    actor_id: Option<&'a str>,
    changes: Value,
    metadata: Value,
}

/// One audited change: `entity_type`/`entity_id`/`action` plus before/after.
pub struct Change<'a> {
    pub tenant_id: Option<Uuid>,
    pub entity_type: &'a str,
    pub entity_id: String,
    pub action: &'a str,
    pub before: Value,
    pub after: Value,
    /// Extra metadata (reason, ticket id); the request id is added from the actor.
    pub metadata: Value,
}

pub async fn record(conn: &mut Conn, actor: &Actor, change: Change<'_>) -> QueryResult<()> {
    let mut metadata = match change.metadata {
        Value::Object(m) => m,
        _ => serde_json::Map::new(),
    };
    if let Some(rid) = &actor.request_id {
        metadata.insert("requestId".into(), json!(rid));
    }
    if let Some(role) = actor.role {
        metadata.insert("role".into(), json!(role.as_str()));
    }
    diesel::insert_into(audit_logs::table)
        .values(NewAuditLog {
            id: Uuid::now_v7(),
            tenant_id: change.tenant_id,
            entity_type: change.entity_type,
            entity_id: change.entity_id,
            action: change.action,
            actor_type: actor.kind.as_str(),
            actor_id: actor.id.as_deref(),
            changes: json!({ "before": change.before, "after": change.after }),
            metadata: Value::Object(metadata),
        })
        .execute(conn)
        .await?;
    Ok(())
}
