//! GraphQL for tenants: `types` (the `Tenant` object and its nested fields), `queries` (`me`,
//! `tenant`, `tenants`, `publicTenant`) and `mutations` (create, update, lifecycle, export).
//! Thin: parse arguments, call a service or a loader, map rows to types.

mod mutations;
mod queries;
mod types;

use async_graphql::ID;

use crate::error::AppError;
use crate::ids::TenantId;

pub use mutations::{CreateTenantInput, TenantMutation, UpdateTenantInput};
pub use queries::{PublicTenant, TenantFilter, TenantQuery, Viewer};
pub use types::{PendingDomain, Tenant, TenantPage};

fn parse_id(id: &ID) -> Result<TenantId, AppError> {
    TenantId::parse("id", id.as_str())
}
