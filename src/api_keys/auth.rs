//! Authentication with an API key: `Authorization: Bearer tnt_...` on `/graphql` (POST, GET,
//! batches, APQ) and in `/graphql/ws`'s `connection_init`, wherever `auth::resolve` runs.
//!
//! - The secret is hashed (SHA-256) and looked up by hash under the platform scope
//!   (`api_key_authentication`): no tenant is known before the key is. The answer is cached
//!   in process ([`HIT_TTL`]); every revocation or rotation drops it here and on every
//!   instance through the bus (`Event::ApiKeyChanged`), and a bus resync drops everything, so
//!   a revoked key fails at once everywhere. Hashes that name no key are remembered too
//!   (bounded): a new key's hash cannot have been asked before it existed.
//! - The key's tenant comes from the tenant cache like a JWT's claim: a deleted tenant is
//!   NOT_FOUND, a suspended one may read; `X-Tenant-ID` must name the key's tenant.
//! - `last_used_at` is written at most once per key per [`LAST_USED_EVERY`] per instance (an
//!   in-memory mark), by a task of its own, and the UPDATE itself skips a row another
//!   instance stamped within that time: never a write per request.
//! - [`watch_socket`] follows a key's revocation and rotation for an open WebSocket.
//!
//! Refusals never echo the presented token.

use std::sync::{Arc, Weak};
use std::time::Duration;

use axum::http::HeaderMap;
use chrono::Utc;
use moka::future::Cache;
use scoped_futures::ScopedFutureExt;
use tokio::sync::{broadcast, watch};
use uuid::Uuid;

use super::model::{hash, ApiKeyRow};
use super::store;
use crate::app::App;
use crate::auth::remembered::Remembered;
use crate::auth::resolve::{Resolved, TenantCache};
use crate::auth::{cross_tenant_denied, Actor, Caller, Principal};
use crate::bus::{Bus, Event};
use crate::db::{Db, Scope};
use crate::error::{AppError, AppResult};
use crate::ids::TenantId;
use crate::tenants::model::TenantStatus;

/// How long a key found by its hash is used from memory (revocations drop it at once).
const HIT_TTL: Duration = Duration::from_secs(60);
/// How long a hash that names no key is remembered, and how many at most.
const MISS_TTL: Duration = Duration::from_secs(300);
const MISS_CAPACITY: u64 = 20_000;
/// At most one `last_used_at` write per key per this time per instance.
pub const LAST_USED_EVERY: Duration = Duration::from_secs(60);
/// The expiry a socket is given when its key is revoked: close at once (see `graphql::ws`).
pub const REVOKED: i64 = i64::MIN;
/// What a key without expiry tells the socket layer (ten years from now).
const NO_EXPIRY_SECS: i64 = 10 * 365 * 24 * 3600;

/// The process's API key state: the look-up cache and the last-used marks.
pub struct ApiKeys {
    /// Keys by the hash of their secret, and hashes that name no key.
    keys: Remembered<Vec<u8>, Arc<ApiKeyRow>>,
    used: Cache<Uuid, ()>,
    /// `API_KEY_ROTATION_OVERLAP`: how long a rotated key keeps working.
    pub rotation_overlap: Duration,
}

impl ApiKeys {
    pub fn new(rotation_overlap: Duration) -> ApiKeys {
        ApiKeys {
            keys: Remembered::new("api_key", (50_000, HIT_TTL), (MISS_CAPACITY, MISS_TTL)),
            used: Cache::builder()
                .max_capacity(100_000)
                .time_to_live(LAST_USED_EVERY)
                .build(),
            rotation_overlap,
        }
    }

    /// Drops what this instance remembers about key `id`.
    pub async fn forget(&self, id: Uuid) {
        self.keys.forget_where(move |_, row| row.id == id, None);
    }

    /// Drops every cached key (this instance may have missed invalidations).
    pub fn invalidate_all(&self) {
        self.keys.invalidate_all();
    }

    /// After a committed revocation or rotation: forgotten here at once and on every other
    /// instance through the bus (whose sockets on that key are re-checked too).
    pub async fn changed(&self, bus: &Bus, tenant_id: TenantId, key_id: Uuid) {
        self.forget(key_id).await;
        bus.publish(Event::ApiKeyChanged { tenant_id, key_id })
            .await;
    }

    async fn lookup(&self, db: &Db, token: &str) -> AppResult<Option<Arc<ApiKeyRow>>> {
        let hash = hash(token);
        let h = hash.clone();
        let load = async move {
            Ok(db
                .scoped(Scope::Platform("api_key_authentication"), |c| {
                    async move { Ok(store::find_by_hash(c, &h).await?) }.scope_boxed()
                })
                .await?
                .map(Arc::new))
        };
        self.keys.get(hash, load).await
    }

    /// The caller and tenant of a request bearing API key `token` (SPEC §11).
    pub async fn resolve(
        &self,
        db: &Db,
        tenants: &TenantCache,
        token: &str,
        headers: &HeaderMap,
    ) -> AppResult<Resolved> {
        let key = self
            .lookup(db, token)
            .await?
            .ok_or_else(|| AppError::Unauthenticated("invalid API key".into()))?;
        let now = Utc::now();
        if key.revoked_at.is_some() {
            return Err(AppError::Unauthenticated("API key revoked".into()));
        }
        if key.expires_at.is_some_and(|e| e <= now) {
            return Err(AppError::Unauthenticated("API key expired".into()));
        }
        let tenant = tenants
            .by_id(db, key.tenant_id)
            .await?
            .filter(|t| t.status != TenantStatus::Deleted)
            .ok_or_else(|| AppError::not_found("tenant"))?;
        let caller = Caller::ApiKey(principal(&key));
        let header = headers
            .get("x-tenant-id")
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty());
        if let Some(h) = header {
            if h != tenant.id.to_string() && !h.eq_ignore_ascii_case(&tenant.slug) {
                let actor = Actor::from_caller(&caller, None);
                let _ = cross_tenant_denied(&actor, tenant.id, "tenant_header");
                return Err(AppError::forbidden(
                    "X-Tenant-ID does not match the API key's tenant",
                ));
            }
        }
        self.mark_used(db, &key).await;
        Ok(Resolved {
            caller,
            tenant: Some(tenant),
            public_tenant: None,
        })
    }

    /// Stamps `last_used_at` unless this instance did within [`LAST_USED_EVERY`]; the write
    /// runs on its own task, so a request never waits for it (nor fails with it).
    async fn mark_used(&self, db: &Db, key: &ApiKeyRow) {
        if !self.used.entry(key.id).or_insert(()).await.is_fresh() {
            return;
        }
        let (db, tenant_id, id) = (db.clone(), key.tenant_id, key.id);
        tokio::spawn(async move {
            let every = chrono::Duration::from_std(LAST_USED_EVERY).unwrap_or_default();
            let written = db
                .scoped(Scope::Tenant(tenant_id), |c| {
                    async move { Ok(store::touch(c, tenant_id, id, Utc::now(), every).await?) }
                        .scope_boxed()
                })
                .await;
            if let Err(e) = written {
                tracing::warn!(error = %e, api_key = %id, "could not record the API key's last use");
            }
        });
    }
}

/// The principal of a key: its tenant and role; `user_id` is `apikey:<id>` (what logs and
/// audit rows show), and the expiry is the key's (sockets close then).
fn principal(key: &ApiKeyRow) -> Principal {
    Principal {
        user_id: format!("apikey:{}", key.id),
        role: key.role.role(),
        tenant_id: Some(key.tenant_id),
        expires_at: expiry_secs(key),
    }
}

fn expiry_secs(key: &ApiKeyRow) -> i64 {
    key.expires_at
        .map(|e| e.timestamp())
        .unwrap_or_else(|| Utc::now().timestamp() + NO_EXPIRY_SECS)
}

/// The key id of an API key caller.
pub fn key_id(caller: &Caller) -> Option<(TenantId, Uuid)> {
    let Caller::ApiKey(p) = caller else {
        return None;
    };
    let id = p.user_id.strip_prefix("apikey:")?.parse().ok()?;
    Some((p.tenant_id?, id))
}

/// For a socket opened with an API key: whenever the key changes (on any instance) or this
/// instance may have missed a change, re-reads it and moves the socket's deadline in
/// `expiry` — [`REVOKED`] when the key was revoked (the socket closes with 4403 at once), or
/// its new expiry when it was rotated. Ends with the socket (`expiry` closed).
pub fn watch_socket(app: &Arc<App>, caller: &Caller, expiry: watch::Sender<Option<i64>>) {
    let Some((tenant_id, key_id)) = key_id(caller) else {
        return;
    };
    let mut events = app.bus.subscribe();
    let mut resyncs = app.bus.resyncs();
    let app: Weak<App> = Arc::downgrade(app);
    tokio::spawn(async move {
        // Checked once right away: a revocation published between the handshake's look-up and
        // this subscription is not missed.
        let mut due = true;
        loop {
            let recheck = due
                || tokio::select! {
                    _ = expiry.closed() => return,
                    event = events.recv() => match event {
                        Ok(Event::ApiKeyChanged { key_id: k, .. }) => k == key_id,
                        Ok(Event::Resync) | Err(broadcast::error::RecvError::Lagged(_)) => true,
                        Ok(_) => false,
                        Err(broadcast::error::RecvError::Closed) => return,
                    },
                    changed = resyncs.changed() => {
                        if changed.is_err() {
                            return;
                        }
                        true
                    }
                };
            due = false;
            if !recheck {
                continue;
            }
            let Some(app) = app.upgrade() else { return };
            let current = app
                .db
                .scoped(Scope::Tenant(tenant_id), |c| {
                    async move { Ok(store::find(c, key_id).await?) }.scope_boxed()
                })
                .await;
            match current {
                Ok(Some(key)) if key.revoked_at.is_none() => {
                    expiry.send_replace(Some(expiry_secs(&key)));
                }
                Ok(_) => {
                    expiry.send_replace(Some(REVOKED));
                    return;
                }
                Err(e) => {
                    tracing::warn!(error = %e, api_key = %key_id, "could not re-check a socket's API key; retrying");
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                    due = true;
                }
            }
        }
    });
}
