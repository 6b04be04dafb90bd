//! Who sees which audit entries: tenant users their own tenant's only (asking for another
//! tenant is refused as if it did not exist); platform admins the tenant of the request
//! (`X-Tenant-ID`) or of `filter.tenant_id`, else every tenant's.

use scoped_futures::ScopedFutureExt;

use super::model::{AuditFilter, AuditRow};
use super::store;
use crate::auth::{cross_tenant_denied, Actor};
use crate::db::page::{Page, PageArgs};
use crate::db::{Db, Scope};
use crate::error::{AppError, AppResult};
use crate::ids::TenantId;

/// A page of entries, newest first. `request_tenant` is the tenant the request is scoped to;
/// `filter.tenant_id` is the tenant the caller asked for (replaced by the visible one).
pub async fn list(
    db: &Db,
    actor: &Actor,
    request_tenant: Option<TenantId>,
    mut filter: AuditFilter,
    page: PageArgs,
) -> AppResult<Page<AuditRow>> {
    let requested = filter.tenant_id;
    let scope = if actor.is_platform() {
        filter.tenant_id = request_tenant.or(requested);
        Scope::Platform("audit_read")
    } else {
        let own = request_tenant.ok_or_else(|| AppError::forbidden("no tenant"))?;
        if requested.is_some_and(|r| r != own) {
            return Err(cross_tenant_denied(actor, own, "audit_logs"));
        }
        filter.tenant_id = Some(own);
        Scope::Tenant(own)
    };
    page.load(
        db,
        scope,
        |c, before, limit| store::list(c, &filter, before, limit).scope_boxed(),
        |c| store::count(c, &filter).scope_boxed(),
    )
    .await
}
