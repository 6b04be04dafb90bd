//! GraphQL (SPEC §12): `WebhookEndpoint`, `WebhookDelivery`, `Tenant.webhookEndpoints` /
//! `Tenant.webhookDeliveries` (in `tenants::graphql::types`), `createWebhookEndpoint`,
//! `updateWebhookEndpoint`, `rotateWebhookEndpointSecret`, `deleteWebhookEndpoint` and
//! `redeliverWebhook`. Thin: parse, call `service`, map.

use async_graphql::{Context, InputObject, Object, Result, SimpleObject, ID};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::model::{
    known_event, DeliveryFilter, DeliveryRow, DeliveryStatus, EndpointRow, SigningSecret,
};
use super::service::{self, EndpointUpdate, NewEndpointInput};
use crate::auth::Role;
use crate::error::AppError;
use crate::graphql::context::CtxExt;
use crate::graphql::guards::RequireRole;
use crate::graphql::target_tenant;
use crate::ids::TenantId;

/// Where a tenant's events are POSTed, signed with the endpoint's secret.
#[derive(SimpleObject)]
pub struct WebhookEndpoint {
    pub id: ID,
    pub url: String,
    /// Event names (SPEC §12), or `*` for all.
    pub events: Vec<String>,
    /// False after `updateWebhookEndpoint(enabled: false)` or when deliveries failed for the
    /// whole retry window (see `disabledReason`).
    pub enabled: bool,
    pub disabled_reason: Option<String>,
    /// `whsec_` and the secret's next 6 characters: enough to tell secrets apart.
    pub secret_prefix: String,
    pub created_at: DateTime<Utc>,
}

impl From<EndpointRow> for WebhookEndpoint {
    fn from(r: EndpointRow) -> Self {
        WebhookEndpoint {
            id: ID(r.id.to_string()),
            url: r.url,
            events: r.events,
            enabled: r.enabled,
            disabled_reason: r.disabled_reason,
            secret_prefix: r.secret_prefix,
            created_at: r.created_at,
        }
    }
}

/// An endpoint and its signing secret: the only time the secret is shown.
#[derive(SimpleObject)]
pub struct CreatedWebhookEndpoint {
    pub endpoint: WebhookEndpoint,
    pub secret: String,
}

impl CreatedWebhookEndpoint {
    fn new(row: EndpointRow, secret: SigningSecret) -> Self {
        CreatedWebhookEndpoint {
            endpoint: row.into(),
            secret: secret.expose(),
        }
    }
}

/// One event sent (or to be sent) to one endpoint.
#[derive(SimpleObject)]
pub struct WebhookDelivery {
    pub id: ID,
    /// The event's id (`Tenantry-Event-Id`, the body's `id`): the same on every attempt and
    /// redelivery.
    pub event_id: ID,
    pub event_type: String,
    pub endpoint_id: ID,
    pub status: DeliveryStatus,
    pub attempts: i32,
    /// The HTTP status of the last answer (null when none came).
    pub last_status_code: Option<i32>,
    /// Why the last attempt failed, when it did.
    pub last_error: Option<String>,
    /// When the next attempt is due (null once delivered or given up on).
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// The delivery this one repeats (`redeliverWebhook`).
    pub redelivery_of: Option<ID>,
    pub created_at: DateTime<Utc>,
}

impl From<DeliveryRow> for WebhookDelivery {
    fn from(r: DeliveryRow) -> Self {
        let pending = r.status == DeliveryStatus::Pending;
        WebhookDelivery {
            id: ID(r.id.to_string()),
            event_id: ID(r.event_id.to_string()),
            event_type: r.event_type,
            endpoint_id: ID(r.endpoint_id.unwrap_or_default().to_string()),
            status: r.status,
            attempts: r.attempts,
            last_status_code: r.last_status_code,
            last_error: r.last_error,
            next_attempt_at: pending.then_some(r.next_attempt_at),
            redelivery_of: r.redelivery_of.map(|id| ID(id.to_string())),
            created_at: r.created_at,
        }
    }
}

#[derive(InputObject, Default)]
pub struct WebhookDeliveryFilter {
    pub status: Option<DeliveryStatus>,
    pub event_type: Option<String>,
    pub endpoint_id: Option<ID>,
    pub event_id: Option<ID>,
}

impl WebhookDeliveryFilter {
    pub fn parse(self) -> Result<DeliveryFilter, AppError> {
        Ok(DeliveryFilter {
            status: self.status,
            event_type: match self.event_type {
                Some(name) => Some(known_event("eventType", &name)?.as_str().to_owned()),
                None => None,
            },
            endpoint_id: self
                .endpoint_id
                .as_ref()
                .map(|i| uuid("endpointId", i))
                .transpose()?,
            event_id: self
                .event_id
                .as_ref()
                .map(|i| uuid("eventId", i))
                .transpose()?,
        })
    }
}

#[derive(InputObject)]
pub struct CreateWebhookEndpointInput {
    /// Defaults to the caller's tenant.
    pub tenant_id: Option<ID>,
    /// `https://` (plain `http://` only in development).
    pub url: String,
    /// Event names (SPEC §12), or `*` for all.
    pub events: Vec<String>,
}

#[derive(InputObject)]
pub struct UpdateWebhookEndpointInput {
    pub id: ID,
    pub url: Option<String>,
    pub events: Option<Vec<String>>,
    /// Re-enabling an endpoint resumes its waiting deliveries with a new retry window.
    pub enabled: Option<bool>,
}

fn uuid(field: &'static str, id: &ID) -> Result<Uuid, AppError> {
    Uuid::parse_str(id.as_str())
        .map_err(|_| AppError::bad_input(field, format!("{field} must be a UUID")))
}

/// `Tenant.webhookEndpoints`: oldest first.
pub async fn of_tenant(ctx: &Context<'_>, tenant_id: TenantId) -> Result<Vec<WebhookEndpoint>> {
    let req = ctx.req();
    let rows = service::list(&req.db, req.read_scope(), tenant_id).await?;
    Ok(rows.into_iter().map(Into::into).collect())
}

#[derive(Default)]
pub struct WebhookEndpointMutation;

#[Object]
impl WebhookEndpointMutation {
    /// A new webhook endpoint (tenant admins for their own tenant, platform admins for any).
    /// The answer holds the signing secret, shown this once.
    #[graphql(guard = "RequireRole(Role::TenantAdmin)")]
    async fn create_webhook_endpoint(
        &self,
        ctx: &Context<'_>,
        input: CreateWebhookEndpointInput,
    ) -> Result<CreatedWebhookEndpoint> {
        let tenant_id = target_tenant(ctx, input.tenant_id.as_ref())?;
        let new = NewEndpointInput {
            url: input.url,
            events: input.events,
        };
        let (row, secret) = service::create(ctx.app(), &ctx.req().actor(), tenant_id, new).await?;
        Ok(CreatedWebhookEndpoint::new(row, secret))
    }

    /// Changes an endpoint's URL, events or enabled flag.
    #[graphql(guard = "RequireRole(Role::TenantAdmin)")]
    async fn update_webhook_endpoint(
        &self,
        ctx: &Context<'_>,
        input: UpdateWebhookEndpointInput,
    ) -> Result<WebhookEndpoint> {
        let change = EndpointUpdate {
            url: input.url,
            events: input.events,
            enabled: input.enabled,
            rotate_secret: false,
        };
        let id = uuid("id", &input.id)?;
        let (row, _) = service::update(ctx.app(), &ctx.req().actor(), id, change).await?;
        Ok(row.into())
    }

    /// A new signing secret, shown this once. The previous secret keeps signing too (a second
    /// `v1=` in `Tenantry-Signature`) for `API_KEY_ROTATION_OVERLAP` (24 h).
    #[graphql(guard = "RequireRole(Role::TenantAdmin)")]
    async fn rotate_webhook_endpoint_secret(
        &self,
        ctx: &Context<'_>,
        id: ID,
    ) -> Result<CreatedWebhookEndpoint> {
        let change = EndpointUpdate {
            rotate_secret: true,
            ..Default::default()
        };
        let id = uuid("id", &id)?;
        let (row, secret) = service::update(ctx.app(), &ctx.req().actor(), id, change).await?;
        let secret = secret.ok_or_else(|| AppError::internal(anyhow::anyhow!("no new secret")))?;
        Ok(CreatedWebhookEndpoint::new(row, secret))
    }

    /// Deletes an endpoint with its delivery log; nothing more is sent to it.
    #[graphql(guard = "RequireRole(Role::TenantAdmin)")]
    async fn delete_webhook_endpoint(&self, ctx: &Context<'_>, id: ID) -> Result<WebhookEndpoint> {
        let row = service::delete(ctx.app(), &ctx.req().actor(), uuid("id", &id)?).await?;
        Ok(row.into())
    }

    /// Sends a delivered or failed delivery's event to its endpoint once more (a new delivery
    /// with the same event id).
    #[graphql(guard = "RequireRole(Role::TenantAdmin)")]
    async fn redeliver_webhook(
        &self,
        ctx: &Context<'_>,
        delivery_id: ID,
    ) -> Result<WebhookDelivery> {
        let id = uuid("deliveryId", &delivery_id)?;
        let row = service::redeliver(ctx.app(), &ctx.req().actor(), id).await?;
        Ok(row.into())
    }
}
