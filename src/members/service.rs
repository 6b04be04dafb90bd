//! Member rules (invitations are in `invitations`): roles, statuses, removal, seats counted
//! against the `users` quota under concurrency,
//! and at least one OWNER per tenant. Every write is audited in its transaction and dropped
//! from every instance's membership cache after the commit (`App::members_changed`).

use diesel::sql_types::{BigInt, Text, Uuid as SqlUuid};
use diesel::OptionalExtension;
use diesel_async::RunQueryDsl;
use scoped_futures::ScopedFutureExt;
use serde_json::{json, Value};
use uuid::Uuid;

use super::model::Filter;
use super::model::{MemberRole, MemberRow, MemberStatus, StoredStatus};
use super::store;
use crate::app::App;
use crate::audit;
use crate::auth::{Actor, Role};
use crate::db::page::{Page, PageArgs};
use crate::db::{Conn, Db, Scope};
use crate::error::{AppError, AppResult};
use crate::ids::TenantId;
use crate::quotas::model::QuotaEnforcement;
use crate::tenants::lifecycle::{lock_live, lock_writable};
use crate::tenants::service::target_scope;

pub(super) fn view(m: &MemberRow) -> Value {
    json!({ "userId": m.user_id, "email": m.email, "role": m.role, "status": m.status.as_str() })
}

pub(super) fn entry<'a>(
    m: &MemberRow,
    action: &'a str,
    before: Value,
    after: Value,
) -> audit::Change<'a> {
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
pub(super) async fn is_owner(c: &mut Conn, actor: &Actor, tenant: TenantId) -> AppResult<bool> {
    if actor.is_platform() {
        return Ok(true);
    }
    if actor.kind == crate::auth::ActorType::ApiKey {
        return Ok(false);
    }
    let Some(sub) = &actor.id else {
        return Ok(false);
    };
    Ok(store::by_user(c, tenant, sub)
        .await?
        .is_some_and(|m| m.role == MemberRole::Owner && m.status == StoredStatus::Active))
}

pub(super) fn owners_only() -> AppError {
    AppError::forbidden("only an owner may grant, change or remove the OWNER role")
}

/// Keeps the `users` quota's `used` equal to the seats taken, and refuses `adding` more when a
/// HARD limit would be passed. Locks the quota row, so concurrent invitations of one tenant
/// take seats one after the other and exactly the remaining ones are admitted.
pub(super) async fn take_seats(c: &mut Conn, tenant: TenantId, adding: i64) -> AppResult<()> {
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
                // Removing and disabling stay possible while the tenant is suspended (they
                // take access away); every other change is a write like any other.
                if matches!(edit, Edit::Remove | Edit::Status(StoredStatus::Disabled)) {
                    lock_live(c, tenant_id).await?;
                } else {
                    lock_writable(c, &actor_c, tenant_id).await?;
                }
                // A removed member comes back only through `updateMemberStatus(ACTIVE)`.
                let m = match edit {
                    Edit::Status(StoredStatus::Active) => store::by_user(c, tenant_id, &user_id)
                        .await?
                        .ok_or_else(|| AppError::not_found("member"))?,
                    _ => target(c, tenant_id, &user_id).await?,
                };
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
