//! The per-request GraphQL context: who calls, which tenant the request is scoped to, and the
//! request's database handle (counting its statements). Built once by the HTTP handler.

use std::sync::Arc;

use async_graphql::Context;

use crate::app::App;
use crate::auth::{Actor, Caller, Principal};
use crate::db::{Db, Scope};
use crate::error::AppError;
use crate::graphql::loaders::Loaders;
use crate::ids::TenantId;
use crate::tenants::model::TenantRow;

pub struct RequestCtx {
    pub request_id: String,
    pub caller: Caller,
    /// The tenant the request is scoped to: the JWT claim, or `X-Tenant-ID` for platform admins.
    pub tenant: Option<TenantRow>,
    /// The tenant named by the Host header, for unauthenticated public look-ups only.
    pub public_tenant: Option<TenantRow>,
    pub db: Db,
}

impl RequestCtx {
    pub fn actor(&self) -> Actor {
        Actor::from_caller(&self.caller, Some(self.request_id.clone()))
    }

    pub fn principal(&self) -> Result<&Principal, AppError> {
        self.caller
            .principal()
            .ok_or_else(|| AppError::Unauthenticated("authentication required".into()))
    }

    /// The caller's own tenant (tenant users) or the one chosen by `X-Tenant-ID` (admins).
    pub fn tenant_id(&self) -> Option<TenantId> {
        self.tenant.as_ref().map(|t| t.id)
    }

    /// The scope nested reads run in: the platform bypass for platform admins, the caller's
    /// tenant for tenant users, nothing for anonymous callers.
    pub fn read_scope(&self) -> Scope {
        match &self.caller {
            Caller::User(p) if p.role == crate::auth::Role::PlatformAdmin => {
                Scope::Platform("platform_admin_read")
            }
            Caller::User(_) | Caller::ApiKey(_) => self
                .tenant_id()
                .map(Scope::Tenant)
                .unwrap_or(Scope::Anonymous),
            Caller::Anonymous => Scope::Anonymous,
        }
    }
}

/// Accessors for resolvers.
pub trait CtxExt {
    fn req(&self) -> &RequestCtx;
    fn app(&self) -> &App;
    fn loaders(&self) -> &Loaders;
}

impl CtxExt for Context<'_> {
    fn req(&self) -> &RequestCtx {
        self.data_unchecked::<Arc<RequestCtx>>()
    }
    fn app(&self) -> &App {
        self.data_unchecked::<Arc<App>>()
    }
    fn loaders(&self) -> &Loaders {
        self.data_unchecked::<Arc<Loaders>>()
    }
}
