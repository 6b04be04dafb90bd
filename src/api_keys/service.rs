//! API key rules (SPEC §11): who may create, list, revoke and rotate keys, and what a key may
//! be. One home for them, whichever way a call comes in.
//!
//! - Tenant admins manage their own tenant's keys, platform admins any tenant's; members get
//!   FORBIDDEN, another tenant's key or tenant NOT_FOUND.
//! - A key's role is at most its creator's, and never `PLATFORM_ADMIN`.
//! - A caller authenticated by an API key may not create or rotate keys (a leaked key cannot
//!   mint more); it may revoke them (an admin key can cut itself or a leaked sibling off).
//! - Rotation gives a new secret with the same name, role, tenant and expiry; the old key
//!   keeps working for `API_KEY_ROTATION_OVERLAP` (or until its own expiry, if sooner).
//! - Revocation is immediate on every instance (caches dropped after commit, sockets closed).
//! - Audit entries hold the key's name, prefix, role and dates: never the secret or its hash.

use chrono::{DateTime, Utc};
use scoped_futures::ScopedFutureExt;
use serde_json::{json, Value};
use uuid::Uuid;

use super::model::{parse_name, ApiKeyRow, KeyRole, NewApiKey, Secret, MAX_LIVE_KEYS};
use super::store;
use crate::app::App;
use crate::audit;
use crate::auth::{Actor, ActorType, Role};
use crate::db::{Db, Scope};
use crate::error::{AppError, AppResult};
use crate::ids::TenantId;
use crate::tenants::lifecycle;
use crate::tenants::service::target_scope;

pub struct NewKey {
    pub name: String,
    pub role: Role,
    pub expires_at: Option<DateTime<Utc>>,
}

/// A caller using an API key may not make keys.
fn not_by_key(actor: &Actor, what: &str) -> AppResult<()> {
    if actor.kind == ActorType::ApiKey {
        return Err(AppError::forbidden(format!(
            "an API key cannot {what} API keys; use a user's token"
        )));
    }
    Ok(())
}

/// The scope to find a key by id in: platform actors any tenant's, tenant users their own.
fn key_scope(actor: &Actor) -> Scope {
    match (actor.is_platform(), actor.tenant_id) {
        (true, _) => Scope::Platform("api_keys"),
        (false, Some(own)) => Scope::Tenant(own),
        (false, None) => Scope::Anonymous,
    }
}

fn created_by(actor: &Actor) -> String {
    actor
        .id
        .clone()
        .unwrap_or_else(|| actor.kind.as_str().to_ascii_lowercase())
}

/// A new key for `tenant_id`; the secret is returned once and never stored.
pub async fn create(
    app: &App,
    actor: &Actor,
    tenant_id: TenantId,
    input: NewKey,
) -> AppResult<(ApiKeyRow, Secret)> {
    not_by_key(actor, "create")?;
    actor.require(Role::TenantAdmin)?;
    let scope = target_scope(actor, tenant_id, "api_keys")?;
    if !actor.has(input.role) {
        return Err(AppError::forbidden(
            "an API key's role cannot be above its creator's",
        ));
    }
    let role = KeyRole::from_role(input.role).ok_or_else(|| {
        AppError::bad_input("role", "an API key's role is TENANT_ADMIN or TENANT_MEMBER")
    })?;
    let name = parse_name(&input.name)?;
    let now = Utc::now();
    if input.expires_at.is_some_and(|e| e <= now) {
        return Err(AppError::bad_input(
            "expiresAt",
            "expiresAt must be in the future",
        ));
    }
    let secret = Secret::generate()?;
    let new = NewApiKey {
        tenant_id,
        id: Uuid::now_v7(),
        name,
        prefix: secret.display_prefix(),
        secret_hash: secret.hash(),
        role,
        created_by: created_by(actor),
        expires_at: input.expires_at,
        rotated_from: None,
    };
    let row = app
        .db
        .scoped(scope, |c| {
            async move {
                lifecycle::lock_writable(c, actor, tenant_id).await?;
                let live = store::list_live(c, tenant_id, now).await?.len() as i64;
                if live >= MAX_LIVE_KEYS {
                    return Err(AppError::bad_input(
                        "input",
                        format!(
                            "a tenant may hold at most {MAX_LIVE_KEYS} active API keys; revoke one first"
                        ),
                    ));
                }
                let row = store::insert(c, &new).await?;
                audit::record(
                    c,
                    actor,
                    audit::Change::new(tenant_id, "api_key", row.id, "CREATE", Value::Null, row.audit_json()),
                )
                .await?;
                Ok(row)
            }
            .scope_boxed()
        })
        .await?;
    Ok((row, secret))
}

/// The tenant's keys that are neither revoked nor expired, newest first (tenant admins of the
/// tenant and platform admins; the field's guard and `scope` decide).
pub async fn list(db: &Db, scope: Scope, tenant_id: TenantId) -> AppResult<Vec<ApiKeyRow>> {
    let now = Utc::now();
    db.scoped(scope, |c| {
        async move { Ok(store::list_live(c, tenant_id, now).await?) }.scope_boxed()
    })
    .await
}

/// Reads key `id` in the actor's scope and locks its tenant (writable or not, as asked) and
/// then the key, in that order (the order `create` locks in).
async fn lock_key(
    c: &mut crate::db::Conn,
    actor: &Actor,
    id: Uuid,
    writable: bool,
) -> AppResult<ApiKeyRow> {
    let found = store::find(c, id)
        .await?
        .filter(|k| actor.is_platform() || actor.tenant_id == Some(k.tenant_id))
        .ok_or_else(|| AppError::not_found("api key"))?;
    if writable {
        lifecycle::lock_writable(c, actor, found.tenant_id).await?;
    } else {
        lifecycle::lock_live(c, found.tenant_id).await?;
    }
    store::find_for_update(c, id)
        .await?
        .ok_or_else(|| AppError::not_found("api key"))
}

/// Revokes key `id` at once, on every instance. Allowed while the tenant is suspended: cutting
/// a key off only ever takes access away. A key revoked already is CONFLICT.
pub async fn revoke(app: &App, actor: &Actor, id: Uuid) -> AppResult<ApiKeyRow> {
    actor.require(Role::TenantAdmin)?;
    let row = app
        .db
        .scoped(key_scope(actor), |c| {
            async move {
                let key = lock_key(c, actor, id, false).await?;
                if key.revoked_at.is_some() {
                    return Err(AppError::conflict(None, "the API key is revoked already"));
                }
                let after = store::set_revoked(c, key.tenant_id, id, Utc::now()).await?;
                audit::record(
                    c,
                    actor,
                    audit::Change::new(
                        key.tenant_id,
                        "api_key",
                        id,
                        "REVOKE",
                        key.audit_json(),
                        after.audit_json(),
                    ),
                )
                .await?;
                Ok(after)
            }
            .scope_boxed()
        })
        .await?;
    app.api_keys.changed(&app.bus, row.tenant_id, row.id).await;
    Ok(row)
}

/// A new secret for key `id`: a new key with the same name, role, tenant and expiry; the old
/// one expires after the overlap window. A revoked or expired key, or one rotated already
/// (rotate its replacement), is CONFLICT.
pub async fn rotate(app: &App, actor: &Actor, id: Uuid) -> AppResult<(ApiKeyRow, Secret)> {
    not_by_key(actor, "rotate")?;
    actor.require(Role::TenantAdmin)?;
    let secret = Secret::generate()?;
    let (prefix, hash) = (secret.display_prefix(), secret.hash());
    let overlap =
        chrono::Duration::from_std(app.api_keys.rotation_overlap).map_err(AppError::internal)?;
    let (old, new) = app
        .db
        .scoped(key_scope(actor), |c| {
            async move {
                let key = lock_key(c, actor, id, true).await?;
                let now = Utc::now();
                if !key.is_live(now) {
                    return Err(AppError::conflict(
                        None,
                        "a revoked or expired API key cannot be rotated",
                    ));
                }
                if store::has_successor(c, key.tenant_id, id).await? {
                    return Err(AppError::conflict(
                        None,
                        "this API key was rotated already; rotate its replacement",
                    ));
                }
                if !actor.has(key.role.role()) {
                    return Err(AppError::forbidden(
                        "an API key's role cannot be above its creator's",
                    ));
                }
                let overlap_end = now + overlap;
                let old_expiry = key.expires_at.map_or(overlap_end, |e| e.min(overlap_end));
                let old = store::set_expiry(c, key.tenant_id, id, old_expiry).await?;
                let new = store::insert(
                    c,
                    &NewApiKey {
                        tenant_id: key.tenant_id,
                        id: Uuid::now_v7(),
                        name: key.name.clone(),
                        prefix,
                        secret_hash: hash,
                        role: key.role,
                        created_by: created_by(actor),
                        expires_at: key.expires_at,
                        rotated_from: Some(id),
                    },
                )
                .await?;
                audit::record_many(
                    c,
                    actor,
                    vec![
                        audit::Change::new(
                            key.tenant_id,
                            "api_key",
                            id,
                            "ROTATE",
                            key.audit_json(),
                            old.audit_json(),
                        )
                        .with_metadata(json!({ "replacedBy": new.id })),
                        audit::Change::new(
                            key.tenant_id,
                            "api_key",
                            new.id,
                            "CREATE",
                            Value::Null,
                            new.audit_json(),
                        )
                        .with_metadata(json!({ "rotatedFrom": id })),
                    ],
                )
                .await?;
                Ok((old, new))
            }
            .scope_boxed()
        })
        .await?;
    // The old key's expiry moved: cached look-ups and its open sockets must learn it.
    app.api_keys.changed(&app.bus, old.tenant_id, old.id).await;
    Ok((new, secret))
}
