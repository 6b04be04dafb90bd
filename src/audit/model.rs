//! Audit rows as stored and the filter of the audit list.

use diesel::prelude::*;
use serde_json::Value;
use uuid::Uuid;

use crate::db::schema::audit_logs;
use crate::ids::TenantId;

#[derive(Queryable, Selectable, Debug, Clone)]
#[diesel(table_name = audit_logs, check_for_backend(diesel::pg::Pg))]
pub struct AuditRow {
    pub id: Uuid,
    pub tenant_id: Option<TenantId>,
    pub entity_type: String,
    pub entity_id: String,
    pub action: String,
    pub actor_type: String,
    pub actor_id: Option<String>,
    pub changes: Value,
    pub metadata: Value,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

/// What the list narrows to; `tenant_id` is decided by the service's visibility rule.
#[derive(Default, Clone)]
pub struct AuditFilter {
    pub tenant_id: Option<TenantId>,
    pub entity_type: Option<String>,
    pub entity_id: Option<String>,
    pub action: Option<String>,
    pub actor_type: Option<String>,
    /// created_at >= from
    pub from: Option<chrono::DateTime<chrono::Utc>>,
    /// created_at < to
    pub to: Option<chrono::DateTime<chrono::Utc>>,
}
