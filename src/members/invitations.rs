//! Invitations (SPEC §11): single-use, hashed, expiring tokens; acceptance binds the caller's
//! `sub`; revocation frees the seat.

use chrono::{Duration, Utc};
use rand::RngCore;
use scoped_futures::ScopedFutureExt;
use serde_json::{json, Value};
use uuid::Uuid;

use super::model::{
    normalize_email, InvitationRow, InvitationStatus, MemberRole, MemberRow, StoredStatus,
    INVITATION_DAYS,
};
use super::service::{entry, is_owner, owners_only, take_seats, view};
use super::store;
use crate::app::App;
use crate::audit;
use crate::auth::{Actor, Role};
use crate::db::Scope;
use crate::error::{AppError, AppResult};
use crate::ids::TenantId;
use crate::notifications::outbox::{self, EventType};
use crate::tenants::lifecycle::{lock_live, lock_writable};
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
                let tenant = lock_writable(c, &actor_c, tenant_id).await?;
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
                let data = json!({ "invitationId": invitation.id, "email": invitation.email,
                    "role": invitation.role, "expiresAt": invitation.expires_at,
                    "invitedBy": invitation.invited_by });
                outbox::emit(c, tenant_id, EventType::MemberInvited, data).await?;
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

pub(super) fn actor_label(actor: &Actor) -> String {
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
    if actor.kind == crate::auth::ActorType::ApiKey {
        return Err(AppError::forbidden(
            "an API key cannot accept an invitation: members are people",
        ));
    }
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
                lock_writable(c, &actor_c, tenant_id).await?;
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
