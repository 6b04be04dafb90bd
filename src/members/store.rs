//! Member and invitation SQL (always in the tenant's own scope or the platform scope).

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Uuid as SqlUuid};
use diesel_async::RunQueryDsl;
use uuid::Uuid;

use super::model::{
    stored, Filter, InvitationRow, InvitationStatus, MemberRole, MemberRow, StoredStatus,
};
use crate::db::schema::{invitations, members};
use crate::db::Conn;
use crate::ids::TenantId;

pub async fn insert_member(c: &mut Conn, row: &MemberRow) -> QueryResult<MemberRow> {
    diesel::insert_into(members::table)
        .values(row)
        .returning(MemberRow::as_returning())
        .get_result(c)
        .await
}

pub async fn insert_invitation(c: &mut Conn, row: &InvitationRow) -> QueryResult<()> {
    diesel::insert_into(invitations::table)
        .values(row)
        .execute(c)
        .await
        .map(drop)
}

/// The member whose JWT `sub` is `user_id`, whatever its status, locked.
pub async fn by_user(
    c: &mut Conn,
    tenant: TenantId,
    user_id: &str,
) -> QueryResult<Option<MemberRow>> {
    members::table
        .filter(members::tenant_id.eq(tenant))
        .filter(members::user_id.eq(user_id))
        .select(MemberRow::as_select())
        .for_update()
        .first(c)
        .await
        .optional()
}

/// The member holding `email` (not removed), locked.
pub async fn by_email(
    c: &mut Conn,
    tenant: TenantId,
    email: &str,
) -> QueryResult<Option<MemberRow>> {
    members::table
        .filter(members::tenant_id.eq(tenant))
        .filter(members::email.eq(email))
        .filter(members::status.ne(StoredStatus::Removed))
        .select(MemberRow::as_select())
        .for_update()
        .first(c)
        .await
        .optional()
}

pub async fn by_id(c: &mut Conn, tenant: TenantId, id: Uuid) -> QueryResult<Option<MemberRow>> {
    members::table
        .find((tenant, id))
        .select(MemberRow::as_select())
        .for_update()
        .first(c)
        .await
        .optional()
}

pub async fn set_member(
    c: &mut Conn,
    tenant: TenantId,
    id: Uuid,
    role: MemberRole,
    status: StoredStatus,
) -> QueryResult<MemberRow> {
    diesel::update(members::table.find((tenant, id)))
        .set((
            members::role.eq(role),
            members::status.eq(status),
            members::updated_at.eq(Utc::now()),
        ))
        .returning(MemberRow::as_returning())
        .get_result(c)
        .await
}

/// Binds an invited member to the accepting `user_id`: ACTIVE from now.
pub async fn activate(
    c: &mut Conn,
    tenant: TenantId,
    id: Uuid,
    user_id: &str,
    now: DateTime<Utc>,
) -> QueryResult<MemberRow> {
    diesel::update(members::table.find((tenant, id)))
        .set((
            members::user_id.eq(user_id),
            members::status.eq(StoredStatus::Active),
            members::joined_at.eq(now),
            members::updated_at.eq(now),
        ))
        .returning(MemberRow::as_returning())
        .get_result(c)
        .await
}

pub async fn delete_member(c: &mut Conn, tenant: TenantId, id: Uuid) -> QueryResult<usize> {
    diesel::delete(members::table.find((tenant, id)))
        .execute(c)
        .await
}

/// Active owners of the tenant, locked (a tenant always keeps one).
pub async fn owners(c: &mut Conn, tenant: TenantId) -> QueryResult<Vec<Uuid>> {
    members::table
        .filter(members::tenant_id.eq(tenant))
        .filter(members::role.eq(MemberRole::Owner))
        .filter(members::status.eq(StoredStatus::Active))
        .select(members::id)
        .for_update()
        .load(c)
        .await
}

pub async fn invitation_by_hash(c: &mut Conn, hash: &str) -> QueryResult<Option<InvitationRow>> {
    invitations::table
        .filter(invitations::token_hash.eq(hash))
        .select(InvitationRow::as_select())
        .for_update()
        .first(c)
        .await
        .optional()
}

pub async fn invitation(
    c: &mut Conn,
    tenant: TenantId,
    id: Uuid,
) -> QueryResult<Option<InvitationRow>> {
    invitations::table
        .find((tenant, id))
        .select(InvitationRow::as_select())
        .for_update()
        .first(c)
        .await
        .optional()
}

/// The invitation that made member `member` (the latest).
pub async fn invitation_of(
    c: &mut Conn,
    tenant: TenantId,
    member: Uuid,
) -> QueryResult<Option<InvitationRow>> {
    invitations::table
        .filter(invitations::tenant_id.eq(tenant))
        .filter(invitations::member_id.eq(member))
        .order(invitations::created_at.desc())
        .select(InvitationRow::as_select())
        .for_update()
        .first(c)
        .await
        .optional()
}

pub async fn set_invitation(
    c: &mut Conn,
    tenant: TenantId,
    id: Uuid,
    status: InvitationStatus,
    accepted_by: Option<&str>,
) -> QueryResult<InvitationRow> {
    diesel::update(invitations::table.find((tenant, id)))
        .set((
            invitations::status.eq(status),
            invitations::accepted_by.eq(accepted_by),
            invitations::accepted_at.eq(accepted_by.map(|_| Utc::now())),
        ))
        .returning(InvitationRow::as_returning())
        .get_result(c)
        .await
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// Seats taken: ACTIVE members and INVITED ones whose invitation is still pending.
pub async fn seats(c: &mut Conn, tenant: TenantId) -> QueryResult<i64> {
    let row: Count = diesel::sql_query(
        "select count(*) as n from members m
          where m.tenant_id = $1
            and (m.status = 'ACTIVE'
                 or (m.status = 'INVITED' and exists (
                       select 1 from invitations i
                        where i.tenant_id = m.tenant_id and i.member_id = m.id
                          and i.status = 'PENDING' and i.expires_at > now())))",
    )
    .bind::<SqlUuid, _>(tenant.into_inner())
    .get_result(c)
    .await?;
    Ok(row.n)
}

type Boxed<'a> = members::BoxedQuery<'a, diesel::pg::Pg>;

fn filtered<'a>(tenant: TenantId, f: &Filter) -> Boxed<'a> {
    let mut q = members::table
        .filter(members::tenant_id.eq(tenant))
        .filter(members::status.ne(StoredStatus::Removed))
        .into_boxed();
    if let Some(r) = f.role {
        q = q.filter(members::role.eq(r));
    }
    if let Some(s) = f.status {
        q = q.filter(members::status.eq(stored(s)));
    }
    q
}

/// A page of members, oldest first, keyset on (created_at, id).
pub async fn list(
    c: &mut Conn,
    tenant: TenantId,
    f: &Filter,
    after: Option<(DateTime<Utc>, Uuid)>,
    limit: i64,
) -> QueryResult<Vec<MemberRow>> {
    let mut q = filtered(tenant, f);
    if let Some((ts, id)) = after {
        q = q.filter(
            members::created_at
                .gt(ts)
                .or(members::created_at.eq(ts).and(members::id.gt(id))),
        );
    }
    q.order((members::created_at.asc(), members::id.asc()))
        .limit(limit)
        .select(MemberRow::as_select())
        .load(c)
        .await
}

pub async fn count(c: &mut Conn, tenant: TenantId, f: &Filter) -> QueryResult<i64> {
    filtered(tenant, f).count().get_result(c).await
}

/// A member by `user_id` for reading (not removed).
pub async fn find_by_user(
    c: &mut Conn,
    tenant: TenantId,
    user_id: &str,
) -> QueryResult<Option<MemberRow>> {
    members::table
        .filter(members::tenant_id.eq(tenant))
        .filter(members::user_id.eq(user_id))
        .filter(members::status.ne(StoredStatus::Removed))
        .select(MemberRow::as_select())
        .first(c)
        .await
        .optional()
}

/// Records that `user_id` was seen now (the caller limits how often).
pub async fn touch(c: &mut Conn, tenant: TenantId, user_id: &str) -> QueryResult<usize> {
    diesel::update(
        members::table
            .filter(members::tenant_id.eq(tenant))
            .filter(members::user_id.eq(user_id)),
    )
    .set(members::last_seen_at.eq(Utc::now()))
    .execute(c)
    .await
}

/// Role and status of `user_id` in the tenant (removed members too), for the membership check.
pub async fn member_of(
    c: &mut Conn,
    tenant: TenantId,
    user_id: &str,
) -> QueryResult<Option<(MemberRole, StoredStatus)>> {
    members::table
        .filter(members::tenant_id.eq(tenant))
        .filter(members::user_id.eq(user_id))
        .select((members::role, members::status))
        .first(c)
        .await
        .optional()
}
