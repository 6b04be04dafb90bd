//! Member rules: invitations (single-use, hashed, expiring tokens), acceptance binding the
//! caller's `sub`, roles, removal, seats counted against the `users` quota under concurrency,
//! and at least one OWNER per tenant. Every write is audited in its transaction and dropped
//! from every instance's membership cache after the commit (`App::members_changed`).

use chrono::{Duration, Utc};
use diesel::sql_types::{BigInt, Text, Uuid as SqlUuid};
use diesel_async::RunQueryDsl;
use rand::RngCore;
use scoped_futures::ScopedFutureExt;
use serde_json::{json, Value};
use uuid::Uuid;

use super::model::Filter;
use super::model::{
    normalize_email, InvitationRow, InvitationStatus, MemberRole, MemberRow, MemberStatus,
    StoredStatus, INVITATION_DAYS,
};
use super::store;
use crate::app::App;
use crate::audit;
use crate::auth::{Actor, Role};
use crate::db::page::{Page, PageArgs};
use crate::db::{Conn, Db, Scope};
use crate::error::{AppError, AppResult};
use crate::ids::TenantId;
use crate::quotas::model::QuotaEnforcement;
use crate::tenants::lifecycle::lock_live;
use crate::tenants::service::target_scope;

/// SHA-256 of an invitation token, as stored.
pub fn token_hash(token: &str) -> String {
    crate::graphql::admission::apq::sha256_hex(token)
}

/// A new invitation token: 256 random bits, URL-safe.
fn new_token() -> String {
    use base64::Engine;
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Where an invitee accepts: the tenant's portal under `BASE_DOMAIN`, else a relative path.
pub fn accept_url(base_domain: Option<&str>, tenant_slug: &str, token: &str) -> String {
    match base_domain {
        Some(base) => format!("https://{tenant_slug}.{base}/accept-invitation?token={token}"),
        None => format!("/accept-invitation?token={token}"),
    }
}

fn view(m: &MemberRow) -> Value {
    json!({ "userId": m.user_id, "email": m.email, "role": m.role, "status": m.status.as_str() })
}

fn entry<'a>(m: &MemberRow, action: &'a str, before: Value, after: Value) -> audit::Change<'a> {
    audit::Change {
        tenant_id: Some(m.tenant_id),
        entity_type: "member",
        entity_id: m.id.to_string(),
        action,
        before,
        after,
        metadata: json!({}),
    }
}

/// Whether the caller may act as an owner of `tenant`: platform actors, and the tenant's
/// ACTIVE OWNER members.
async fn is_owner(c: &mut Conn, actor: &Actor, tenant: TenantId) -> AppResult<bool> {
    if actor.is_platform() {
        return Ok(true);
    }
    let Some(sub) = &actor.id else {
        return Ok(false);
    };
    Ok(store::by_user(c, tenant, sub)
        .await?
        .is_some_and(|m| m.role == MemberRole::Owner && m.status == StoredStatus::Active))
}

fn owners_only() -> AppError {
    AppError::forbidden("only an owner may grant, change or remove the OWNER role")
}

/// Keeps the `users` quota's `used` equal to the seats taken, and refuses `adding` more when a
/// HARD limit would be passed. Locks the quota row, so concurrent invitations of one tenant
/// take seats one after the other and exactly the remaining ones are admitted.
async fn take_seats(c: &mut Conn, tenant: TenantId, adding: i64) -> AppResult<()> {
    #[derive(diesel::QueryableByName)]
    struct Q {
        #[diesel(sql_type = BigInt)]
        limit: i64,
        #[diesel(sql_type = Text)]
        enforcement: String,
    }
    let quota: Option<Q> = diesel::sql_query(
        r#"select "limit", enforcement from quotas
            where tenant_id = $1 and resource = 'users' for update"#,
    )
    .bind::<SqlUuid, _>(tenant.into_inner())
    .get_result(c)
    .await
    .optional()?;
    let taken = store::seats(c, tenant).await?;
    let after = taken + adding;
    if let Some(q) = &quota {
        if adding > 0 && q.enforcement == QuotaEnforcement::Hard.as_str() && after > q.limit {
            return Err(AppError::QuotaExceeded {
                resource: "users".into(),
                limit: q.limit,
                used: taken,
                remaining: (q.limit - taken).max(0),
            });
        }
        diesel::sql_query(
            "update quotas set used = $2, updated_at = now() where tenant_id = $1 and resource = 'users'",
        )
        .bind::<SqlUuid, _>(tenant.into_inner())
        .bind::<BigInt, _>(after)
        .execute(c)
        .await?;
    }
    Ok(())
}

use diesel::OptionalExtension;

/// What `inviteMember` answers: the invitation, its token (shown once) and accept URL.
pub struct Invited {
    pub invitation: InvitationRow,
    pub token: String,
    pub accept_url: String,
}

/// `inviteMember`: tenant admins and platform admins invite an e-mail address with a role
/// (OWNER only by an owner). Takes a seat at once (`users` quota, HARD refuses with
/// QUOTA_EXCEEDED); an address that is a member or has a pending invitation is CONFLICT; a
/// past invitation that expired is replaced. Emits `member.invited` (audit row action
/// INVITE, with `metadata.event`).
pub async fn invite(
    app: &App,
    actor: &Actor,
    tenant_id: TenantId,
    email: &str,
    role: MemberRole,
) -> AppResult<Invited> {
    actor.require(Role::TenantAdmin)?;
    let scope = target_scope(actor, tenant_id, "member_admin")?;
    let email = normalize_email(email)
        .ok_or_else(|| AppError::bad_input("email", "not an e-mail address"))?;
    let token = new_token();
    let hash = token_hash(&token);
    let (actor_c, by) = (actor.clone(), actor_label(actor));
    let (invitation, slug) = app
        .db
        .scoped(scope, |c| {
            async move {
                let tenant = lock_live(c, tenant_id).await?;
                if role == MemberRole::Owner && !is_owner(c, &actor_c, tenant_id).await? {
                    return Err(owners_only());
                }
                let now = Utc::now();
                if let Some(existing) = store::by_email(c, tenant_id, &email).await? {
                    let pending = match existing.status {
                        StoredStatus::Invited => store::invitation_of(c, tenant_id, existing.id)
                            .await?
                            .is_some_and(|i| i.status_at(now) == InvitationStatus::Pending),
                        _ => true,
                    };
                    if pending {
                        return Err(AppError::conflict(
                            Some("email"),
                            "this address is already a member or has a pending invitation",
                        ));
                    }
                    store::delete_member(c, tenant_id, existing.id).await?;
                }
                take_seats(c, tenant_id, 1).await?;
                let member = store::insert_member(
                    c,
                    &MemberRow {
                        tenant_id,
                        id: Uuid::now_v7(),
                        user_id: None,
                        email: Some(email.clone()),
                        role,
                        status: StoredStatus::Invited,
                        invited_by: Some(by.clone()),
                        joined_at: None,
                        last_seen_at: None,
                        created_at: now,
                    },
                )
                .await?;
                let invitation = InvitationRow {
                    tenant_id,
                    id: Uuid::now_v7(),
                    member_id: member.id,
                    email,
                    role,
                    status: InvitationStatus::Pending,
                    token_hash: hash,
                    invited_by: by,
                    expires_at: now + Duration::days(INVITATION_DAYS),
                    accepted_by: None,
                    accepted_at: None,
                    created_at: now,
                };
                store::insert_invitation(c, &invitation).await?;
                let mut e = entry(&member, "INVITE", Value::Null, view(&member));
                e.metadata = json!({ "event": "member.invited", "invitationId": invitation.id,
                    "expiresAt": invitation.expires_at });
                audit::record(c, &actor_c, e).await?;
                Ok((invitation, tenant.slug))
            }
            .scope_boxed()
        })
        .await?;
    tracing::info!(event = "member.invited", tenant = %tenant_id, invitation = %invitation.id, "member invited");
    let accept_url = accept_url(app.settings.base_domain.as_deref(), &slug, &token);
    Ok(Invited {
        invitation,
        token,
        accept_url,
    })
}

fn actor_label(actor: &Actor) -> String {
    actor
        .id
        .clone()
        .unwrap_or_else(|| actor.kind.as_str().to_owned())
}

/// `acceptInvitation(token)`: binds the caller's `sub` to the invited member, ACTIVE from
/// now. The caller is a tenant user of the invitation's tenant who is not a member yet. A
/// token of another tenant (or none) is NOT_FOUND; accepted twice CONFLICT; revoked or
/// expired BAD_USER_INPUT saying which.
pub async fn accept(app: &App, actor: &Actor, token: &str) -> AppResult<MemberRow> {
    let (Some(tenant_id), Some(sub)) = (actor.tenant_id, actor.id.clone()) else {
        return Err(AppError::forbidden(
            "accepting an invitation needs a tenant user's token",
        ));
    };
    let hash = token_hash(token.trim());
    let actor_c = actor.clone();
    let member = app
        .db
        .scoped(Scope::Tenant(tenant_id), |c| {
            async move {
                lock_live(c, tenant_id).await?;
                let inv = store::invitation_by_hash(c, &hash)
                    .await?
                    .ok_or_else(|| AppError::not_found("invitation"))?;
                match inv.status_at(Utc::now()) {
                    InvitationStatus::Pending => {}
                    InvitationStatus::Accepted => {
                        return Err(AppError::conflict(
                            Some("token"),
                            "this invitation was accepted already",
                        ))
                    }
                    InvitationStatus::Revoked => {
                        return Err(AppError::bad_input("token", "this invitation was revoked"))
                    }
                    InvitationStatus::Expired => {
                        return Err(AppError::bad_input("token", "this invitation has expired"))
                    }
                }
                if let Some(existing) = store::by_user(c, tenant_id, &sub).await? {
                    if existing.status != StoredStatus::Removed {
                        return Err(AppError::conflict(
                            None,
                            "the caller is a member of this tenant already",
                        ));
                    }
                    store::delete_member(c, tenant_id, existing.id).await?;
                }
                let before = store::by_id(c, tenant_id, inv.member_id)
                    .await?
                    .ok_or_else(|| AppError::not_found("invitation"))?;
                let member = store::activate(c, tenant_id, inv.member_id, &sub, Utc::now()).await?;
                store::set_invitation(c, tenant_id, inv.id, InvitationStatus::Accepted, Some(&sub))
                    .await?;
                audit::record(
                    c,
                    &actor_c,
                    entry(&member, "ACCEPT", view(&before), view(&member)),
                )
                .await?;
                Ok(member)
            }
            .scope_boxed()
        })
        .await?;
    app.members_changed(tenant_id).await;
    Ok(member)
}

/// `revokeInvitation(id)`: a pending invitation stops working and frees its seat.
pub async fn revoke_invitation(
    app: &App,
    actor: &Actor,
    tenant_id: TenantId,
    id: Uuid,
) -> AppResult<InvitationRow> {
    actor.require(Role::TenantAdmin)?;
    let scope = target_scope(actor, tenant_id, "member_admin")?;
    let actor_c = actor.clone();
    app.db
        .scoped(scope, |c| {
            async move {
                lock_live(c, tenant_id).await?;
                let inv = store::invitation(c, tenant_id, id)
                    .await?
                    .ok_or_else(|| AppError::not_found("invitation"))?;
                if inv.status != InvitationStatus::Pending {
                    return Err(AppError::conflict(
                        None,
                        format!(
                            "the invitation is {} already",
                            inv.status_at(Utc::now()).as_str()
                        ),
                    ));
                }
                let revoked =
                    store::set_invitation(c, tenant_id, id, InvitationStatus::Revoked, None)
                        .await?;
                if let Some(m) = store::by_id(c, tenant_id, inv.member_id).await? {
                    if m.status == StoredStatus::Invited {
                        store::delete_member(c, tenant_id, m.id).await?;
                        audit::record(
                            c,
                            &actor_c,
                            entry(&m, "REVOKE_INVITATION", view(&m), Value::Null),
                        )
                        .await?;
                    }
                }
                take_seats(c, tenant_id, 0).await?;
                Ok(revoked)
            }
            .scope_boxed()
        })
        .await
}

/// The member `user_id` of the tenant, locked, for a change; absent and removed are NOT_FOUND.
async fn target(c: &mut Conn, tenant: TenantId, user_id: &str) -> AppResult<MemberRow> {
    store::by_user(c, tenant, user_id)
        .await?
        .filter(|m| m.status != StoredStatus::Removed)
        .ok_or_else(|| AppError::not_found("member"))
}

/// Refuses a change that would leave the tenant without an ACTIVE OWNER.
async fn keep_an_owner(c: &mut Conn, m: &MemberRow) -> AppResult<()> {
    let owners = store::owners(c, m.tenant_id).await?;
    if m.role == MemberRole::Owner && owners.len() <= 1 && owners.contains(&m.id) {
        return Err(AppError::conflict(
            Some("userId"),
            "a tenant keeps at least one OWNER: make another member OWNER first",
        ));
    }
    Ok(())
}

/// `updateMemberRole`: tenant admins change roles; granting, changing or removing OWNER is an
/// owner's (transferring ownership is explicit: make the new owner OWNER, then step down).
pub async fn update_role(
    app: &App,
    actor: &Actor,
    tenant_id: TenantId,
    user_id: &str,
    role: MemberRole,
) -> AppResult<MemberRow> {
    change(app, actor, tenant_id, user_id, Edit::Role(role)).await
}

/// `updateMemberStatus`: DISABLED members keep their row but are FORBIDDEN everywhere and free
/// their seat; ACTIVE again takes a seat (a HARD `users` limit applies).
pub async fn update_status(
    app: &App,
    actor: &Actor,
    tenant_id: TenantId,
    user_id: &str,
    status: MemberStatus,
) -> AppResult<MemberRow> {
    let status = match status {
        MemberStatus::Active => StoredStatus::Active,
        MemberStatus::Disabled => StoredStatus::Disabled,
        MemberStatus::Invited => {
            return Err(AppError::bad_input(
                "status",
                "a member becomes INVITED only through inviteMember",
            ))
        }
    };
    change(app, actor, tenant_id, user_id, Edit::Status(status)).await
}

/// `removeMember`: the member's tokens are FORBIDDEN from now on, on every instance.
pub async fn remove(
    app: &App,
    actor: &Actor,
    tenant_id: TenantId,
    user_id: &str,
) -> AppResult<MemberRow> {
    change(app, actor, tenant_id, user_id, Edit::Remove).await
}

#[derive(Clone, Copy, PartialEq)]
enum Edit {
    Role(MemberRole),
    Status(StoredStatus),
    Remove,
}

/// One change of member `user_id`, under the tenant's lock, audited, seats recounted.
async fn change(
    app: &App,
    actor: &Actor,
    tenant_id: TenantId,
    user_id: &str,
    edit: Edit,
) -> AppResult<MemberRow> {
    actor.require(Role::TenantAdmin)?;
    let scope = target_scope(actor, tenant_id, "member_admin")?;
    let (actor_c, user_id) = (actor.clone(), user_id.to_owned());
    let saved = app
        .db
        .scoped(scope, |c| {
            async move {
                lock_live(c, tenant_id).await?;
                let m = target(c, tenant_id, &user_id).await?;
                let touches_owner =
                    m.role == MemberRole::Owner || edit == Edit::Role(MemberRole::Owner);
                if touches_owner && !is_owner(c, &actor_c, tenant_id).await? {
                    return Err(owners_only());
                }
                if edit == Edit::Role(m.role) || edit == Edit::Status(m.status) {
                    return Ok(m);
                }
                if matches!(edit, Edit::Status(_)) && m.status == StoredStatus::Invited {
                    return Err(AppError::bad_input(
                        "userId",
                        "an invited member has not joined yet: revoke the invitation instead",
                    ));
                }
                let (role, status, action, adding) = match edit {
                    Edit::Role(r) => (r, m.status, "ROLE_CHANGE", 0),
                    Edit::Status(StoredStatus::Active) => {
                        (m.role, StoredStatus::Active, "ENABLE", 1)
                    }
                    Edit::Status(s) => (m.role, s, "DISABLE", 0),
                    Edit::Remove => (m.role, StoredStatus::Removed, "REMOVE", 0),
                };
                if !matches!(
                    edit,
                    Edit::Role(MemberRole::Owner) | Edit::Status(StoredStatus::Active)
                ) {
                    keep_an_owner(c, &m).await?;
                }
                // A re-enabled member takes its seat back: counted before the change.
                take_seats(c, tenant_id, adding).await?;
                let saved = store::set_member(c, tenant_id, m.id, role, status).await?;
                audit::record(c, &actor_c, entry(&saved, action, view(&m), view(&saved))).await?;
                if adding == 0 {
                    take_seats(c, tenant_id, 0).await?;
                }
                Ok(saved)
            }
            .scope_boxed()
        })
        .await?;
    app.members_changed(tenant_id).await;
    Ok(saved)
}

/// `Tenant.members`.
pub async fn list(
    db: &Db,
    scope: Scope,
    tenant_id: TenantId,
    filter: Filter,
    page: PageArgs,
) -> AppResult<Page<MemberRow>> {
    let f2 = filter.clone();
    page.load(
        db,
        scope,
        move |c, after, limit| {
            async move { store::list(c, tenant_id, &filter, after, limit).await }.scope_boxed()
        },
        move |c| async move { store::count(c, tenant_id, &f2).await }.scope_boxed(),
    )
    .await
}

/// `Tenant.member(userId)`.
pub async fn find(
    db: &Db,
    scope: Scope,
    tenant_id: TenantId,
    user_id: &str,
) -> AppResult<Option<MemberRow>> {
    let user_id = user_id.to_owned();
    db.scoped(scope, |c| {
        async move { Ok(store::find_by_user(c, tenant_id, &user_id).await?) }.scope_boxed()
    })
    .await
}

/// New tenants' owners (`createTenant`'s `ownerId`) as their first OWNERs, one statement, in
/// the caller's transaction; each takes one seat of its `users` quota.
pub async fn first_owners(c: &mut Conn, owners: &[(TenantId, String)]) -> AppResult<()> {
    let owners: Vec<&(TenantId, String)> = owners
        .iter()
        .filter(|(_, u)| !u.trim().is_empty())
        .collect();
    if owners.is_empty() {
        return Ok(());
    }
    let tenants: Vec<Uuid> = owners.iter().map(|(t, _)| t.into_inner()).collect();
    let users: Vec<&str> = owners.iter().map(|(_, u)| u.as_str()).collect();
    diesel::sql_query(
        "insert into members (tenant_id, id, user_id, role, status, joined_at)
         select t, gen_random_uuid(), u, 'OWNER', 'ACTIVE', now()
           from unnest($1::uuid[], $2::text[]) as o(t, u)",
    )
    .bind::<diesel::sql_types::Array<SqlUuid>, _>(&tenants)
    .bind::<diesel::sql_types::Array<Text>, _>(&users)
    .execute(c)
    .await?;
    diesel::sql_query(
        "update quotas set used = used + 1 where resource = 'users' and tenant_id = any($1)",
    )
    .bind::<diesel::sql_types::Array<SqlUuid>, _>(&tenants)
    .execute(c)
    .await?;
    Ok(())
}
