//! GraphQL: `createApiKey`, `revokeApiKey`, `rotateApiKey` and the `ApiKey` type that
//! `Tenant.apiKeys` lists (SPEC §11). Thin: parse, call `service`, map.

use async_graphql::{Context, InputObject, Object, Result, SimpleObject, ID};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::model::{ApiKeyRow, Secret};
use super::service::{self, NewKey};
use crate::auth::Role;
use crate::error::AppError;
use crate::graphql::context::CtxExt;
use crate::graphql::guards::RequireRole;
use crate::graphql::target_tenant;
use crate::ids::TenantId;

/// A key a tenant's own back end calls the API with (`Authorization: Bearer tnt_...`). Its
/// secret is shown once, by `createApiKey` or `rotateApiKey`.
#[derive(SimpleObject)]
pub struct ApiKey {
    pub id: ID,
    pub name: String,
    /// `tnt_` and the secret's next 8 characters: enough to tell keys apart.
    pub prefix: String,
    pub role: Role,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    /// Recorded at most once a minute per instance (not on every request).
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

impl From<ApiKeyRow> for ApiKey {
    fn from(r: ApiKeyRow) -> Self {
        ApiKey {
            id: ID(r.id.to_string()),
            name: r.name,
            prefix: r.prefix,
            role: r.role.role(),
            created_at: r.created_at,
            expires_at: r.expires_at,
            last_used_at: r.last_used_at,
            revoked_at: r.revoked_at,
        }
    }
}

/// A new key and its secret: the only time the secret is shown.
#[derive(SimpleObject)]
pub struct CreatedApiKey {
    pub api_key: ApiKey,
    pub secret: String,
}

impl CreatedApiKey {
    fn new(row: ApiKeyRow, secret: Secret) -> Self {
        CreatedApiKey {
            api_key: row.into(),
            secret: secret.expose(),
        }
    }
}

#[derive(InputObject)]
pub struct CreateApiKeyInput {
    /// Defaults to the caller's tenant.
    pub tenant_id: Option<ID>,
    /// 1 to 100 characters.
    pub name: String,
    /// `TENANT_ADMIN` or `TENANT_MEMBER`, at most the caller's own role.
    pub role: Role,
    /// Never, when null.
    pub expires_at: Option<DateTime<Utc>>,
}

fn key_id(id: &ID) -> Result<Uuid, AppError> {
    Uuid::parse_str(id.as_str()).map_err(|_| AppError::bad_input("id", "id must be a UUID"))
}

/// `Tenant.apiKeys`: the tenant's keys that are neither revoked nor expired, newest first.
pub async fn of_tenant(ctx: &Context<'_>, tenant_id: TenantId) -> Result<Vec<ApiKey>> {
    let req = ctx.req();
    let rows = service::list(&req.db, req.read_scope(), tenant_id).await?;
    Ok(rows.into_iter().map(ApiKey::from).collect())
}

#[derive(Default)]
pub struct ApiKeyMutation;

#[Object]
impl ApiKeyMutation {
    /// A new API key for a tenant (tenant admins for their own tenant, platform admins for
    /// any). The answer holds the secret, shown this once; keep it safe.
    #[graphql(guard = "RequireRole(Role::TenantAdmin)")]
    async fn create_api_key(
        &self,
        ctx: &Context<'_>,
        input: CreateApiKeyInput,
    ) -> Result<CreatedApiKey> {
        let tenant_id = target_tenant(ctx, input.tenant_id.as_ref())?;
        let new = NewKey {
            name: input.name,
            role: input.role,
            expires_at: input.expires_at,
        };
        let (row, secret) = service::create(ctx.app(), &ctx.req().actor(), tenant_id, new).await?;
        Ok(CreatedApiKey::new(row, secret))
    }

    /// Revokes an API key at once, on every instance (its open sockets close).
    #[graphql(guard = "RequireRole(Role::TenantAdmin)")]
    async fn revoke_api_key(&self, ctx: &Context<'_>, id: ID) -> Result<ApiKey> {
        let row = service::revoke(ctx.app(), &ctx.req().actor(), key_id(&id)?).await?;
        Ok(row.into())
    }

    /// A new secret for an API key: a new key with the same name, role and expiry; the old
    /// one keeps working for the rotation overlap (`API_KEY_ROTATION_OVERLAP`, 24 h), then
    /// expires.
    #[graphql(guard = "RequireRole(Role::TenantAdmin)")]
    async fn rotate_api_key(&self, ctx: &Context<'_>, id: ID) -> Result<CreatedApiKey> {
        let (row, secret) = service::rotate(ctx.app(), &ctx.req().actor(), key_id(&id)?).await?;
        Ok(CreatedApiKey::new(row, secret))
    }
}
