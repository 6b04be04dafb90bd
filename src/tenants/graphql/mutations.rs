//! Tenant mutations: create, update, verify a domain, the lifecycle and the data export.

use async_graphql::{Context, InputObject, MaybeUndefined, Object, Result, ID};

use super::parse_id;
use super::types::Tenant;
use crate::auth::Role;
use crate::graphql::context::CtxExt;
use crate::graphql::guards::RequireRole;
use crate::tenants::service::{self, CreateTenant, UpdateTenant};
use crate::tenants::{domains, export};

#[derive(InputObject)]
pub struct CreateTenantInput {
    pub name: String,
    pub slug: String,
    pub domain: Option<String>,
    #[graphql(default_with = "Some(\"free\".to_string())")]
    pub plan_slug: Option<String>,
    pub owner_id: Option<String>,
    /// Billing region (`US` by default).
    pub region: Option<String>,
}

#[derive(InputObject)]
pub struct UpdateTenantInput {
    pub name: Option<String>,
    /// A host name; null clears it (and any pending claim). Set by a platform admin it is
    /// verified at once; set by a tenant admin it becomes `pendingDomain` until
    /// `verifyTenantDomain` finds the DNS proof.
    pub domain: MaybeUndefined<String>,
    /// Replaces the tenant's settings object.
    pub settings: Option<async_graphql::Json<serde_json::Value>>,
}

#[derive(Default)]
pub struct TenantMutation;

#[Object]
impl TenantMutation {
    /// Creates and provisions a tenant (platform admins).
    #[graphql(guard = "RequireRole(Role::PlatformAdmin)")]
    async fn create_tenant(&self, ctx: &Context<'_>, input: CreateTenantInput) -> Result<Tenant> {
        let req = ctx.req();
        let input = CreateTenant {
            name: input.name,
            slug: input.slug,
            domain: input.domain,
            plan_slug: input.plan_slug,
            owner_id: input.owner_id,
            region: input.region,
        };
        Ok(Tenant::one(
            service::create(ctx.app(), &req.actor(), input).await?,
        ))
    }

    #[graphql(guard = "RequireRole(Role::TenantAdmin)")]
    async fn update_tenant(
        &self,
        ctx: &Context<'_>,
        id: ID,
        input: UpdateTenantInput,
    ) -> Result<Tenant> {
        let req = ctx.req();
        let domain = match input.domain {
            MaybeUndefined::Undefined => None,
            MaybeUndefined::Null => Some(None),
            MaybeUndefined::Value(d) => Some(Some(d)),
        };
        let input = UpdateTenant {
            name: input.name,
            domain,
            settings: input.settings.map(|j| j.0),
        };
        Ok(Tenant::one(
            service::update(ctx.app(), &req.actor(), parse_id(&id)?, input).await?,
        ))
    }

    /// Checks the DNS TXT record of the tenant's pending domain claim; when it holds the token,
    /// the claimed domain becomes the tenant's verified `domain` (`BAD_USER_INPUT` while the
    /// record is missing, `CONFLICT` when another tenant verified the domain first).
    #[graphql(guard = "RequireRole(Role::TenantAdmin)")]
    async fn verify_tenant_domain(&self, ctx: &Context<'_>, id: ID) -> Result<Tenant> {
        let req = ctx.req();
        Ok(Tenant::one(
            domains::verify(ctx.app(), &req.actor(), parse_id(&id)?).await?,
        ))
    }

    #[graphql(guard = "RequireRole(Role::PlatformAdmin)")]
    async fn suspend_tenant(&self, ctx: &Context<'_>, id: ID, reason: String) -> Result<Tenant> {
        let req = ctx.req();
        Ok(Tenant::one(
            service::suspend(ctx.app(), &req.actor(), parse_id(&id)?, &reason).await?,
        ))
    }

    #[graphql(guard = "RequireRole(Role::PlatformAdmin)")]
    async fn reactivate_tenant(&self, ctx: &Context<'_>, id: ID) -> Result<Tenant> {
        let req = ctx.req();
        Ok(Tenant::one(
            service::reactivate(ctx.app(), &req.actor(), parse_id(&id)?).await?,
        ))
    }

    /// Soft delete: restorable for 30 days.
    #[graphql(guard = "RequireRole(Role::PlatformAdmin)")]
    async fn delete_tenant(&self, ctx: &Context<'_>, id: ID) -> Result<Tenant> {
        let req = ctx.req();
        Ok(Tenant::one(
            service::delete(ctx.app(), &req.actor(), parse_id(&id)?).await?,
        ))
    }

    /// Everything the tenant owns, as one JSON document (GDPR export). Platform admins get
    /// every table; the tenant's own admins get encrypted values masked, and the audit log and
    /// usage history only while `audit_logs` / `advanced_analytics` are enabled (left-out tables
    /// are listed under `omitted`). `tables` narrows the export; a table of more than
    /// `EXPORT_MAX_ROWS` rows answers `BAD_USER_INPUT`.
    #[graphql(guard = "RequireRole(Role::TenantAdmin)")]
    async fn export_tenant_data(
        &self,
        ctx: &Context<'_>,
        id: ID,
        tables: Option<Vec<String>>,
    ) -> Result<async_graphql::Json<serde_json::Value>> {
        let req = ctx.req();
        Ok(async_graphql::Json(
            export::export(ctx.app(), &req.actor(), parse_id(&id)?, tables).await?,
        ))
    }

    #[graphql(guard = "RequireRole(Role::PlatformAdmin)")]
    async fn restore_tenant(&self, ctx: &Context<'_>, id: ID) -> Result<Tenant> {
        let req = ctx.req();
        Ok(Tenant::one(
            service::restore(ctx.app(), &req.actor(), parse_id(&id)?).await?,
        ))
    }
}
