//! Access guards, declared on fields: `#[graphql(guard = "RequireRole(Role::TenantAdmin)")]`.
//! Do not reach guarded fields through GraphQL interfaces (async-graphql skips field guards on
//! interface paths); services re-check what they own anyway.

use async_graphql::{Context, Guard, Result};

use super::context::CtxExt;
use crate::auth::{Caller, Role};
use crate::error::AppError;
use crate::ids::{PlanId, TenantId};

/// The caller must be authenticated with at least this role
/// (platform admin ⊇ tenant admin ⊇ tenant member).
pub struct RequireRole(pub Role);

impl Guard for RequireRole {
    async fn check(&self, ctx: &Context<'_>) -> Result<()> {
        match &ctx.req().caller {
            Caller::Anonymous => {
                Err(AppError::Unauthenticated("authentication required".into()).into())
            }
            Caller::User(_) | Caller::ApiKey(_) => Ok(ctx.req().actor().require(self.0)?),
        }
    }
}

/// The feature must be enabled for the tenant: the one a field belongs to
/// (`RequireFeature::of("advanced_analytics", self.row.id, self.row.plan_id)`) or, for root
/// fields, the request's tenant (`RequireFeature::new("audit_logs")`). Answers
/// FEATURE_DISABLED with the feature key in `extensions.feature`. A root field without a
/// tenant (a platform admin's platform-wide view) is not gated.
pub struct RequireFeature {
    key: &'static str,
    tenant: Option<(TenantId, PlanId)>,
}

impl RequireFeature {
    pub fn new(key: &'static str) -> Self {
        RequireFeature { key, tenant: None }
    }

    pub fn of(key: &'static str, tenant_id: TenantId, plan_id: PlanId) -> Self {
        RequireFeature {
            key,
            tenant: Some((tenant_id, plan_id)),
        }
    }
}

impl Guard for RequireFeature {
    async fn check(&self, ctx: &Context<'_>) -> Result<()> {
        let req = ctx.req();
        let target = self
            .tenant
            .or_else(|| req.tenant.as_ref().map(|t| (t.id, t.plan_id)));
        let Some((tenant_id, plan_id)) = target else {
            return Ok(());
        };
        crate::features::service::require(
            ctx.app(),
            &req.db,
            req.read_scope(),
            tenant_id,
            plan_id,
            self.key,
        )
        .await?;
        Ok(())
    }
}

/// A guard that applies only when `condition` holds (e.g. only branding writes need
/// `custom_branding`).
pub struct When<G>(pub bool, pub G);

impl<G: Guard + Send + Sync> Guard for When<G> {
    async fn check(&self, ctx: &Context<'_>) -> Result<()> {
        if self.0 {
            self.1.check(ctx).await
        } else {
            Ok(())
        }
    }
}
