//! GraphQL shape of a feature flag (SPEC §5 `Feature`).

use async_graphql::SimpleObject;
use chrono::{DateTime, Utc};

use super::model::{EffectiveFeature, FeatureDefinition as DefinitionRow, FeatureSource};

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

use async_graphql::{Context, InputObject, Object, Result, ID};

use super::catalogue::{self, NewFeature};

use crate::auth::Role;
use crate::graphql::context::CtxExt;
use crate::graphql::guards::RequireRole;
use crate::graphql::target_tenant;

/// A feature plans may include and tenants may be given (`createFeature`).
#[derive(SimpleObject)]
pub struct FeatureDefinition {
    pub key: String,
    pub name: String,
    pub description: String,
    /// Whether a tenant has it when neither its plan nor an override says.
    pub default_enabled: bool,
}

impl From<DefinitionRow> for FeatureDefinition {
    fn from(d: DefinitionRow) -> Self {
        FeatureDefinition {
            key: d.key,
            name: d.name,
            description: d.description,
            default_enabled: d.default_enabled,
        }
    }
}

#[derive(InputObject)]
pub struct CreateFeatureInput {
    /// `[a-z][a-z0-9_]{0,63}`, unique.
    pub key: String,
    /// 1-100 characters.
    pub name: String,
    #[graphql(default)]
    pub description: String,
}

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

    /// Adds a feature definition (platform admins), off by default; a key that exists is
    /// CONFLICT.
    #[graphql(guard = "RequireRole(Role::PlatformAdmin)")]
    async fn create_feature(
        &self,
        ctx: &Context<'_>,
        input: CreateFeatureInput,
    ) -> Result<FeatureDefinition> {
        let input = NewFeature {
            key: input.key,
            name: input.name,
            description: input.description,
        };
        Ok(catalogue::create(ctx.app(), &ctx.req().actor(), input)
            .await?
            .into())
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
