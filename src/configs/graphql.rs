//! GraphQL for configuration: the `ConfigEntry` type and `setConfig`, `deleteConfig`,
//! `resetConfig`. Reads hang off `Tenant` (`configs`, `effectiveConfig`).

use async_graphql::{Context, InputObject, Json, Object, Result, ID};
use chrono::{DateTime, Utc};

use super::model::{self, ConfigDataType, ConfigLayer};
use super::service::{self, SetConfig};
use crate::auth::Role;
use crate::graphql::context::CtxExt;
use crate::graphql::guards::{RequireFeature, RequireRole, When};
use crate::graphql::target_tenant;

pub struct ConfigEntry(pub model::ConfigEntry);

#[Object]
impl ConfigEntry {
    async fn category(&self) -> &str {
        &self.0.category
    }
    async fn key(&self) -> &str {
        &self.0.key
    }
    /// The value; encrypted values are masked (`"********"`) for tenant members.
    async fn value(&self) -> Json<&serde_json::Value> {
        Json(&self.0.value)
    }
    async fn data_type(&self) -> ConfigDataType {
        self.0.data_type
    }
    async fn encrypted(&self) -> bool {
        self.0.encrypted
    }
    /// `DEFAULT` when the tenant has not set this key, `TENANT` otherwise.
    async fn layer(&self) -> ConfigLayer {
        self.0.layer
    }
    /// Null for defaults.
    async fn updated_at(&self) -> Option<DateTime<Utc>> {
        self.0.updated_at
    }
}

#[derive(InputObject)]
pub struct SetConfigInput {
    /// Defaults to the caller's tenant.
    pub tenant_id: Option<ID>,
    pub category: String,
    pub key: String,
    pub value: Json<serde_json::Value>,
    /// Defaults to the key's default type, else the value's JSON type.
    pub data_type: Option<ConfigDataType>,
    /// Stored encrypted at rest (AES-256-GCM); members see it masked.
    pub encrypted: Option<bool>,
}

#[derive(Default)]
pub struct ConfigMutation;

#[Object]
impl ConfigMutation {
    /// Sets one entry of the tenant layer. `branding` needs the `custom_branding` feature.
    #[graphql(guard = "RequireRole(Role::TenantAdmin)
        .and(When(input.category == \"branding\" && input.tenant_id.is_none(), RequireFeature::new(\"custom_branding\")))")]
    async fn set_config(&self, ctx: &Context<'_>, input: SetConfigInput) -> Result<ConfigEntry> {
        let tenant_id = target_tenant(ctx, input.tenant_id.as_ref())?;
        let set = SetConfig {
            tenant_id,
            category: input.category,
            key: input.key,
            value: input.value.0,
            data_type: input.data_type,
            encrypted: input.encrypted.unwrap_or(false),
        };
        Ok(ConfigEntry(
            service::set(ctx.app(), &ctx.req().actor(), set).await?,
        ))
    }

    /// Deletes the tenant's entry; the default (if any) applies again. True if it existed.
    #[graphql(guard = "RequireRole(Role::TenantAdmin)
        .and(When(category == \"branding\" && tenant_id.is_none(), RequireFeature::new(\"custom_branding\")))")]
    async fn delete_config(
        &self,
        ctx: &Context<'_>,
        tenant_id: Option<ID>,
        category: String,
        key: String,
    ) -> Result<bool> {
        let tenant_id = target_tenant(ctx, tenant_id.as_ref())?;
        let removed = service::remove(
            ctx.app(),
            &ctx.req().actor(),
            tenant_id,
            Some(category),
            Some(key),
        )
        .await?;
        Ok(!removed.is_empty())
    }

    /// Back to the defaults: one category, or every category when `category` is null.
    /// Returns the tenant layer of that category (or all) afterwards.
    #[graphql(guard = "RequireRole(Role::TenantAdmin)
        .and(When(category.as_deref() == Some(\"branding\") && tenant_id.is_none(), RequireFeature::new(\"custom_branding\")))")]
    async fn reset_config(
        &self,
        ctx: &Context<'_>,
        tenant_id: Option<ID>,
        category: Option<String>,
    ) -> Result<Vec<ConfigEntry>> {
        let tenant_id = target_tenant(ctx, tenant_id.as_ref())?;
        let (app, req) = (ctx.app(), ctx.req());
        let actor = req.actor();
        service::remove(app, &actor, tenant_id, category.clone(), None).await?;
        let cfg = service::of_tenants(app, &req.db, req.read_scope(), &[tenant_id]).await?;
        let reveal = service::reveals_secrets(&actor);
        Ok(cfg
            .get(&tenant_id)
            .map(|c| {
                c.entries(
                    category.as_deref(),
                    reveal,
                    app.settings.config_encryption_key.as_ref(),
                )
            })
            .unwrap_or_default()
            .into_iter()
            .map(ConfigEntry)
            .collect())
    }
}
