//! GraphQL for the Stripe processed-events table (platform admins): `webhookEvents` and
//! `replayWebhookEvent`; and `planChangeIntent(id)` for a tenant's own intents.

use async_graphql::connection::{Connection, Edge, EmptyFields};
use async_graphql::{Context, InputObject, Object, Result, SimpleObject, ID};
use base64::Engine as _;
use chrono::{DateTime, Utc};
use scoped_futures::ScopedFutureExt;
use uuid::Uuid;

use super::events::{self, EventFilter, EventRow};
use super::graphql::{intent_view, PlanChangeIntent};
use super::model::EventStatus;
use super::{inbox, store};
use crate::auth::Role;
use crate::db::Scope;
use crate::error::AppError;
use crate::graphql::context::CtxExt;
use crate::graphql::guards::RequireRole;
use crate::graphql::pagination::{wants_total, TotalCount, DEFAULT_PAGE, MAX_PAGE};
use crate::graphql::target_tenant;
use crate::tenants::service::target_scope;

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

fn encode(ts: DateTime<Utc>, id: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(format!("{}|{id}", ts.timestamp_micros()))
}

fn decode(s: &str) -> Result<(DateTime<Utc>, String), AppError> {
    let bad = || AppError::bad_input("after", "invalid cursor");
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|_| bad())?;
    let raw = String::from_utf8(raw).map_err(|_| bad())?;
    let (ts, id) = raw.split_once('|').ok_or_else(bad)?;
    let ts =
        DateTime::<Utc>::from_timestamp_micros(ts.parse().map_err(|_| bad())?).ok_or_else(bad)?;
    Ok((ts, id.to_owned()))
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
    ) -> Result<Connection<String, WebhookEvent, TotalCount>> {
        let first = first.unwrap_or(DEFAULT_PAGE);
        if !(0..=MAX_PAGE).contains(&first) {
            return Err(AppError::bad_input(
                "first",
                format!("first must be between 0 and {MAX_PAGE}"),
            )
            .into());
        }
        let before = after.as_deref().map(decode).transpose()?;
        let f = filter.unwrap_or_default();
        let tenant_id = f
            .tenant_id
            .map(|t| {
                Uuid::parse_str(t.as_str())
                    .map_err(|_| AppError::bad_input("tenantId", "must be a UUID"))
            })
            .transpose()?;
        let filter = EventFilter {
            status: f.status.map(|s| s.as_str().to_owned()),
            event_type: f.event_type,
            tenant_id,
        };
        let has_after = before.is_some();
        let total = wants_total(ctx);
        let (mut rows, total_count) = ctx
            .req()
            .db
            .scoped(Scope::Platform("webhook_events"), |c| {
                async move {
                    let rows = events::list(c, &filter, before, first as i64 + 1).await?;
                    let n = match total {
                        true => events::count(c, &filter).await?,
                        false => 0,
                    };
                    Ok((rows, n))
                }
                .scope_boxed()
            })
            .await?;
        let has_next = rows.len() > first as usize;
        rows.truncate(first as usize);
        let mut conn =
            Connection::with_additional_fields(has_after, has_next, TotalCount { total_count });
        conn.edges.extend(rows.into_iter().map(|r| {
            Edge::with_additional_fields(
                encode(r.received_at, &r.id),
                WebhookEvent::from(r),
                EmptyFields,
            )
        }));
        Ok(conn)
    }

    /// One of the caller's tenant's plan-change intents.
    #[graphql(guard = "RequireRole(Role::TenantMember)")]
    async fn plan_change_intent(&self, ctx: &Context<'_>, id: ID) -> Result<PlanChangeIntent> {
        let tenant_id = target_tenant(ctx, None)?;
        let intent_id = Uuid::parse_str(id.as_str())
            .map_err(|_| AppError::bad_input("id", "must be a UUID"))?;
        let scope = target_scope(&ctx.req().actor(), tenant_id, "billing")?;
        let (i, plans) = ctx
            .req()
            .db
            .scoped(scope, |c| {
                async move {
                    let i = store::intent(c, tenant_id, intent_id)
                        .await?
                        .ok_or_else(|| AppError::not_found("plan change intent"))?;
                    let plans =
                        crate::plans::store::by_ids(c, &[i.from_plan_id, i.to_plan_id]).await?;
                    Ok((i, plans))
                }
                .scope_boxed()
            })
            .await?;
        let find = |id: Uuid| plans.iter().find(|p| p.id == id).cloned();
        let (Some(from), Some(to)) = (find(i.from_plan_id), find(i.to_plan_id)) else {
            return Err(AppError::not_found("plan").into());
        };
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
