//! Feature definitions as catalogue data (SPEC §13 `createFeature`): platform admins add the
//! features plans may include and tenants may be given. A new definition is off by default;
//! it is audited in its transaction, and every instance drops its cached plans and feature
//! sets after the commit (`App::plans_changed`).

use scoped_futures::ScopedFutureExt;
use serde_json::{json, Value};

use super::model::FeatureDefinition;
use super::store;
use crate::app::App;
use crate::audit;
use crate::auth::{Actor, Role};
use crate::db::Scope;
use crate::error::{AppError, AppResult};

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
