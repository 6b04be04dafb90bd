//! GraphQL (SPEC §11): `Member`, `Invitation`, `Tenant.members` / `Tenant.member` (in
//! `tenants::graphql::types`), and `inviteMember`, `acceptInvitation`, `revokeInvitation`,
//! `updateMemberRole`, `removeMember`.

use async_graphql::{Context, InputObject, Object, Result, SimpleObject, ID};
use chrono::{DateTime, Utc};

use super::model::{InvitationRow, InvitationStatus, MemberRole, MemberRow, MemberStatus};
use super::service;
use crate::auth::Role;
use crate::error::AppError;
use crate::graphql::context::CtxExt;
use crate::graphql::guards::RequireRole;
use crate::graphql::target_tenant;

/// A person who belongs to a tenant. `userId` is the identity provider's `sub` (null until
/// an invitation is accepted).
#[derive(SimpleObject)]
pub struct Member {
    pub id: ID,
    pub user_id: Option<String>,
    pub email: Option<String>,
    pub role: MemberRole,
    pub status: MemberStatus,
    pub invited_by: Option<String>,
    pub joined_at: Option<DateTime<Utc>>,
    pub last_seen_at: Option<DateTime<Utc>>,
}

impl From<MemberRow> for Member {
    fn from(m: MemberRow) -> Self {
        Member {
            id: ID(m.id.to_string()),
            user_id: m.user_id,
            email: m.email,
            role: m.role,
            status: m.status.shown(),
            invited_by: m.invited_by,
            joined_at: m.joined_at,
            last_seen_at: m.last_seen_at,
        }
    }
}

/// An invitation to join a tenant. `token` and `acceptUrl` carry the secret: they are set in
/// `inviteMember`'s answer only and never shown again.
#[derive(SimpleObject)]
pub struct Invitation {
    pub id: ID,
    pub email: String,
    pub role: MemberRole,
    pub status: InvitationStatus,
    pub expires_at: DateTime<Utc>,
    pub token: Option<String>,
    pub accept_url: Option<String>,
}

impl Invitation {
    fn of(i: InvitationRow, secret: Option<(String, String)>) -> Self {
        let (token, accept_url) = secret.unzip();
        Invitation {
            id: ID(i.id.to_string()),
            status: i.status_at(Utc::now()),
            email: i.email,
            role: i.role,
            expires_at: i.expires_at,
            token,
            accept_url,
        }
    }
}

#[derive(InputObject)]
pub struct InviteMemberInput {
    /// Defaults to the caller's tenant.
    pub tenant_id: Option<ID>,
    pub email: String,
    pub role: MemberRole,
}

#[derive(InputObject, Default)]
pub struct MemberFilter {
    pub role: Option<MemberRole>,
    pub status: Option<MemberStatus>,
}

#[derive(Default)]
pub struct MemberMutation;

#[Object]
impl MemberMutation {
    /// Invites an e-mail address to the tenant with a role (tenant admins; OWNER only by an
    /// owner). The invitee takes a seat of the `users` quota at once (HARD: QUOTA_EXCEEDED);
    /// the token is single-use, valid 7 days, and shown only here.
    #[graphql(guard = "RequireRole(Role::TenantAdmin)")]
    async fn invite_member(
        &self,
        ctx: &Context<'_>,
        input: InviteMemberInput,
    ) -> Result<Invitation> {
        let tenant = target_tenant(ctx, input.tenant_id.as_ref())?;
        let done = super::invitations::invite(
            ctx.app(),
            &ctx.req().actor(),
            tenant,
            &input.email,
            input.role,
        )
        .await?;
        Ok(Invitation::of(
            done.invitation,
            Some((done.token, done.accept_url)),
        ))
    }

    /// Binds the caller (a user of the invitation's tenant, by the token's `sub`) to the
    /// invitation's membership. Another tenant's or an unknown token is NOT_FOUND, a used one
    /// CONFLICT, a revoked or expired one BAD_USER_INPUT.
    #[graphql(guard = "RequireRole(Role::TenantMember)")]
    async fn accept_invitation(&self, ctx: &Context<'_>, token: String) -> Result<Member> {
        Ok(
            super::invitations::accept(ctx.app(), &ctx.req().actor(), &token)
                .await?
                .into(),
        )
    }

    /// Revokes a pending invitation of the caller's tenant (tenant admins); its seat is freed.
    #[graphql(guard = "RequireRole(Role::TenantAdmin)")]
    async fn revoke_invitation(&self, ctx: &Context<'_>, id: ID) -> Result<Invitation> {
        let tenant = target_tenant(ctx, None)?;
        let Ok(id) = uuid::Uuid::parse_str(&id) else {
            return Err(AppError::not_found("invitation").into());
        };
        let row = super::invitations::revoke_invitation(ctx.app(), &ctx.req().actor(), tenant, id)
            .await?;
        Ok(Invitation::of(row, None))
    }

    /// Changes a member's role (tenant admins; anything touching OWNER only by an owner). The
    /// last OWNER cannot step down: make another member OWNER first.
    #[graphql(guard = "RequireRole(Role::TenantAdmin)")]
    async fn update_member_role(
        &self,
        ctx: &Context<'_>,
        tenant_id: Option<ID>,
        user_id: String,
        role: MemberRole,
    ) -> Result<Member> {
        let tenant = target_tenant(ctx, tenant_id.as_ref())?;
        let row =
            service::update_role(ctx.app(), &ctx.req().actor(), tenant, &user_id, role).await?;
        Ok(row.into())
    }

    /// Disables a member (their tokens are FORBIDDEN everywhere, their sockets close, their
    /// seat is freed) or makes them ACTIVE again (takes a seat). Tenant admins; an OWNER only
    /// by an owner, never the last active one.
    #[graphql(guard = "RequireRole(Role::TenantAdmin)")]
    async fn update_member_status(
        &self,
        ctx: &Context<'_>,
        tenant_id: Option<ID>,
        user_id: String,
        status: MemberStatus,
    ) -> Result<Member> {
        let tenant = target_tenant(ctx, tenant_id.as_ref())?;
        let row =
            service::update_status(ctx.app(), &ctx.req().actor(), tenant, &user_id, status).await?;
        Ok(row.into())
    }

    /// Removes a member (tenant admins; an OWNER only by an owner, never the last one). The
    /// member's tokens are FORBIDDEN from now on on every instance, and their open sockets
    /// close.
    #[graphql(guard = "RequireRole(Role::TenantAdmin)")]
    async fn remove_member(
        &self,
        ctx: &Context<'_>,
        tenant_id: Option<ID>,
        user_id: String,
    ) -> Result<bool> {
        let tenant = target_tenant(ctx, tenant_id.as_ref())?;
        service::remove(ctx.app(), &ctx.req().actor(), tenant, &user_id).await?;
        Ok(true)
    }
}
