//! Configuration rules: type checks, encryption, who may write which category, and the cache
//! that serves reads (invalidated on every instance through the bus). How the layers merge
//! is `layers`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use moka::future::Cache;
use scoped_futures::ScopedFutureExt;
use serde_json::{json, Value};

use super::crypto;
use super::layers::{self, visible_value, ReadOnlyLayers};
use super::model::{
    ConfigDataType, ConfigEntry, ConfigLayer, ConfigRow, MASK, RESERVED_CATEGORIES,
};
use super::store::{self, Upsert};
use crate::app::App;
use crate::audit;
use crate::auth::{Actor, Role};
use crate::bus::Event;
use crate::db::{Conn, Db, Scope};
use crate::error::{AppError, AppResult};
use crate::ids::TenantId;
use crate::tenants::model::TenantRow;
use crate::tenants::service::target_scope;
use crate::{features, plans};

pub use super::layers::TenantConfig;

#[derive(Clone)]
pub struct ConfigCache(Cache<TenantId, Arc<TenantConfig>>);

impl Default for ConfigCache {
    fn default() -> Self {
        ConfigCache(
            Cache::builder()
                .max_capacity(100_000)
                .time_to_live(Duration::from_secs(300))
                .build(),
        )
    }
}

impl ConfigCache {
    pub async fn invalidate(&self, tenant_id: TenantId) {
        self.0.invalidate(&tenant_id).await;
    }

    pub fn invalidate_all(&self) {
        self.0.invalidate_all();
    }
}

/// The configuration of several tenants: cache first, two statements for the misses.
pub async fn of_tenants(
    app: &App,
    db: &Db,
    scope: Scope,
    ids: &[TenantId],
) -> AppResult<HashMap<TenantId, Arc<TenantConfig>>> {
    let mut found = HashMap::new();
    let mut missing = Vec::new();
    for id in ids {
        match app.configs.0.get(id).await {
            Some(hit) => {
                found.insert(*id, hit);
            }
            None => missing.push(*id),
        }
    }
    let outcome = if missing.is_empty() { "hit" } else { "miss" };
    metrics::counter!("tenantry_cache_requests_total", "cache" => "config", "outcome" => outcome)
        .increment(1);
    if !missing.is_empty() {
        let to_load = missing.clone();
        let (rows, defaults) = db
            .scoped(scope, |c| {
                async move {
                    Ok((
                        store::of_tenants(c, &to_load).await?,
                        store::defaults(c).await?,
                    ))
                }
                .scope_boxed()
            })
            .await?;
        let defaults = Arc::new(defaults);
        let mut by_tenant: HashMap<TenantId, Vec<ConfigRow>> = HashMap::new();
        for row in rows {
            by_tenant.entry(row.tenant_id).or_default().push(row);
        }
        for id in &missing {
            let cfg = Arc::new(TenantConfig {
                tenant_id: *id,
                rows: by_tenant.remove(id).unwrap_or_default(),
                defaults: defaults.clone(),
            });
            app.configs.0.insert(*id, cfg.clone()).await;
            found.insert(*id, cfg);
        }
    }
    Ok(found)
}

/// One tenant's layer (its entries and the defaults) read in the caller's transaction, past
/// the cache: for work that already holds a transaction (notification mail).
pub async fn tenant_config_in(
    c: &mut Conn,
    tenant_id: TenantId,
) -> diesel::QueryResult<TenantConfig> {
    Ok(TenantConfig {
        tenant_id,
        rows: store::of_tenants(c, &[tenant_id]).await?,
        defaults: Arc::new(store::defaults(c).await?),
    })
}

/// Whether the actor sees encrypted values in plain text (tenant admins and platform actors).
pub fn reveals_secrets(actor: &Actor) -> bool {
    actor.has(Role::TenantAdmin)
}

/// All layers merged: `{ category: { key: { value, layer } } }`; later layers win.
pub async fn effective(
    app: &App,
    db: &Db,
    scope: Scope,
    tenant: &TenantRow,
    reveal: bool,
) -> AppResult<Value> {
    let cfg = of_tenants(app, db, scope, &[tenant.id])
        .await?
        .remove(&tenant.id)
        .unwrap_or_else(|| {
            Arc::new(TenantConfig {
                tenant_id: tenant.id,
                rows: vec![],
                defaults: Arc::new(vec![]),
            })
        });
    let plan_id = tenant.plan_id;
    let (plan, quotas) = db
        .scoped(scope, |c| {
            async move {
                let plan = plans::store::by_ids(c, &[plan_id]).await?.pop();
                Ok((plan, plans::store::quotas_of(c, &[plan_id]).await?))
            }
            .scope_boxed()
        })
        .await?;
    let flags = features::service::effective(app, db, scope, tenant.id, plan_id).await?;
    let read_only = ReadOnlyLayers {
        environment: &app.settings.environment,
        region: &tenant.region,
        billing_live: app.settings.billing_live(),
        plan: plan.as_ref(),
        quotas: &quotas,
        flags: &flags,
    };
    let tenant_layer = cfg.entries(None, reveal, app.settings.config_encryption_key.as_ref());
    Ok(layers::merge(read_only, tenant_layer))
}

pub struct SetConfig {
    pub tenant_id: TenantId,
    pub category: String,
    pub key: String,
    pub value: Value,
    pub data_type: Option<ConfigDataType>,
    pub encrypted: bool,
}

fn may_write(actor: &Actor) -> AppResult<()> {
    actor.require(Role::TenantAdmin)
}

fn check_category(category: &str) -> AppResult<()> {
    if RESERVED_CATEGORIES.contains(&category) {
        return Err(AppError::bad_input(
            "category",
            "the system and plan layers are read-only",
        ));
    }
    let ok = category.len() <= 64
        && category.starts_with(|c: char| c.is_ascii_lowercase())
        && category
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !ok {
        return Err(AppError::bad_input(
            "category",
            "category must match [a-z][a-z0-9_]{0,63}",
        ));
    }
    Ok(())
}

fn check_key(key: &str) -> AppResult<()> {
    if key.is_empty() || key.chars().count() > 128 || key.chars().any(char::is_control) {
        return Err(AppError::bad_input(
            "key",
            "key must be 1-128 printable characters",
        ));
    }
    Ok(())
}

/// The category-specific gate: branding writes need `custom_branding`.
async fn check_category_feature(
    conn: &mut Conn,
    tenant: &TenantRow,
    category: &str,
) -> AppResult<()> {
    if category != "branding" {
        return Ok(());
    }
    if features::service::enabled_in(conn, tenant.id, tenant.plan_id, "custom_branding").await? {
        Ok(())
    } else {
        Err(AppError::FeatureDisabled("custom_branding".into()))
    }
}

fn audit_value(encrypted: bool, value: Option<&Value>) -> Value {
    match (encrypted, value) {
        (true, _) => json!(MASK),
        (false, Some(v)) => v.clone(),
        (false, None) => Value::Null,
    }
}

pub async fn set(app: &App, actor: &Actor, input: SetConfig) -> AppResult<ConfigEntry> {
    may_write(actor)?;
    check_category(&input.category)?;
    check_key(&input.key)?;
    if input.value.to_string().len() > 16 * 1024 {
        return Err(AppError::bad_input(
            "value",
            "value must be at most 16 KiB of JSON",
        ));
    }
    let secret = app.settings.config_encryption_key;
    if input.encrypted && secret.is_none() {
        return Err(AppError::bad_input(
            "encrypted",
            "encrypted values are not available: the server has no CONFIG_ENCRYPTION_KEY",
        ));
    }
    let scope = target_scope(actor, input.tenant_id, "config_write")?;
    let actor_c = actor.clone();
    let bounds = app.settings.bounds.clone();
    let row = app
        .db
        .scoped(scope, |c| {
            async move {
                let tenant = crate::tenants::lifecycle::lock_writable(c, &actor_c, input.tenant_id).await?;
                check_category_feature(c, &tenant, &input.category).await?;
                let defaults = store::defaults(c).await?;
                let default = defaults.iter().find(|d| d.category == input.category && d.key == input.key);
                let data_type = match (input.data_type, default) {
                    (Some(t), Some(d)) if t != d.data_type => {
                        return Err(AppError::bad_input(
                            "dataType",
                            format!("{}.{} is a {} setting", input.category, input.key, d.data_type.as_str()),
                        ))
                    }
                    (Some(t), _) => t,
                    (None, Some(d)) => d.data_type,
                    (None, None) => ConfigDataType::infer(&input.value),
                };
                if !data_type.fits(&input.value) {
                    return Err(AppError::bad_input(
                        "value",
                        format!("value does not fit dataType {}", data_type.as_str()),
                    ));
                }
                let before = store::find(c, tenant.id, &input.category, &input.key).await?;
                let totals_before = store::totals(c, tenant.id).await?;
                let (value, encrypted_value) = match secret.filter(|_| input.encrypted) {
                    Some(k) => {
                        let plain = serde_json::to_vec(&input.value).map_err(AppError::internal)?;
                        (None, Some(crypto::encrypt(&k, tenant.id, &input.category, &input.key, &plain)))
                    }
                    None => (Some(input.value.clone()), None),
                };
                let row = store::upsert(
                    c,
                    Upsert {
                        tenant_id: tenant.id,
                        category: &input.category,
                        key: &input.key,
                        value,
                        encrypted_value,
                        data_type,
                        encrypted: input.encrypted,
                        updated_by: actor_c.id.as_deref(),
                    },
                )
                .await?;
                // Measured after the write (the tenant row is locked, so concurrent writers
                // queue): an updated key counts with its new size only. Refusing rolls back.
                let totals_after = store::totals(c, tenant.id).await?;
                super::bounds::check(&bounds, totals_before, totals_after)?;
                audit::record(
                    c,
                    &actor_c,
                    audit::Change {
                        tenant_id: Some(tenant.id),
                        entity_type: "config",
                        entity_id: format!("{}.{}", input.category, input.key),
                        action: if before.is_some() { "UPDATE" } else { "CREATE" },
                        before: before.map_or(Value::Null, |b| audit_value(b.encrypted, b.value.as_ref())),
                        after: audit_value(input.encrypted, Some(&input.value)),
                        metadata: json!({ "dataType": data_type.as_str(), "encrypted": input.encrypted }),
                    },
                )
                .await?;
                Ok(row)
            }
            .scope_boxed()
        })
        .await?;
    changed(app, row.tenant_id).await;
    Ok(ConfigEntry {
        value: visible_value(&row, reveals_secrets(actor), secret.as_ref()),
        category: row.category,
        key: row.key,
        data_type: row.data_type,
        encrypted: row.encrypted,
        layer: ConfigLayer::Tenant,
        updated_at: Some(row.updated_at),
    })
}

/// Deletes the tenant's entries matching `category`/`key` (the defaults show again) and
/// audits each; returns what was deleted.
pub async fn remove(
    app: &App,
    actor: &Actor,
    tenant_id: TenantId,
    category: Option<String>,
    key: Option<String>,
) -> AppResult<Vec<ConfigRow>> {
    may_write(actor)?;
    if let Some(c) = &category {
        check_category(c)?;
    }
    let scope = target_scope(actor, tenant_id, "config_write")?;
    let actor_c = actor.clone();
    let removed = app
        .db
        .scoped(scope, |c| {
            async move {
                let tenant =
                    crate::tenants::lifecycle::lock_writable(c, &actor_c, tenant_id).await?;
                let touches_branding = category.as_deref().is_none_or(|cat| cat == "branding");
                let removed =
                    store::delete(c, tenant.id, category.as_deref(), key.as_deref()).await?;
                if touches_branding && removed.iter().any(|r| r.category == "branding") {
                    check_category_feature(c, &tenant, "branding").await?;
                }
                for r in &removed {
                    audit::record(
                        c,
                        &actor_c,
                        audit::Change {
                            tenant_id: Some(tenant.id),
                            entity_type: "config",
                            entity_id: format!("{}.{}", r.category, r.key),
                            action: "DELETE",
                            before: audit_value(r.encrypted, r.value.as_ref()),
                            after: Value::Null,
                            metadata: json!({ "reset": key.is_none() }),
                        },
                    )
                    .await?;
                }
                Ok(removed)
            }
            .scope_boxed()
        })
        .await?;
    changed(app, tenant_id).await;
    Ok(removed)
}

async fn changed(app: &App, tenant_id: TenantId) {
    app.configs.invalidate(tenant_id).await;
    app.bus.publish(Event::ConfigChanged { tenant_id }).await;
}
