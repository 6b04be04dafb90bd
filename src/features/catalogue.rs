//! Feature definitions as catalogue data (SPEC §13 `createFeature`): platform admins add the
//! features plans may include and tenants may be given. A new definition is off by default;
//! it is audited in its transaction, and every instance drops its cached plans and feature
//! sets after the commit (`App::plans_changed`).

use diesel::sql_types::{BigInt, Text, Uuid as SqlUuid};
use diesel_async::RunQueryDsl;
use scoped_futures::ScopedFutureExt;
use serde_json::{json, Value};

use super::model::FeatureDefinition;
use super::store;
use crate::app::App;
use crate::audit;
use crate::auth::{Actor, Role};
use crate::db::Scope;
use crate::error::{AppError, AppResult};
use crate::plans;
use crate::plans::model::PlanRow;

/// Longest feature name (plan names have the same bound).
pub const MAX_NAME: usize = 100;

pub struct NewFeature {
    pub key: String,
    pub name: String,
    pub description: String,
}

fn validate(input: &NewFeature) -> AppResult<()> {
    crate::catalogue::check_key(&input.key)?;
    let n = input.name.chars().count();
    if input.name.trim().is_empty() || n > MAX_NAME || input.name.contains('\0') {
        return Err(AppError::bad_input(
            "name",
            format!("name must be 1-{MAX_NAME} characters, not blank"),
        ));
    }
    crate::catalogue::check_description(&input.description)
}

/// Adds a feature definition (platform admins); a key that exists is CONFLICT.
pub async fn create(app: &App, actor: &Actor, input: NewFeature) -> AppResult<FeatureDefinition> {
    actor.require(Role::PlatformAdmin)?;
    validate(&input)?;
    let actor = actor.clone();
    let saved = app
        .db
        .scoped(Scope::Platform("catalogue_admin"), |c| {
            async move {
                let saved =
                    store::insert_definition(c, &input.key, &input.name, &input.description)
                        .await?
                        .ok_or_else(|| {
                            AppError::conflict(
                                Some("key"),
                                format!("feature {:?} already exists", input.key),
                            )
                        })?;
                let view = json!({ "key": saved.key, "name": saved.name,
                    "description": saved.description, "defaultEnabled": saved.default_enabled });
                let change = audit::Change {
                    tenant_id: None,
                    entity_type: "feature_definition",
                    entity_id: saved.key.clone(),
                    action: "CREATE",
                    before: Value::Null,
                    after: view,
                    metadata: json!({}),
                };
                audit::record(c, &actor, change).await?;
                Ok(saved)
            }
            .scope_boxed()
        })
        .await?;
    app.plans_changed().await;
    Ok(saved)
}

/// Includes feature `key` in plan `plan_slug` or leaves it out (platform admins). Tenants on
/// the plan evaluate their flags from it at once on every instance (`App::plans_changed`);
/// their own overrides are kept. One audit entry, with the number of tenants on the plan
/// whose flag follows it (those without an unexpired override); a repeat writes nothing.
/// An unknown plan is NOT_FOUND, an unknown feature BAD_USER_INPUT.
pub async fn set_plan_feature(
    app: &App,
    actor: &Actor,
    plan_slug: &str,
    key: &str,
    enabled: bool,
) -> AppResult<PlanRow> {
    actor.require(Role::PlatformAdmin)?;
    crate::catalogue::check_key(key)?;
    let (actor, slug, key) = (actor.clone(), plan_slug.to_owned(), key.to_owned());
    let (plan, changed) = app
        .db
        .scoped(Scope::Platform("catalogue_admin"), |c| {
            async move {
                let plan = plans::store::lock_by_slug(c, &slug)
                    .await?
                    .ok_or_else(|| AppError::not_found("plan"))?;
                let known = store::definitions(c).await?;
                if !known.iter().any(|d| d.key == key) {
                    return Err(AppError::bad_input(
                        "key",
                        format!("unknown feature {key:?}: create it first (createFeature)"),
                    ));
                }
                if !plans::store::set_feature(c, plan.id, &key, enabled).await? {
                    return Ok((plan, false));
                }
                let affected: Count = diesel::sql_query(
                    "select count(*) as n from tenants t
                      where t.plan_id = $1 and t.status <> 'DELETED'
                        and not exists (select 1 from tenant_features f
                                         where f.tenant_id = t.id and f.feature_key = $2
                                           and (f.expires_at is null or f.expires_at > now()))",
                )
                .bind::<SqlUuid, _>(plan.id.into_inner())
                .bind::<Text, _>(&key)
                .get_result(c)
                .await?;
                let entry = audit::Change {
                    tenant_id: None,
                    entity_type: "plan",
                    entity_id: plan.slug.clone(),
                    action: "FEATURE_SET",
                    before: json!({ "feature": key, "enabled": !enabled }),
                    after: json!({ "feature": key, "enabled": enabled }),
                    metadata: json!({ "tenantsAffected": affected.n }),
                };
                audit::record(c, &actor, entry).await?;
                Ok((plan, true))
            }
            .scope_boxed()
        })
        .await?;
    if changed {
        app.plans_changed().await;
    }
    Ok(plan)
}

#[derive(diesel::QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}
