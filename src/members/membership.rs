//! Membership on every request (SPEC §11): a tenant user's JWT `sub` that is a member of its
//! `tenant_id` acts with the member's role (the JWT role may only narrow it); a DISABLED or
//! removed member is FORBIDDEN. A `sub` Tenantry does not know keeps the identity provider's
//! claim (the provider provisions users; Tenantry records the ones invited or named owner).
//! `MEMBERSHIP_ENFORCED=false` skips all of this (claim-only).
//!
//! Answers are cached per (tenant, sub), absent ones too, and dropped per tenant on every
//! instance by `Event::MembersChanged` (`App::members_changed`), so a removal is seen at once.
//! `lastSeenAt` is written at most once a minute per member and instance.

use std::time::Duration;

use moka::future::Cache;
use scoped_futures::ScopedFutureExt;

use super::model::{MemberRole, StoredStatus};
use super::store;
use crate::auth::remembered::Remembered;
use crate::auth::resolve::Resolved;
use crate::auth::{Caller, Role};
use crate::db::{Db, Scope};
use crate::error::{AppError, AppResult};
use crate::ids::TenantId;

type Key = (TenantId, String);
type Entry = Option<(MemberRole, StoredStatus)>;

#[derive(Clone)]
pub struct MembershipCache {
    entries: Remembered<Key, (MemberRole, StoredStatus)>,
    seen: Cache<Key, ()>,
}

impl Default for MembershipCache {
    fn default() -> Self {
        let minute = Duration::from_secs(60);
        MembershipCache {
            entries: Remembered::new("membership", (100_000, minute), (100_000, minute)),
            seen: Cache::builder()
                .max_capacity(100_000)
                .time_to_live(minute)
                .build(),
        }
    }
}

impl MembershipCache {
    pub fn invalidate_tenant(&self, tenant_id: TenantId) {
        self.entries.forget_where(
            move |(t, _), _| *t == tenant_id,
            Some(Box::new(move |(t, _): &Key| *t == tenant_id)),
        );
    }

    pub fn invalidate_all(&self) {
        self.entries.invalidate_all();
    }

    /// The membership of `sub` in `tenant` (role and stored status), `None` when Tenantry does
    /// not know `sub` there.
    pub async fn lookup(&self, db: &Db, tenant: TenantId, sub: &str) -> AppResult<Entry> {
        let user = sub.to_owned();
        let load = db.scoped(Scope::Tenant(tenant), |c| {
            async move { Ok(store::member_of(c, tenant, &user).await?) }.scope_boxed()
        });
        self.entries.get((tenant, sub.to_owned()), load).await
    }

    /// Whether `lastSeenAt` is due for (tenant, sub) on this instance (once a minute).
    async fn due(&self, tenant: TenantId, sub: &str) -> bool {
        let key = (tenant, sub.to_owned());
        if self.seen.contains_key(&key) {
            return false;
        }
        self.seen.insert(key, ()).await;
        true
    }
}

/// The lower of two tenant roles: the JWT's may narrow the membership's, never widen it.
fn narrowed(jwt: Role, member: Role) -> Role {
    if jwt.satisfies(member) {
        member
    } else {
        jwt
    }
}

/// Applies membership to a resolved tenant user (see the module doc). Platform admins and
/// anonymous callers pass unchanged.
pub async fn enforce(app: &crate::app::App, resolved: &mut Resolved) -> AppResult<()> {
    if !app.settings.membership_enforced {
        return Ok(());
    }
    let Caller::User(p) = &mut resolved.caller else {
        return Ok(());
    };
    let Some(tenant) = p.tenant_id else {
        return Ok(());
    };
    // A platform admin's token may name a tenant (to scope its requests): never a member.
    if p.role == Role::PlatformAdmin {
        return Ok(());
    }
    match app.members.lookup(&app.db, tenant, &p.user_id).await? {
        None => Ok(()),
        Some((role, StoredStatus::Active)) => {
            p.role = narrowed(p.role, role.api_role());
            if app.members.due(tenant, &p.user_id).await {
                let (db, sub) = (app.db.clone(), p.user_id.clone());
                tokio::spawn(async move {
                    let _ = db
                        .scoped(Scope::Tenant(tenant), |c| {
                            async move { Ok(store::touch(c, tenant, &sub).await?) }.scope_boxed()
                        })
                        .await;
                });
            }
            Ok(())
        }
        Some((_, StoredStatus::Invited)) => Ok(()),
        Some((_, StoredStatus::Disabled)) => {
            Err(AppError::forbidden("this member is disabled in the tenant"))
        }
        Some((_, StoredStatus::Removed)) => Err(AppError::forbidden(
            "this user is no longer a member of the tenant",
        )),
    }
}

/// The role `sub` acts with in `tenant` now, given its JWT's, read from the database (for open
/// sockets, after a change of the tenant's members): `Some(None)` when it may no longer act,
/// `None` when the database cannot be read now.
pub async fn current_role(
    app: &crate::app::App,
    tenant: TenantId,
    sub: &str,
    jwt_role: Role,
) -> Option<Option<Role>> {
    let user = sub.to_owned();
    let row = app
        .db
        .scoped(Scope::Tenant(tenant), |c| {
            async move { Ok(store::member_of(c, tenant, &user).await?) }.scope_boxed()
        })
        .await
        .ok()?;
    Some(match row {
        None | Some((_, StoredStatus::Invited)) => Some(jwt_role),
        Some((role, StoredStatus::Active)) => Some(narrowed(jwt_role, role.api_role())),
        Some((_, StoredStatus::Disabled | StoredStatus::Removed)) => None,
    })
}

/// Authentication, tenant resolution and membership: what every way in calls.
pub async fn resolve(
    app: &crate::app::App,
    db: &Db,
    base_domain: Option<&str>,
    token: Option<&str>,
    headers: &axum::http::HeaderMap,
) -> AppResult<Resolved> {
    let mut resolved = crate::auth::resolve::resolve(
        &app.jwt,
        &app.api_keys,
        &app.tenant_cache,
        db,
        base_domain,
        token,
        headers,
    )
    .await?;
    enforce(app, &mut resolved).await?;
    Ok(resolved)
}
