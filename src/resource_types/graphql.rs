//! GraphQL: `resourceTypes` (public, like `plans`) and `createResourceType` (platform admins).

use async_graphql::{Context, InputObject, Object, Result, SimpleObject};

use super::model::ResourceTypeRow;
use super::service::{self, NewResourceType};
use crate::auth::Role;
use crate::graphql::context::CtxExt;
use crate::graphql::guards::RequireRole;
use crate::quotas::model::QuotaEnforcement;

/// A kind of resource quotas limit and usage counts (`api_calls`, `storage`, ...).
#[derive(SimpleObject)]
pub struct ResourceType {
    pub key: String,
    /// What one unit counts (`bytes`, `calls`); a new quota takes it when none is given.
    pub unit: String,
    /// The enforcement a new quota on this resource gets when none is given.
    pub default_enforcement: QuotaEnforcement,
    pub description: String,
}

impl From<ResourceTypeRow> for ResourceType {
    fn from(r: ResourceTypeRow) -> Self {
        ResourceType {
            key: r.key,
            unit: r.unit,
            default_enforcement: r.default_enforcement,
            description: r.description,
        }
    }
}

#[derive(InputObject)]
pub struct CreateResourceTypeInput {
    /// `[a-z][a-z0-9_]{0,63}`, unique.
    pub key: String,
    pub unit: String,
    #[graphql(default_with = "QuotaEnforcement::Hard")]
    pub default_enforcement: QuotaEnforcement,
    #[graphql(default)]
    pub description: String,
}

#[derive(Default)]
pub struct ResourceTypeQuery;

#[Object]
impl ResourceTypeQuery {
    /// The resource types quotas and usage may name, by key. Public: no authentication needed.
    async fn resource_types(&self, ctx: &Context<'_>) -> Result<Vec<ResourceType>> {
        let types = service::list(ctx.app()).await?;
        Ok(types.iter().cloned().map(ResourceType::from).collect())
    }
}

#[derive(Default)]
pub struct ResourceTypeMutation;

#[Object]
impl ResourceTypeMutation {
    /// Adds a resource type (platform admins); a key that exists is CONFLICT.
    #[graphql(guard = "RequireRole(Role::PlatformAdmin)")]
    async fn create_resource_type(
        &self,
        ctx: &Context<'_>,
        input: CreateResourceTypeInput,
    ) -> Result<ResourceType> {
        let input = NewResourceType {
            key: input.key,
            unit: input.unit,
            default_enforcement: input.default_enforcement,
            description: input.description,
        };
        Ok(service::create(ctx.app(), &ctx.req().actor(), input)
            .await?
            .into())
    }
}
