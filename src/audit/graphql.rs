//! `auditLogs(first, after, filter)`: tenant admins see their tenant's entries; platform admins
//! see the tenant chosen by `X-Tenant-ID` or `filter.tenantId`, else everything. Gated by the
//! `audit_logs` feature of the request's tenant.

use async_graphql::connection::Connection;
use async_graphql::{Context, InputObject, Json, Object, Result, SimpleObject, ID};
use chrono::{DateTime, Utc};
use scoped_futures::ScopedFutureExt;
use uuid::Uuid;

use super::store::{self, AuditFilter};
use crate::auth::Role;
use crate::db::Scope;
use crate::error::AppError;
use crate::graphql::context::CtxExt;
use crate::graphql::guards::{RequireFeature, RequireRole};
use crate::graphql::pagination::{wants_total, KeysetCursor, PageArgs, TotalCount};

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

impl From<store::AuditRow> for AuditLog {
    fn from(r: store::AuditRow) -> Self {
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
        let page = PageArgs::parse(first, after.as_deref())?;
        let req = ctx.req();
        let actor = req.actor();
        let f = filter.unwrap_or_default();
        let requested = match &f.tenant_id {
            Some(id) => Some(
                Uuid::parse_str(id.as_str())
                    .map_err(|_| AppError::bad_input("tenantId", "must be a UUID"))?,
            ),
            None => None,
        };
        let (tenant_id, scope) = if actor.is_platform() {
            let t = req.tenant_id().or(requested);
            (t, Scope::Platform("audit_read"))
        } else {
            let own = req
                .tenant_id()
                .ok_or_else(|| AppError::forbidden("no tenant"))?;
            if requested.is_some_and(|r| r != own) {
                return Err(crate::auth::cross_tenant_denied(&actor, own, "audit_logs").into());
            }
            (Some(own), Scope::Tenant(own))
        };
        let filter = AuditFilter {
            tenant_id,
            entity_type: f.entity_type,
            entity_id: f.entity_id,
            action: f.action,
            actor_type: f.actor_type,
            from: f.from,
            to: f.to,
        };
        let total = wants_total(ctx);
        let (rows, total_count) = req
            .db
            .scoped(scope, |c| {
                async move {
                    let rows = store::list(c, &filter, page.after, page.limit()).await?;
                    let n = match total {
                        true => store::count(c, &filter).await?,
                        false => 0,
                    };
                    Ok((rows, n))
                }
                .scope_boxed()
            })
            .await?;
        Ok(page.connection(
            rows,
            |r| (r.created_at, r.id),
            |rows| rows.into_iter().map(AuditLog::from).collect(),
            TotalCount { total_count },
        ))
    }
}
