//! Resource type rules: who may create one, what a valid one is, and the one check every
//! entry taking a resource name goes through ([`require_known`]): an unknown resource is
//! BAD_USER_INPUT naming the known ones, on GraphQL and on the internal REST API alike.

use chrono::Utc;
use scoped_futures::ScopedFutureExt;
use serde_json::json;

use super::cache::ResourceTypes;
use super::model::{ResourceTypeRow, MAX_UNIT};
use super::store;
use crate::app::App;
use crate::audit;
use crate::auth::{Actor, Role};
use crate::db::Scope;
use crate::error::{AppError, AppResult};
use crate::quotas::model::QuotaEnforcement;

/// Every resource type, sorted by key (public, like the plans).
pub async fn list(app: &App) -> AppResult<ResourceTypes> {
    app.resource_types.all(&app.db).await
}

/// The resource type `key`, or BAD_USER_INPUT on `field` naming the known ones. Answered
/// from memory: this is on the metering hot path.
pub async fn require_known(
    app: &App,
    field: &'static str,
    key: &str,
) -> AppResult<ResourceTypeRow> {
    let types = list(app).await?;
    match types.binary_search_by(|t| t.key.as_str().cmp(key)) {
        Ok(i) => Ok(types[i].clone()),
        Err(_) => Err(unknown(field, key, &types)),
    }
}

/// The refusal of an unknown resource: the name given (shortened, escaped) and the known ones.
pub fn unknown(field: &'static str, key: &str, types: &[ResourceTypeRow]) -> AppError {
    let given: String = key.chars().take(64).collect();
    let known: Vec<&str> = types.iter().map(|t| t.key.as_str()).collect();
    AppError::bad_input(
        field,
        format!(
            "unknown resource {given:?}; the known resources are: {}",
            known.join(", ")
        ),
    )
}

pub struct NewResourceType {
    pub key: String,
    pub unit: String,
    pub default_enforcement: QuotaEnforcement,
    pub description: String,
}

fn validate(input: &NewResourceType) -> AppResult<()> {
    crate::catalogue::check_key(&input.key)?;
    // PostgreSQL text cannot hold NUL: refused here rather than failing the insert.
    let unit = input.unit.trim();
    if unit.is_empty()
        || unit.len() > MAX_UNIT
        || unit.len() != input.unit.len()
        || unit.contains('\0')
    {
        return Err(AppError::bad_input(
            "unit",
            format!("unit must be 1-{MAX_UNIT} characters, without surrounding spaces"),
        ));
    }
    crate::catalogue::check_description(&input.description)
}

/// Adds a resource type (platform admins): audited in the same transaction; every
/// instance's cache is dropped after the commit. A key that exists is CONFLICT.
pub async fn create(
    app: &App,
    actor: &Actor,
    input: NewResourceType,
) -> AppResult<ResourceTypeRow> {
    actor.require(Role::PlatformAdmin)?;
    validate(&input)?;
    let row = ResourceTypeRow {
        key: input.key,
        unit: input.unit,
        default_enforcement: input.default_enforcement,
        description: input.description,
        created_at: Utc::now(),
    };
    let actor = actor.clone();
    let saved = app
        .db
        .scoped(Scope::Platform("catalogue_admin"), |c| {
            async move {
                let saved = store::insert(c, &row).await?.ok_or_else(|| {
                    AppError::conflict(
                        Some("key"),
                        format!("resource type {:?} already exists", row.key),
                    )
                })?;
                let view = json!({ "key": saved.key, "unit": saved.unit,
                    "defaultEnforcement": saved.default_enforcement, "description": saved.description });
                let change = audit::Change {
                    tenant_id: None,
                    entity_type: "resource_type",
                    entity_id: saved.key.clone(),
                    action: "CREATE",
                    before: serde_json::Value::Null,
                    after: view,
                    metadata: json!({}),
                };
                audit::record(c, &actor, change).await?;
                Ok(saved)
            }
            .scope_boxed()
        })
        .await?;
    app.resource_types_changed().await;
    Ok(saved)
}
