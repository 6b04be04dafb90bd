//! Tenant rules: who may see and change which tenant, validation, provisioning and the
//! lifecycle. GraphQL, the internal API, jobs and the seed command all come through here.

use chrono::Utc;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use scoped_futures::ScopedFutureExt;
use serde_json::{json, Value};

use super::domains::ClaimWrite;
use super::lifecycle::{self, Transition};
use super::model::{
    ListFilter, NewTenant, TenantDomain, TenantName, TenantRow, TenantSlug, TenantStatus,
};
use super::store::{self, TenantChanges};
use crate::app::App;
use crate::audit;
use crate::auth::resolve::{keys_of, TenantCache};
use crate::auth::{cross_tenant_denied, Actor, Role};
use crate::db::page::{Page, PageArgs};
use crate::db::{Db, Scope};
use crate::error::{AppError, AppResult};
use crate::ids::TenantId;
use crate::{plans, quotas};

pub use super::lifecycle::RESTORE_WINDOW_DAYS;
pub const REGIONS: [&str; 5] = ["US", "CA", "EU", "GB", "AU"];

pub struct CreateTenant {
    pub name: String,
    pub slug: String,
    pub domain: Option<String>,
    pub plan_slug: Option<String>,
    pub owner_id: Option<String>,
    pub region: Option<String>,
}

#[derive(Default)]
pub struct UpdateTenant {
    pub name: Option<String>,
    /// `Some(None)` clears the custom domain.
    pub domain: Option<Option<String>>,
    pub settings: Option<Value>,
}

/// The scope for touching tenant `id`: tenant users only ever reach their own tenant; any other
/// id is answered as if it did not exist (and the attempt is counted and logged).
pub fn target_scope(actor: &Actor, id: TenantId, reason: &'static str) -> AppResult<Scope> {
    if !actor.is_platform() && actor.tenant_id != Some(id) {
        return Err(cross_tenant_denied(actor, id, "tenant"));
    }
    Ok(actor.scope_for(reason, id))
}

fn visible(actor: &Actor, row: Option<TenantRow>) -> AppResult<TenantRow> {
    match row {
        Some(t) if actor.is_platform() || t.status != TenantStatus::Deleted => Ok(t),
        _ => Err(AppError::not_found("tenant")),
    }
}

pub async fn get(db: &Db, actor: &Actor, id: TenantId) -> AppResult<TenantRow> {
    let scope = target_scope(actor, id, "tenant_read")?;
    let row = db
        .scoped(scope, |c| {
            async move { Ok(store::find(c, id).await?) }.scope_boxed()
        })
        .await?;
    visible(actor, row)
}

/// Like [`get`], answered from the resolution cache, which every change of the tenant
/// invalidates on every instance (`App::tenant_changed`): the caller's own tenant, read on
/// most requests, costs no query.
pub async fn get_cached(
    cache: &TenantCache,
    db: &Db,
    actor: &Actor,
    id: TenantId,
) -> AppResult<TenantRow> {
    target_scope(actor, id, "tenant_read")?;
    visible(actor, cache.by_id(db, id).await?)
}

pub async fn get_by_slug(db: &Db, actor: &Actor, slug: &str) -> AppResult<TenantRow> {
    let slug = slug.trim().to_owned();
    let scope = match actor.tenant_id {
        Some(own) if !actor.is_platform() => Scope::Tenant(own),
        _ => Scope::Platform("tenant_read"),
    };
    let row = db
        .scoped(scope, |c| {
            async move { Ok(store::find_by_slug(c, &slug).await?) }.scope_boxed()
        })
        .await?;
    match (row, actor.is_platform()) {
        (Some(t), false) if Some(t.id) != actor.tenant_id => {
            Err(cross_tenant_denied(actor, t.id, "tenant"))
        }
        // RLS hid another tenant's row: the same answer as an unknown slug.
        (row, _) => visible(actor, row),
    }
}

/// A page of the admin tenant list (platform admins), oldest first, with its count when asked.
pub async fn list(
    db: &Db,
    actor: &Actor,
    filter: ListFilter,
    page: PageArgs<TenantId>,
) -> AppResult<Page<TenantRow>> {
    actor.require(Role::PlatformAdmin)?;
    page.load(
        db,
        Scope::Platform("tenant_list"),
        |c, after, limit| store::list(c, &filter, after, limit).scope_boxed(),
        |c| store::count(c, &filter).scope_boxed(),
    )
    .await
}

fn unique_violation(err: DieselError) -> AppError {
    if let DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, info) = &err {
        return match info.constraint_name() {
            Some("tenants_slug") => {
                AppError::conflict(Some("slug"), "a tenant with this slug already exists")
            }
            Some("tenants_domain") => {
                AppError::conflict(Some("domain"), "another tenant already uses this domain")
            }
            _ => AppError::conflict(None, "tenant already exists"),
        };
    }
    err.into()
}

pub(super) fn audit_view(t: &TenantRow) -> Value {
    json!({
        "name": t.name, "slug": t.slug, "domain": t.domain, "status": t.status,
        "planId": t.plan_id, "ownerId": t.owner_id, "settings": t.settings,
        "suspendReason": t.suspend_reason,
    })
}

fn validate_settings(v: &Value) -> AppResult<()> {
    if !v.is_object() {
        return Err(AppError::bad_input(
            "settings",
            "settings must be a JSON object",
        ));
    }
    if v.to_string().len() > 64 * 1024 {
        return Err(AppError::bad_input(
            "settings",
            "settings must be at most 64 KiB",
        ));
    }
    Ok(())
}

/// Creates a tenant and provisions it in one transaction: the plan's quotas (plus defaults),
/// and the audit entry. Features need no rows: they derive from the plan until overridden.
pub async fn create(app: &App, actor: &Actor, input: CreateTenant) -> AppResult<TenantRow> {
    actor.require(Role::PlatformAdmin)?;
    let name = TenantName::parse(&input.name)?;
    let slug = TenantSlug::parse(&input.slug)?;
    let domain = input
        .domain
        .as_deref()
        .map(TenantDomain::parse)
        .transpose()?;
    let plan_slug = input.plan_slug.unwrap_or_else(|| "free".into());
    let region = input
        .region
        .unwrap_or_else(|| "US".into())
        .to_ascii_uppercase();
    if !REGIONS.contains(&region.as_str()) {
        return Err(AppError::bad_input(
            "region",
            format!("region must be one of {}", REGIONS.join(", ")),
        ));
    }
    if input.owner_id.as_ref().is_some_and(|o| o.len() > 255) {
        return Err(AppError::bad_input(
            "ownerId",
            "ownerId must be at most 255 characters",
        ));
    }
    let actor_c = actor.clone();
    let tenant = app
        .db
        .scoped(Scope::Platform("tenant_create"), |c| {
            async move {
                // An archived plan keeps its tenants and takes no new ones.
                let plan = plans::service::offered(c, "planSlug", &plan_slug).await?;
                let new = NewTenant {
                    id: TenantId::now_v7(),
                    name,
                    slug,
                    domain,
                    status: TenantStatus::Active,
                    plan_id: plan.id,
                    owner_id: input.owner_id,
                    region,
                    settings: json!({}),
                };
                let tenant = store::insert(c, &new).await.map_err(unique_violation)?;
                let plan_quotas = plans::store::quotas_of(c, &[plan.id]).await?;
                quotas::service::provision(c, tenant.id, &plan_quotas, Utc::now()).await?;
                if let Some(owner) = &tenant.owner_id {
                    crate::members::service::first_owners(c, &[(tenant.id, owner.clone())]).await?;
                }
                let sub =
                    crate::billing::plan_apply::initial_subscription(tenant.id, &plan, Utc::now());
                crate::billing::store::insert_subscription(c, &sub).await?;
                audit::record(
                    c,
                    &actor_c,
                    audit::Change::new(
                        tenant.id,
                        "tenant",
                        tenant.id,
                        "CREATE",
                        Value::Null,
                        audit_view(&tenant),
                    )
                    .with_metadata(json!({ "plan": plan.slug })),
                )
                .await?;
                Ok(tenant)
            }
            .scope_boxed()
        })
        .await?;
    // After the commit, never inside it: with live billing the tenant's Stripe customer (the
    // tenant id is the Idempotency-Key). If Stripe refuses, the tenant is removed again, so a
    // failed creation keeps nothing; a crash in between leaves a tenant without a customer,
    // which Checkout creates on first use (`billing::checkout::ensure_customer`).
    let tenant = match app.payments.as_deref() {
        None => tenant,
        Some(api) => match crate::billing::checkout::ensure_customer(&app.db, api, &tenant).await {
            Ok(customer) => TenantRow {
                stripe_customer_id: Some(customer),
                ..tenant
            },
            Err(e) if revert_create(app, actor, &tenant, &e).await => return Err(e),
            // Not removed (changed meanwhile, or the database failed): the tenant stands, and
            // Checkout creates its customer on first use.
            Err(_) => tenant,
        },
    };
    app.tenant_keys_changed(tenant.id, keys_of(&tenant)).await;
    Ok(tenant)
}

/// Removes a tenant whose creation could not be completed after its commit (audited), unless
/// it changed meanwhile. Returns whether it was removed.
async fn revert_create(app: &App, actor: &Actor, tenant: &TenantRow, cause: &AppError) -> bool {
    let (actor, id, why) = (actor.clone(), tenant.id, cause.to_string());
    let updated_at = tenant.updated_at;
    let reverted = app
        .db
        .scoped(Scope::Platform("tenant_create"), |c| {
            async move {
                if !store::remove_unchanged(c, id, updated_at).await? {
                    return Ok(false);
                }
                let change = audit::Change::new(
                    id,
                    "tenant",
                    id,
                    "CREATE_REVERTED",
                    Value::Null,
                    Value::Null,
                )
                .with_metadata(json!({ "reason": why }));
                audit::record(c, &actor, change).await?;
                Ok(true)
            }
            .scope_boxed()
        })
        .await;
    match reverted {
        Ok(true) => {
            app.tenant_keys_changed(id, keys_of(tenant)).await;
            true
        }
        Ok(false) => {
            tracing::warn!(tenant = %id, "tenant changed before its failed creation was undone; kept");
            false
        }
        Err(e) => {
            tracing::error!(tenant = %id, error = %e, "could not remove a tenant whose creation failed");
            false
        }
    }
}

/// Locks the tenant, lets `decide` check the rule and produce the change, writes it with its
/// audit entry, and invalidates caches everywhere. Every tenant change goes through here.
pub(super) async fn change(
    app: &App,
    actor: &Actor,
    id: TenantId,
    action: &'static str,
    metadata: Value,
    decide: impl FnOnce(&TenantRow) -> AppResult<TenantChanges> + Send + 'static,
) -> AppResult<TenantRow> {
    change_with_claim(app, actor, id, action, metadata, move |t| {
        decide(t).map(|c| (c, None))
    })
    .await
}

/// [`change`], plus a write of the tenant's custom-domain claim in the same transaction.
pub(super) async fn change_with_claim(
    app: &App,
    actor: &Actor,
    id: TenantId,
    action: &'static str,
    mut metadata: Value,
    decide: impl FnOnce(&TenantRow) -> AppResult<(TenantChanges, Option<ClaimWrite>)> + Send + 'static,
) -> AppResult<TenantRow> {
    let scope = target_scope(actor, id, "tenant_change")?;
    let actor_c = actor.clone();
    let (before, row) = app
        .db
        .scoped(scope, |c| {
            async move {
                let before = visible(&actor_c, store::find_for_update(c, id).await?)?;
                let (mut changes, claim) = decide(&before)?;
                changes.updated_at = Some(Utc::now());
                let after = store::update(c, id, &changes)
                    .await
                    .map_err(unique_violation)?;
                match claim {
                    Some(ClaimWrite::Put(claim)) => {
                        metadata["pendingDomain"] = json!(claim.domain);
                        store::put_claim(c, &claim).await?;
                    }
                    Some(ClaimWrite::Delete) => store::delete_claim(c, id).await?,
                    Some(ClaimWrite::Consume(claim))
                        if !store::consume_claim(c, &claim, Utc::now()).await? =>
                    {
                        return Err(AppError::conflict(
                            Some("domain"),
                            "the domain claim changed during verification; verify again",
                        ));
                    }
                    Some(ClaimWrite::Consume(_)) => {}
                    None => {}
                }
                audit::record(
                    c,
                    &actor_c,
                    audit::Change {
                        tenant_id: Some(id),
                        entity_type: "tenant",
                        entity_id: id.to_string(),
                        action,
                        before: audit_view(&before),
                        after: audit_view(&after),
                        metadata,
                    },
                )
                .await?;
                lifecycle::notify(c, &before, &after).await?;
                Ok((before, after))
            }
            .scope_boxed()
        })
        .await?;
    let mut keys = keys_of(&before);
    keys.extend(keys_of(&row));
    app.tenant_keys_changed(id, keys).await;
    Ok(row)
}

pub use super::lifecycle::ensure_writable;

pub(super) fn not_deleted(t: &TenantRow) -> AppResult<()> {
    if t.status == TenantStatus::Deleted {
        return Err(AppError::not_found("tenant"));
    }
    Ok(())
}

pub async fn update(
    app: &App,
    actor: &Actor,
    id: TenantId,
    input: UpdateTenant,
) -> AppResult<TenantRow> {
    actor.require(Role::TenantAdmin)?;
    let name = input.name.as_deref().map(TenantName::parse).transpose()?;
    let domain = match input.domain {
        None => None,
        Some(None) => Some(None),
        Some(Some(d)) if d.trim().is_empty() => Some(None),
        Some(Some(d)) => Some(Some(TenantDomain::parse(&d)?)),
    };
    if let Some(s) = &input.settings {
        validate_settings(s)?;
    }
    // Cross-tenant ids are refused before the domain rules look anything up.
    target_scope(actor, id, "tenant_change")?;
    let domain = match domain {
        None => None,
        Some(d) => Some(super::domains::decide(app, actor, id, d).await?),
    };
    let actor_c = actor.clone();
    change_with_claim(app, actor, id, "UPDATE", json!({}), move |t| {
        not_deleted(t)?;
        ensure_writable(&actor_c, t)?;
        let mut changes = TenantChanges {
            name,
            settings: input.settings,
            ..Default::default()
        };
        let claim = domain.map(|d| d.apply(id, &mut changes));
        Ok((changes, claim))
    })
    .await
}

pub async fn suspend(app: &App, actor: &Actor, id: TenantId, reason: &str) -> AppResult<TenantRow> {
    actor.require(Role::PlatformAdmin)?;
    let reason = reason.trim().to_owned();
    if reason.is_empty() || reason.chars().count() > 500 {
        return Err(AppError::bad_input(
            "reason",
            "reason must be 1-500 characters",
        ));
    }
    let metadata = json!({ "reason": reason });
    transition(app, actor, id, Transition::Suspend(reason), metadata).await
}

pub async fn reactivate(app: &App, actor: &Actor, id: TenantId) -> AppResult<TenantRow> {
    actor.require(Role::PlatformAdmin)?;
    transition(app, actor, id, Transition::Reactivate, json!({})).await
}

/// Soft delete: the tenant's users get NOT_FOUND from now on; restorable for 30 days.
pub async fn delete(app: &App, actor: &Actor, id: TenantId) -> AppResult<TenantRow> {
    actor.require(Role::PlatformAdmin)?;
    transition(app, actor, id, Transition::Delete, json!({})).await
}

/// Undoes a soft delete within the window; a tenant deleted while suspended comes back suspended.
pub async fn restore(app: &App, actor: &Actor, id: TenantId) -> AppResult<TenantRow> {
    actor.require(Role::PlatformAdmin)?;
    transition(app, actor, id, Transition::Restore, json!({})).await
}

/// A platform admin's status change, by the one rule for every cause ([`lifecycle::next`]).
async fn transition(
    app: &App,
    actor: &Actor,
    id: TenantId,
    t: Transition,
    metadata: Value,
) -> AppResult<TenantRow> {
    let action = t.action();
    change(app, actor, id, action, metadata, move |row| {
        lifecycle::next(row, &t, Utc::now())?
            .ok_or_else(|| AppError::conflict(Some("status"), "nothing to change"))
    })
    .await
}
