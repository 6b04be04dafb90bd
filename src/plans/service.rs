//! Plan catalogue rules: which plans a caller may see, which plan a tenant may be put on, and
//! the platform admins' writes (`createPlan`, `updatePlan`, `archivePlan`). The catalogue is
//! platform data, readable without a tenant, so reads run in the anonymous scope; writes run
//! under the platform scope, each audited in its transaction, and announce themselves with
//! `App::plans_changed` after the commit (every instance drops its cached plans).

use chrono::Utc;
use scoped_futures::ScopedFutureExt;
use serde_json::{json, Value};

use super::model::{
    valid_slug, NewPlan, PlanChanges, PlanRow, MAX_NAME, MAX_RATE_LIMIT, MAX_SLUG, MAX_TRIAL_DAYS,
};
use super::store;
use crate::app::App;
use crate::audit;
use crate::auth::{Actor, Role};
use crate::db::{Conn, Db, Scope};
use crate::error::{AppError, AppResult};
use crate::ids::PlanId;

/// The active plans, cheapest first (the catalogue's sort order); archived ones too when
/// asked by a platform admin (anyone else gets the active ones only).
pub async fn list(db: &Db, actor: &Actor, include_archived: bool) -> AppResult<Vec<PlanRow>> {
    let all = include_archived && actor.has(Role::PlatformAdmin);
    db.scoped(Scope::Anonymous, |c| {
        async move {
            Ok(if all {
                store::list_all(c).await?
            } else {
                store::list_active(c).await?
            })
        }
        .scope_boxed()
    })
    .await
}

/// The plan with this slug, if the caller may see it: an archived plan reads as absent but
/// to platform admins.
pub async fn find(db: &Db, actor: &Actor, slug: &str) -> AppResult<Option<PlanRow>> {
    let slug = slug.to_owned();
    let row = db
        .scoped(Scope::Anonymous, |c| {
            async move { Ok(store::find_by_slug(c, &slug).await?) }.scope_boxed()
        })
        .await?;
    Ok(row.filter(|p| p.is_active || actor.has(Role::PlatformAdmin)))
}

/// The plan a tenant may be put on (a new tenant, a plan change, a checkout): an unknown
/// slug and an archived plan are both BAD_USER_INPUT on `field`, the latter saying so.
/// Archived plans keep their tenants and take no new ones.
pub async fn offered(c: &mut Conn, field: &'static str, slug: &str) -> AppResult<PlanRow> {
    match store::find_by_slug(c, slug).await? {
        Some(p) if p.is_active => Ok(p),
        Some(p) => Err(AppError::bad_input(
            field,
            format!("plan {:?} is archived: it takes no new tenants", p.slug),
        )),
        None => Err(AppError::bad_input(field, format!("unknown plan {slug:?}"))),
    }
}

/// `createPlan`'s input; `None` fields take the defaults.
pub struct PlanInput {
    pub name: Option<String>,
    pub description: Option<String>,
    pub trial_days: Option<i32>,
    pub rate_limit_per_minute: Option<i32>,
}

fn validate(input: &PlanInput) -> AppResult<()> {
    if let Some(name) = &input.name {
        let n = name.chars().count();
        if name.trim().is_empty() || n > MAX_NAME || name.contains('\0') {
            return Err(AppError::bad_input(
                "name",
                format!("name must be 1-{MAX_NAME} characters, not blank"),
            ));
        }
    }
    if let Some(d) = &input.description {
        crate::catalogue::check_description(d)?;
    }
    if input
        .trial_days
        .is_some_and(|d| !(0..=MAX_TRIAL_DAYS).contains(&d))
    {
        return Err(AppError::bad_input(
            "trialDays",
            format!("trialDays must be 0-{MAX_TRIAL_DAYS}"),
        ));
    }
    if input
        .rate_limit_per_minute
        .is_some_and(|r| !(1..=MAX_RATE_LIMIT).contains(&r))
    {
        return Err(AppError::bad_input(
            "rateLimitPerMinute",
            format!("rateLimitPerMinute must be 1-{MAX_RATE_LIMIT}"),
        ));
    }
    Ok(())
}

/// What the audit log keeps of a plan.
fn audit_view(p: &PlanRow) -> Value {
    json!({ "slug": p.slug, "name": p.name, "description": p.description,
        "trialDays": p.trial_days, "rateLimitPerMinute": p.rate_limit_per_minute,
        "isActive": p.is_active })
}

fn change<'a>(action: &'a str, slug: &str, before: Value, after: Value) -> audit::Change<'a> {
    audit::Change {
        tenant_id: None,
        entity_type: "plan",
        entity_id: slug.to_owned(),
        action,
        before,
        after,
        metadata: json!({}),
    }
}

/// Adds a plan (platform admins), after the others in the catalogue's order; it has no
/// prices, features or quotas of its own yet (tenants on it get the default quotas). A slug
/// that exists, archived or not, is CONFLICT.
pub async fn create(
    app: &App,
    actor: &Actor,
    slug: String,
    input: PlanInput,
) -> AppResult<PlanRow> {
    actor.require(Role::PlatformAdmin)?;
    if !valid_slug(&slug) {
        return Err(AppError::bad_input(
            "slug",
            format!("slug must be 2-{MAX_SLUG} characters of a-z, 0-9 and '-', starting with a letter, not ending with '-'"),
        ));
    }
    if input.name.is_none() {
        return Err(AppError::bad_input("name", "name is required"));
    }
    validate(&input)?;
    let actor = actor.clone();
    let saved = app
        .db
        .scoped(Scope::Platform("catalogue_admin"), |c| {
            async move {
                let sort_order = store::max_sort_order(c)
                    .await?
                    .unwrap_or(0)
                    .saturating_add(10);
                let plan = NewPlan {
                    id: PlanId::now_v7(),
                    slug,
                    name: input.name.unwrap_or_default(),
                    description: input.description.unwrap_or_default(),
                    sort_order,
                    trial_days: input.trial_days.unwrap_or(0),
                    rate_limit_per_minute: input.rate_limit_per_minute.unwrap_or(60),
                };
                let saved = store::insert(c, &plan).await?.ok_or_else(|| {
                    AppError::conflict(Some("slug"), format!("plan {:?} already exists", plan.slug))
                })?;
                let entry = change("CREATE", &saved.slug, Value::Null, audit_view(&saved));
                audit::record(c, &actor, entry).await?;
                Ok(saved)
            }
            .scope_boxed()
        })
        .await?;
    app.plans_changed().await;
    Ok(saved)
}

/// Changes a plan's name, description, trial or rate limit (platform admins); the slug
/// never changes. An unknown slug is NOT_FOUND; archived plans may be edited.
pub async fn update(app: &App, actor: &Actor, slug: &str, input: PlanInput) -> AppResult<PlanRow> {
    actor.require(Role::PlatformAdmin)?;
    validate(&input)?;
    let changes = PlanChanges {
        name: input.name,
        description: input.description,
        trial_days: input.trial_days,
        rate_limit_per_minute: input.rate_limit_per_minute,
        is_active: None,
        updated_at: Some(Utc::now()),
    };
    write(app, actor, slug, "UPDATE", changes).await
}

/// Archives a plan (platform admins): its tenants keep it, new ones may not take it. An
/// archived plan answers as it is, with nothing written.
pub async fn archive(app: &App, actor: &Actor, slug: &str) -> AppResult<PlanRow> {
    actor.require(Role::PlatformAdmin)?;
    let changes = PlanChanges {
        is_active: Some(false),
        updated_at: Some(Utc::now()),
        ..PlanChanges::default()
    };
    write(app, actor, slug, "ARCHIVE", changes).await
}

/// Applies `changes` to the plan `slug` under its row lock, audited as `action`; every
/// instance drops its cached plans after the commit.
async fn write(
    app: &App,
    actor: &Actor,
    slug: &str,
    action: &'static str,
    changes: PlanChanges,
) -> AppResult<PlanRow> {
    let (actor, slug) = (actor.clone(), slug.to_owned());
    let (saved, changed) = app
        .db
        .scoped(Scope::Platform("catalogue_admin"), |c| {
            async move {
                let before = store::lock_by_slug(c, &slug)
                    .await?
                    .ok_or_else(|| AppError::not_found("plan"))?;
                if action == "ARCHIVE" && !before.is_active {
                    return Ok((before, false));
                }
                let saved = store::update(c, before.id, &changes).await?;
                let entry = change(action, &saved.slug, audit_view(&before), audit_view(&saved));
                audit::record(c, &actor, entry).await?;
                Ok((saved, true))
            }
            .scope_boxed()
        })
        .await?;
    if changed {
        app.plans_changed().await;
    }
    Ok(saved)
}
