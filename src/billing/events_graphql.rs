//! GraphQL for the Stripe processed-events table (platform admins): `webhookEvents` and
//! `replayWebhookEvent`; and `planChangeIntent(id)` for a tenant's own intents.

use async_graphql::connection::Connection;
use async_graphql::{Context, InputObject, Object, Result, SimpleObject, ID};
use chrono::{DateTime, Utc};

use super::graphql::{intent_view, PlanChangeIntent};
use super::inbox::{self, EventFilter, EventRow};
use super::model::EventStatus;
use super::plan_change;
use crate::auth::Role;
use crate::graphql::context::CtxExt;
use crate::graphql::guards::RequireRole;
use crate::graphql::pagination::{connection, page_args, Cursor, TotalCount};
use crate::graphql::target_tenant;
use crate::ids::{IntentId, TenantId};

/// One Stripe event as received, with its processing outcome.
#[derive(SimpleObject)]
pub struct WebhookEvent {
    /// Stripe's event id (`evt_...`).
    pub id: ID,
    #[graphql(name = "type")]
    pub event_type: String,
    pub status: EventStatus,
    pub tenant_id: Option<ID>,
    pub attempts: i32,
    pub last_error: Option<String>,
    /// Why an event was ignored (unknown customer, stale state, unhandled type).
    pub note: Option<String>,
    pub created_at: DateTime<Utc>,
    pub received_at: DateTime<Utc>,
    pub processed_at: Option<DateTime<Utc>>,
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// The Stripe API version the event was rendered in (the endpoint's pinned version).
    pub api_version: Option<String>,
}

impl From<EventRow> for WebhookEvent {
    fn from(r: EventRow) -> Self {
        WebhookEvent {
            id: ID(r.id),
            event_type: r.event_type,
            status: r.status,
            tenant_id: r.tenant_id.map(|t| ID(t.to_string())),
            attempts: r.attempts,
            last_error: r.last_error,
            note: r.note,
            created_at: r.event_created,
            received_at: r.received_at,
            processed_at: r.processed_at,
            next_attempt_at: r.next_attempt_at,
            api_version: r.api_version,
        }
    }
}

#[derive(InputObject, Default)]
pub struct WebhookEventFilter {
    pub status: Option<EventStatus>,
    #[graphql(name = "type")]
    pub event_type: Option<String>,
    pub tenant_id: Option<ID>,
}

#[derive(Default)]
pub struct WebhookEventQuery;

#[Object]
impl WebhookEventQuery {
    /// Stripe events as received, newest first (platform admins).
    #[graphql(guard = "RequireRole(Role::PlatformAdmin)")]
    async fn webhook_events(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        filter: Option<WebhookEventFilter>,
    ) -> Result<Connection<Cursor<String>, WebhookEvent, TotalCount>> {
        let page = page_args::<String>(ctx, first, after.as_deref())?;
        let f = filter.unwrap_or_default();
        let tenant_id = f
            .tenant_id
            .map(|t| TenantId::parse("tenantId", t.as_str()))
            .transpose()?;
        let filter = EventFilter {
            status: f.status,
            event_type: f.event_type,
            tenant_id,
        };
        let rows = inbox::list(&ctx.req().db, filter, page).await?;
        Ok(connection(
            rows,
            |r| (r.received_at, r.id.clone()),
            |rows| rows.into_iter().map(WebhookEvent::from).collect(),
        ))
    }

    /// One of the caller's tenant's plan-change intents.
    #[graphql(guard = "RequireRole(Role::TenantMember)")]
    async fn plan_change_intent(&self, ctx: &Context<'_>, id: ID) -> Result<PlanChangeIntent> {
        let tenant_id = target_tenant(ctx, None)?;
        let intent_id = IntentId::parse("id", id.as_str())?;
        let actor = ctx.req().actor();
        let (i, from, to) =
            plan_change::intent(&ctx.req().db, &actor, tenant_id, intent_id).await?;
        Ok(intent_view(i, &from, &to))
    }
}

#[derive(Default)]
pub struct WebhookEventMutation;

#[Object]
impl WebhookEventMutation {
    /// Processes a stored, not yet processed Stripe event again (platform admins).
    #[graphql(guard = "RequireRole(Role::PlatformAdmin)")]
    async fn replay_webhook_event(&self, ctx: &Context<'_>, id: ID) -> Result<WebhookEvent> {
        let actor = ctx.req().actor();
        let row = inbox::reprocess(ctx.app(), id.as_str(), Some(&actor)).await?;
        Ok(row.into())
    }
}
