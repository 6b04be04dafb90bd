//! `auditLogs(first, after, filter)`. Who sees which entries is `service::list`'s rule (tenant
//! admins their tenant's; platform admins the tenant of `X-Tenant-ID` or `filter.tenantId`,
//! else everything). Gated by the `audit_logs` feature of the request's tenant.

use async_graphql::connection::Connection;
use async_graphql::{Context, InputObject, Json, Object, Result, SimpleObject, ID};
use chrono::{DateTime, Utc};

use super::model::{AuditFilter, AuditRow};
use super::service;
use crate::auth::Role;
use crate::graphql::context::CtxExt;
use crate::graphql::guards::{RequireFeature, RequireRole};
use crate::graphql::pagination::{connection, page_args, KeysetCursor, TotalCount};
use crate::ids::TenantId;

#[derive(SimpleObject)]
pub struct AuditLog {
    pub id: ID,
    pub tenant_id: Option<ID>,
    pub entity_type: String,
    pub entity_id: String,
    pub action: String,
    pub actor_type: String,
    pub actor_id: Option<String>,
    /// `{ before, after }`.
    pub changes: Json<serde_json::Value>,
    /// Request id, reason, ticket id, ...
    pub metadata: Json<serde_json::Value>,
    pub created_at: DateTime<Utc>,
}

impl From<AuditRow> for AuditLog {
    fn from(r: AuditRow) -> Self {
        AuditLog {
            id: ID(r.id.to_string()),
            tenant_id: r.tenant_id.map(|t| ID(t.to_string())),
            entity_type: r.entity_type,
            entity_id: r.entity_id,
            action: r.action,
            actor_type: r.actor_type,
            actor_id: r.actor_id,
            changes: Json(r.changes),
            metadata: Json(r.metadata),
            created_at: r.created_at,
        }
    }
}

#[derive(InputObject, Default)]
pub struct AuditLogFilter {
    /// Platform admins only; tenant users always see their own tenant.
    pub tenant_id: Option<ID>,
    pub entity_type: Option<String>,
    pub entity_id: Option<String>,
    pub action: Option<String>,
    pub actor_type: Option<String>,
    /// Entries at or after this time.
    pub from: Option<DateTime<Utc>>,
    /// Entries before this time.
    pub to: Option<DateTime<Utc>>,
}

#[derive(Default)]
pub struct AuditQuery;

#[Object]
impl AuditQuery {
    /// Audit entries, newest first.
    #[graphql(
        guard = "RequireRole(Role::TenantAdmin).and(RequireFeature::new(\"audit_logs\"))",
        complexity = "first.unwrap_or(20).clamp(0, 100) as usize * child_complexity + 1"
    )]
    async fn audit_logs(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        filter: Option<AuditLogFilter>,
    ) -> Result<Connection<KeysetCursor, AuditLog, TotalCount>> {
        let page = page_args(ctx, first, after.as_deref())?;
        let req = ctx.req();
        let f = filter.unwrap_or_default();
        let requested = f
            .tenant_id
            .map(|id| TenantId::parse("tenantId", id.as_str()))
            .transpose()?;
        let filter = AuditFilter {
            tenant_id: requested,
            entity_type: f.entity_type,
            entity_id: f.entity_id,
            action: f.action,
            actor_type: f.actor_type,
            from: f.from,
            to: f.to,
        };
        let page = service::list(&req.db, &req.actor(), req.tenant_id(), filter, page).await?;
        Ok(connection(
            page,
            |r| (r.created_at, r.id),
            |rows| rows.into_iter().map(AuditLog::from).collect(),
        ))
    }
}
