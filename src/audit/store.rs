//! Audit SQL: the one writer (`record`) and the list query. No rules: who sees which entries
//! is `service`'s; the scope (RLS) is applied by the caller's transaction.

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use serde_json::{json, Value};
use uuid::Uuid;

use super::model::{AuditFilter, AuditRow};
use crate::auth::Actor;
use crate::db::schema::audit_logs;
use crate::db::Conn;
use crate::ids::TenantId;

#[derive(Insertable, Debug)]
#[diesel(table_name = audit_logs)]
struct NewAuditLog<'a> {
    id: Uuid,
    tenant_id: Option<TenantId>,
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
    pub tenant_id: Option<TenantId>,
    pub entity_type: &'a str,
    pub entity_id: String,
    pub action: &'a str,
    pub before: Value,
    pub after: Value,
    /// Extra metadata (reason, ticket id); the request id is added from the actor.
    pub metadata: Value,
}

impl<'a> Change<'a> {
    /// A change of an entity of tenant `tenant_id`, without extra metadata.
    pub fn new(
        tenant_id: TenantId,
        entity_type: &'a str,
        entity_id: impl ToString,
        action: &'a str,
        before: Value,
        after: Value,
    ) -> Self {
        Change {
            tenant_id: Some(tenant_id),
            entity_type,
            entity_id: entity_id.to_string(),
            action,
            before,
            after,
            metadata: Value::Object(Default::default()),
        }
    }

    /// The same change with extra metadata (reason, ticket id, source).
    pub fn with_metadata(self, metadata: Value) -> Self {
        Change { metadata, ..self }
    }
}

pub async fn record(conn: &mut Conn, actor: &Actor, change: Change<'_>) -> QueryResult<()> {
    record_many(conn, actor, vec![change]).await
}

/// Several changes by one actor, in one statement.
pub async fn record_many(
    conn: &mut Conn,
    actor: &Actor,
    changes: Vec<Change<'_>>,
) -> QueryResult<()> {
    if changes.is_empty() {
        return Ok(());
    }
    let rows: Vec<NewAuditLog> = changes.into_iter().map(|c| row(actor, c)).collect();
    diesel::insert_into(audit_logs::table)
        .values(rows)
        .execute(conn)
        .await?;
    Ok(())
}

fn row<'a>(actor: &'a Actor, change: Change<'a>) -> NewAuditLog<'a> {
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
    NewAuditLog {
        id: Uuid::now_v7(),
        tenant_id: change.tenant_id,
        entity_type: change.entity_type,
        entity_id: change.entity_id,
        action: change.action,
        actor_type: actor.kind.as_str(),
        actor_id: actor.id.as_deref(),
        changes: json!({ "before": change.before, "after": change.after }),
        metadata: Value::Object(metadata),
    }
}

/// Newest first, keyset on (created_at, id) descending.
fn filtered<'a>(f: &AuditFilter) -> audit_logs::BoxedQuery<'a, diesel::pg::Pg> {
    let mut q = audit_logs::table.into_boxed();
    if let Some(t) = f.tenant_id {
        q = q.filter(audit_logs::tenant_id.eq(t));
    }
    if let Some(v) = &f.entity_type {
        q = q.filter(audit_logs::entity_type.eq(v.clone()));
    }
    if let Some(v) = &f.entity_id {
        q = q.filter(audit_logs::entity_id.eq(v.clone()));
    }
    if let Some(v) = &f.action {
        q = q.filter(audit_logs::action.eq(v.clone()));
    }
    if let Some(v) = &f.actor_type {
        q = q.filter(audit_logs::actor_type.eq(v.clone()));
    }
    if let Some(from) = f.from {
        q = q.filter(audit_logs::created_at.ge(from));
    }
    if let Some(to) = f.to {
        q = q.filter(audit_logs::created_at.lt(to));
    }
    q
}

pub async fn count(conn: &mut Conn, f: &AuditFilter) -> QueryResult<i64> {
    filtered(f).count().get_result(conn).await
}

pub async fn list(
    conn: &mut Conn,
    f: &AuditFilter,
    before: Option<(chrono::DateTime<chrono::Utc>, Uuid)>,
    limit: i64,
) -> QueryResult<Vec<AuditRow>> {
    let mut q = filtered(f);
    if let Some((ts, id)) = before {
        q = q.filter(
            audit_logs::created_at
                .lt(ts)
                .or(audit_logs::created_at.eq(ts).and(audit_logs::id.lt(id))),
        );
    }
    q.order((audit_logs::created_at.desc(), audit_logs::id.desc()))
        .limit(limit)
        .select(AuditRow::as_select())
        .load(conn)
        .await
}
