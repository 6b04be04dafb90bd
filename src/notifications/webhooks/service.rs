//! Webhook endpoint rules (SPEC §12), whichever way a call comes in.
//!
//! - Tenant admins manage their own tenant's endpoints, platform admins any tenant's; another
//!   tenant's endpoint or delivery is NOT_FOUND (RLS hides it), another tenant FORBIDDEN.
//! - The URL is checked when saved (scheme, no credentials, no private, loopback or
//!   link-local target unless `OUTBOUND_WEBHOOKS_ALLOW_PRIVATE=true`, by literal and by DNS)
//!   and again at every connection.
//! - The signing secret is shown once (create, rotate), stored sealed with
//!   `CONFIG_ENCRYPTION_KEY`; after a rotation the old one also signs for
//!   `API_KEY_ROTATION_OVERLAP` so receivers can switch without losing events.
//! - Writes need a writable tenant (a suspended one keeps its endpoints but cannot change
//!   them) and leave an audit entry without the secret.

use chrono::Utc;
use scoped_futures::ScopedFutureExt;
use serde_json::Value;
use uuid::Uuid;

use super::model::{
    parse_events, DeliveryFilter, DeliveryRow, DeliveryStatus, EndpointRow, SigningSecret,
    MAX_ENDPOINTS,
};
use super::store::{self, EndpointChanges, NewEndpoint};
use super::target::{self, Policy};
use crate::app::App;
use crate::audit;
use crate::auth::{Actor, Role};
use crate::db::page::{Page, PageArgs};
use crate::db::{Conn, Db, Scope};
use crate::error::{AppError, AppResult};
use crate::ids::TenantId;
use crate::tenants::lifecycle;
use crate::tenants::service::target_scope;

const ENTITY: &str = "webhook_endpoint";

/// What the settings allow as a target.
pub fn policy(app: &App) -> Policy {
    Policy {
        https_only: !app.settings.delivery.allow_http,
        allow_private: app.settings.delivery.allow_private,
    }
}

async fn check_url(app: &App, url: &str) -> AppResult<String> {
    let policy = policy(app);
    let uri = target::check_url(url.trim(), policy).map_err(|m| AppError::bad_input("url", m))?;
    target::check_resolves(&uri, policy)
        .await
        .map_err(|m| AppError::bad_input("url", m))?;
    Ok(url.trim().to_owned())
}

fn sealing_key(app: &App) -> AppResult<[u8; 32]> {
    app.settings.config_encryption_key.ok_or_else(|| {
        AppError::Unavailable(
            "webhook endpoints need CONFIG_ENCRYPTION_KEY on the server (their signing secrets \
             are stored encrypted)"
                .into(),
        )
    })
}

/// The scope to find an endpoint or delivery by id in: platform actors any tenant's, tenant
/// users their own.
fn id_scope(actor: &Actor) -> Scope {
    match (actor.is_platform(), actor.tenant_id) {
        (true, _) => Scope::Platform("webhooks"),
        (false, Some(own)) => Scope::Tenant(own),
        (false, None) => Scope::Anonymous,
    }
}

pub struct NewEndpointInput {
    pub url: String,
    pub events: Vec<String>,
}

pub async fn create(
    app: &App,
    actor: &Actor,
    tenant_id: TenantId,
    input: NewEndpointInput,
) -> AppResult<(EndpointRow, SigningSecret)> {
    actor.require(Role::TenantAdmin)?;
    let scope = target_scope(actor, tenant_id, "webhooks")?;
    let key = sealing_key(app)?;
    let events = parse_events(&input.events)?;
    let url = check_url(app, &input.url).await?;
    let secret = SigningSecret::generate()?;
    let id = Uuid::now_v7();
    let new = NewEndpoint {
        tenant_id,
        id,
        url,
        events,
        secret_prefix: secret.display_prefix(),
        secret_sealed: secret.seal(&key, tenant_id, id),
    };
    let row = app
        .db
        .scoped(scope, |c| {
            async move {
                lifecycle::lock_writable(c, actor, tenant_id).await?;
                if store::count(c, tenant_id).await? >= MAX_ENDPOINTS {
                    return Err(AppError::bad_input(
                        "input",
                        format!("a tenant may have at most {MAX_ENDPOINTS} webhook endpoints"),
                    ));
                }
                let row = store::insert(c, &new).await?;
                let change = audit::Change::new(
                    tenant_id,
                    ENTITY,
                    id,
                    "CREATE",
                    Value::Null,
                    row.audit_json(),
                );
                audit::record(c, actor, change).await?;
                Ok(row)
            }
            .scope_boxed()
        })
        .await?;
    Ok((row, secret))
}

pub async fn list(db: &Db, scope: Scope, tenant_id: TenantId) -> AppResult<Vec<EndpointRow>> {
    db.scoped(scope, |c| {
        async move { Ok(store::list(c, tenant_id).await?) }.scope_boxed()
    })
    .await
}

/// What `updateWebhookEndpoint` may change.
#[derive(Default)]
pub struct EndpointUpdate {
    pub url: Option<String>,
    pub events: Option<Vec<String>>,
    pub enabled: Option<bool>,
    pub rotate_secret: bool,
}

/// Changes endpoint `id`; the new secret when one was asked for.
pub async fn update(
    app: &App,
    actor: &Actor,
    id: Uuid,
    input: EndpointUpdate,
) -> AppResult<(EndpointRow, Option<SigningSecret>)> {
    actor.require(Role::TenantAdmin)?;
    let key = sealing_key(app)?;
    let events = input.events.as_deref().map(parse_events).transpose()?;
    let url = match &input.url {
        Some(u) => Some(check_url(app, u).await?),
        None => None,
    };
    let secret = input
        .rotate_secret
        .then(SigningSecret::generate)
        .transpose()?;
    let overlap = chrono::Duration::from_std(app.settings.api_key_rotation_overlap)
        .unwrap_or(chrono::Duration::hours(24));
    let secret_ref = secret.as_ref();
    // A delivery in flight keeps its lease at least this long: it is not re-sent at once.
    let soon = chrono::Duration::from_std(app.settings.delivery.timeout * 2)
        .unwrap_or(chrono::Duration::seconds(20));
    let row = app
        .db
        .scoped(id_scope(actor), |c| {
            async move {
                let before = lock_endpoint(c, actor, id).await?;
                let now = Utc::now();
                let mut ch = EndpointChanges {
                    url,
                    events,
                    enabled: input.enabled,
                    updated_at: Some(now),
                    ..Default::default()
                };
                if input.enabled == Some(true) {
                    ch.disabled_reason = Some(None);
                }
                if let Some(s) = secret_ref {
                    ch.secret_prefix = Some(s.display_prefix());
                    ch.secret_sealed = Some(s.seal(&key, before.tenant_id, id));
                    ch.previous_secret_sealed = Some(Some(before.secret_sealed.clone()));
                    ch.previous_secret_expires_at = Some(Some(now + overlap));
                }
                let row = store::update(c, id, &ch).await?;
                if input.enabled == Some(true) && !before.enabled {
                    store::restart_pending(c, id, now + soon).await?;
                }
                let action = if secret_ref.is_some() {
                    "ROTATE"
                } else {
                    "UPDATE"
                };
                let change = audit::Change::new(
                    row.tenant_id,
                    ENTITY,
                    id,
                    action,
                    before.audit_json(),
                    row.audit_json(),
                );
                audit::record(c, actor, change).await?;
                Ok(row)
            }
            .scope_boxed()
        })
        .await?;
    Ok((row, secret))
}

/// Endpoint `id` as the actor sees it, locked after its tenant (which must be writable): the
/// order `create` locks in.
async fn lock_endpoint(c: &mut Conn, actor: &Actor, id: Uuid) -> AppResult<EndpointRow> {
    let seen = store::find(c, id)
        .await?
        .ok_or_else(|| AppError::not_found(ENTITY))?;
    lifecycle::lock_writable(c, actor, seen.tenant_id).await?;
    store::find_for_update(c, id)
        .await?
        .ok_or_else(|| AppError::not_found(ENTITY))
}

/// Deletes endpoint `id` and its delivery log; waiting deliveries are dropped.
pub async fn delete(app: &App, actor: &Actor, id: Uuid) -> AppResult<EndpointRow> {
    actor.require(Role::TenantAdmin)?;
    app.db
        .scoped(id_scope(actor), |c| {
            async move {
                let before = lock_endpoint(c, actor, id).await?;
                store::delete(c, id).await?;
                let change = audit::Change::new(
                    before.tenant_id,
                    ENTITY,
                    id,
                    "DELETE",
                    before.audit_json(),
                    Value::Null,
                );
                audit::record(c, actor, change).await?;
                Ok(before)
            }
            .scope_boxed()
        })
        .await
}

/// `Tenant.webhookDeliveries`.
pub async fn deliveries(
    db: &Db,
    scope: Scope,
    tenant_id: TenantId,
    filter: DeliveryFilter,
    page: PageArgs,
) -> AppResult<Page<DeliveryRow>> {
    let f2 = filter.clone();
    page.load(
        db,
        scope,
        move |c, after, limit| {
            async move { store::list_deliveries(c, tenant_id, &filter, after, limit).await }
                .scope_boxed()
        },
        move |c| async move { store::count_deliveries(c, tenant_id, &f2).await }.scope_boxed(),
    )
    .await
}

/// `redeliverWebhook`: the same event (same id, so receivers deduplicate) to the same
/// endpoint once more, as a new delivery due now. The endpoint must exist and be enabled.
pub async fn redeliver(app: &App, actor: &Actor, delivery_id: Uuid) -> AppResult<DeliveryRow> {
    actor.require(Role::TenantAdmin)?;
    app.db
        .scoped(id_scope(actor), |c| {
            async move {
                let of = store::find_delivery(c, delivery_id)
                    .await?
                    .ok_or_else(|| AppError::not_found("webhook delivery"))?;
                lifecycle::lock_writable(c, actor, of.tenant_id).await?;
                let endpoint = match of.endpoint_id {
                    Some(e) => store::find(c, e).await?,
                    None => None,
                };
                match endpoint {
                    None => return Err(AppError::not_found(ENTITY)),
                    Some(e) if !e.enabled => {
                        return Err(AppError::bad_input(
                            "deliveryId",
                            "the endpoint is disabled; enable it with updateWebhookEndpoint first",
                        ))
                    }
                    Some(_) => {}
                }
                if of.status == DeliveryStatus::Pending {
                    return Err(AppError::conflict(
                        Some("deliveryId"),
                        "the delivery is still pending: it is retried on its own",
                    ));
                }
                let row = store::insert_redelivery(c, &of).await?;
                let change = audit::Change::new(
                    of.tenant_id,
                    "webhook_delivery",
                    row.id,
                    "REDELIVER",
                    Value::Null,
                    serde_json::json!({ "eventId": of.event_id, "redeliveryOf": of.id }),
                );
                audit::record(c, actor, change).await?;
                Ok(row)
            }
            .scope_boxed()
        })
        .await
}
