//! GraphQL shape of a feature flag (SPEC §5 `Feature`).

use async_graphql::SimpleObject;
use chrono::{DateTime, Utc};

use super::model::{EffectiveFeature, FeatureSource};

#[derive(SimpleObject)]
pub struct Feature {
    pub key: String,
    pub enabled: bool,
    pub source: FeatureSource,
    pub expires_at: Option<DateTime<Utc>>,
}

impl From<EffectiveFeature> for Feature {
    fn from(f: EffectiveFeature) -> Self {
        Feature {
            key: f.key,
            enabled: f.enabled,
            source: f.source,
            expires_at: f.expires_at,
        }
    }
}

use async_graphql::{Context, Object, Result, ID};

use crate::auth::Role;
use crate::graphql::context::CtxExt;
use crate::graphql::guards::RequireRole;
use crate::graphql::target_tenant;

#[derive(Default)]
pub struct FeatureMutation;

#[Object]
impl FeatureMutation {
    /// Overrides a feature for a tenant (default: the caller's). Platform admins may override
    /// anything; tenant admins may switch off, and back on, what their plan includes.
    #[graphql(guard = "RequireRole(Role::TenantAdmin)")]
    async fn set_feature(
        &self,
        ctx: &Context<'_>,
        tenant_id: Option<ID>,
        key: String,
        enabled: bool,
        expires_at: Option<DateTime<Utc>>,
    ) -> Result<Feature> {
        let tenant_id = target_tenant(ctx, tenant_id.as_ref())?;
        let f = super::service::set_override(
            ctx.app(),
            &ctx.req().actor(),
            tenant_id,
            &key,
            enabled,
            expires_at,
        )
        .await?;
        Ok(f.into())
    }

    /// Removes the override; the plan's entitlement applies again. Returns the effective flag.
    #[graphql(guard = "RequireRole(Role::TenantAdmin)")]
    async fn clear_feature_override(
        &self,
        ctx: &Context<'_>,
        tenant_id: Option<ID>,
        key: String,
    ) -> Result<Feature> {
        let tenant_id = target_tenant(ctx, tenant_id.as_ref())?;
        Ok(
            super::service::clear_override(ctx.app(), &ctx.req().actor(), tenant_id, &key)
                .await?
                .into(),
        )
    }
}
