//! Access guards, declared on fields: `#[graphql(guard = "RequireRole(Role::TenantAdmin)")]`.
//! Do not reach guarded fields through GraphQL interfaces (async-graphql skips field guards on
//! interface paths); services re-check what they own anyway.

use async_graphql::{Context, Guard, Result};

use super::context::CtxExt;
use crate::auth::{Caller, Role};
use crate::error::AppError;

/// The caller must be authenticated with at least this role
/// (platform admin ⊇ tenant admin ⊇ tenant member).
pub struct RequireRole(pub Role);

impl Guard for RequireRole {
    async fn check(&self, ctx: &Context<'_>) -> Result<()> {
        match &ctx.req().caller {
            Caller::Anonymous => {
                Err(AppError::Unauthenticated("authentication required".into()).into())
            }
            Caller::User(p) if p.role.satisfies(self.0) => Ok(()),
            Caller::User(_) => {
                Err(AppError::forbidden(format!("requires role {}", self.0.as_str())).into())
            }
        }
    }
}
