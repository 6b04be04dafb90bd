//! Tenant queries: `me`, `tenant`, `tenants` (the admin list) and `publicTenant`.

use async_graphql::connection::Connection;
use async_graphql::{Context, InputObject, Object, Result, SimpleObject, ID};

use super::parse_id;
use super::types::Tenant;
use crate::auth::Role;
use crate::error::AppError;
use crate::graphql::context::CtxExt;
use crate::graphql::guards::RequireRole;
use crate::graphql::pagination::{connection, page_args, Cursor, TotalCount, MAX_PAGE};
use crate::ids::TenantId;
use crate::tenants::model::{ListFilter, TenantStatus};
use crate::tenants::service;

/// What anyone may see of a tenant found by its Host (subdomain or custom domain).
#[derive(SimpleObject)]
pub struct PublicTenant {
    pub name: String,
    pub slug: String,
    pub domain: Option<String>,
}

#[derive(SimpleObject)]
pub struct Viewer {
    pub user_id: String,
    pub role: Role,
    pub tenant: Option<Tenant>,
}

#[derive(InputObject, Default)]
pub struct TenantFilter {
    /// Only these statuses. Without it, deleted tenants are left out.
    pub status: Option<Vec<TenantStatus>>,
    pub plan_slug: Option<String>,
    /// Case-insensitive part of the name or slug.
    pub search: Option<String>,
}

impl From<TenantFilter> for ListFilter {
    fn from(f: TenantFilter) -> Self {
        ListFilter {
            statuses: f
                .status
                .unwrap_or_else(|| vec![TenantStatus::Active, TenantStatus::Suspended]),
            plan_slug: f.plan_slug,
            search: f.search.filter(|s| !s.trim().is_empty()),
        }
    }
}

#[derive(Default)]
pub struct TenantQuery;

#[Object]
impl TenantQuery {
    /// The caller: user id, role and tenant (null for platform admins without `X-Tenant-ID`).
    #[graphql(guard = "RequireRole(Role::TenantMember)")]
    async fn me(&self, ctx: &Context<'_>) -> Result<Viewer> {
        let req = ctx.req();
        let p = req.principal()?;
        Ok(Viewer {
            user_id: p.user_id.clone(),
            role: p.role,
            tenant: req.tenant.clone().map(Tenant::one),
        })
    }

    /// A tenant by id or slug; without arguments, the caller's tenant. Tenant users can only
    /// reach their own tenant (any other answers NOT_FOUND).
    #[graphql(guard = "RequireRole(Role::TenantMember)")]
    async fn tenant(
        &self,
        ctx: &Context<'_>,
        id: Option<ID>,
        slug: Option<String>,
    ) -> Result<Option<Tenant>> {
        let req = ctx.req();
        let actor = req.actor();
        let row = match (id, slug) {
            (Some(_), Some(_)) => {
                return Err(AppError::bad_input("id", "pass id or slug, not both").into())
            }
            (Some(id), None) => {
                service::get_cached(&ctx.app().tenant_cache, &req.db, &actor, parse_id(&id)?)
                    .await?
            }
            (None, Some(slug)) => service::get_by_slug(&req.db, &actor, &slug).await?,
            (None, None) => match req.tenant_id() {
                Some(id) => {
                    service::get_cached(&ctx.app().tenant_cache, &req.db, &actor, id).await?
                }
                None => return Ok(None),
            },
        };
        Ok(Some(Tenant::one(row)))
    }

    /// Federation: a `Tenant` reference (`@key(fields: "id")`), resolved under the caller's
    /// scope. A reference the caller may not see (another tenant's, no caller, a malformed
    /// id) is null, never an error that would tell it exists.
    #[graphql(entity)]
    async fn find_tenant_by_id(&self, ctx: &Context<'_>, id: ID) -> Result<Option<Tenant>> {
        let req = ctx.req();
        let Ok(id) = parse_id(&id) else {
            return Ok(None);
        };
        if req.caller.principal().is_none() {
            return Ok(None);
        }
        match service::get_cached(&ctx.app().tenant_cache, &req.db, &req.actor(), id).await {
            Ok(row) => Ok(Some(Tenant::one(row))),
            Err(AppError::NotFound(_) | AppError::Forbidden(_)) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// All tenants, oldest first (platform admins).
    #[graphql(
        guard = "RequireRole(Role::PlatformAdmin)",
        complexity = "first.unwrap_or(20).clamp(0, MAX_PAGE) as usize * child_complexity + 1"
    )]
    async fn tenants(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        filter: Option<TenantFilter>,
    ) -> Result<Connection<Cursor<TenantId>, Tenant, TotalCount>> {
        let page = page_args(ctx, first, after.as_deref())?;
        let filter: ListFilter = filter.unwrap_or_default().into();
        let req = ctx.req();
        let page = service::list(&req.db, &req.actor(), filter, page).await?;
        Ok(connection(page, |t| (t.created_at, t.id), Tenant::list))
    }

    /// The tenant named by the request's Host (`<slug>.<BASE_DOMAIN>` or a custom domain):
    /// public branding for sign-in pages; null when the host names no tenant.
    async fn public_tenant(&self, ctx: &Context<'_>) -> Option<PublicTenant> {
        ctx.req().public_tenant.as_ref().map(|t| PublicTenant {
            name: t.name.clone(),
            slug: t.slug.clone(),
            domain: t.domain.clone(),
        })
    }
}
