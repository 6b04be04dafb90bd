//! A tenant's invoices, newest first: the read service behind `Tenant.invoices`.

use scoped_futures::ScopedFutureExt;

use super::model::{InvoiceRow, InvoiceStatus};
use super::store;
use crate::db::page::{Page, PageArgs};
use crate::db::{Db, Scope};
use crate::error::AppResult;
use crate::ids::TenantId;

/// A page of `tenant_id`'s invoices (only those in `status` when given), in `scope`.
pub async fn list(
    db: &Db,
    scope: Scope,
    tenant_id: TenantId,
    status: Option<InvoiceStatus>,
    page: PageArgs,
) -> AppResult<Page<InvoiceRow>> {
    let status = status.map(|s| s.as_str());
    page.load(
        db,
        scope,
        |c, before, limit| store::invoices_of(c, tenant_id, status, before, limit).scope_boxed(),
        |c| store::count_invoices(c, tenant_id, status).scope_boxed(),
    )
    .await
}
