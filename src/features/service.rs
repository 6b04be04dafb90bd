//! Feature rules: evaluation through the in-process cache, and who may override what.
//! Platform admins override anything; tenant admins may switch off (and back on) what their
//! plan includes, never enable what it lacks (FEATURE_NOT_IN_PLAN).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel::QueryResult;
use moka::future::Cache;
use scoped_futures::ScopedFutureExt;
use serde_json::json;

use super::model::{EffectiveFeature, FeatureInputs, FeatureOverride};
use super::store;
use crate::app::App;
use crate::audit;
use crate::auth::{Actor, Role};
use crate::bus::Event;
use crate::db::{Conn, Db, Scope};
use crate::error::{AppError, AppResult};
use crate::ids::{PlanId, TenantId};
use crate::plans;
use crate::tenants::service::target_scope;

/// Per-tenant feature inputs. Invalidated on every instance by `Event::FeaturesChanged` and
/// `Event::TenantChanged`; the TTL only bounds staleness if Redis was unreachable.
#[derive(Clone)]
pub struct FeatureCache(Cache<TenantId, Arc<FeatureInputs>>);

impl Default for FeatureCache {
    fn default() -> Self {
        FeatureCache(
            Cache::builder()
                .max_capacity(100_000)
                .time_to_live(Duration::from_secs(300))
                .build(),
        )
    }
}

impl FeatureCache {
    pub async fn get(&self, tenant_id: TenantId, plan_id: PlanId) -> Option<Arc<FeatureInputs>> {
        let hit = self
            .0
            .get(&tenant_id)
            .await
            .filter(|f| f.plan_id == plan_id);
        let outcome = if hit.is_some() { "hit" } else { "miss" };
        metrics::counter!("tenantry_cache_requests_total", "cache" => "features", "outcome" => outcome).increment(1);
        hit
    }

    pub async fn put(&self, tenant_id: TenantId, inputs: Arc<FeatureInputs>) {
        self.0.insert(tenant_id, inputs).await;
    }

    pub async fn invalidate(&self, tenant_id: TenantId) {
        self.0.invalidate(&tenant_id).await;
    }

    pub fn invalidate_all(&self) {
        self.0.invalidate_all();
    }
}

/// Loads the inputs of several tenants in three statements (definitions, plan entitlements,
/// overrides). `keys` are (tenant id, plan id).
pub async fn load_inputs(
    conn: &mut Conn,
    keys: &[(TenantId, PlanId)],
) -> QueryResult<HashMap<TenantId, FeatureInputs>> {
    let tenant_ids: Vec<TenantId> = keys.iter().map(|k| k.0).collect();
    let mut plan_ids: Vec<PlanId> = keys.iter().map(|k| k.1).collect();
    plan_ids.sort();
    plan_ids.dedup();
    let definitions = Arc::new(store::definitions(conn).await?);
    let plan_features = plans::store::features_of(conn, &plan_ids).await?;
    let overrides = store::overrides_of(conn, &tenant_ids).await?;
    Ok(keys
        .iter()
        .map(|&(tenant_id, plan_id)| {
            let inputs = FeatureInputs {
                plan_id,
                definitions: definitions.clone(),
                plan_features: plan_features
                    .iter()
                    .filter(|(p, _)| *p == plan_id)
                    .map(|(_, f)| f.clone())
                    .collect(),
                overrides: overrides
                    .iter()
                    .filter(|o| o.tenant_id == tenant_id)
                    .cloned()
                    .collect(),
            };
            (tenant_id, inputs)
        })
        .collect())
}

/// Whether feature `key` is enabled for the tenant now, read in the caller's transaction (no
/// cache): for rules that must see what they commit against (branding writes, branded mail).
pub async fn enabled_in(
    conn: &mut Conn,
    tenant_id: TenantId,
    plan_id: PlanId,
    key: &str,
) -> QueryResult<bool> {
    let inputs = load_inputs(conn, &[(tenant_id, plan_id)]).await?;
    Ok(inputs.get(&tenant_id).is_some_and(|i| {
        i.evaluate(chrono::Utc::now())
            .iter()
            .any(|f| f.key == key && f.enabled)
    }))
}

/// Inputs for many tenants: the cache first, one batch of statements for the misses.
pub async fn inputs_of(
    app: &App,
    db: &Db,
    scope: Scope,
    keys: &[(TenantId, PlanId)],
) -> AppResult<HashMap<TenantId, Arc<FeatureInputs>>> {
    let mut found = HashMap::new();
    let mut missing = Vec::new();
    for &(tenant_id, plan_id) in keys {
        match app.features.get(tenant_id, plan_id).await {
            Some(hit) => {
                found.insert(tenant_id, hit);
            }
            None => missing.push((tenant_id, plan_id)),
        }
    }
    if !missing.is_empty() {
        let loaded = db
            .scoped(scope, |c| {
                async move { Ok(load_inputs(c, &missing).await?) }.scope_boxed()
            })
            .await?;
        for (tenant_id, inputs) in loaded {
            let inputs = Arc::new(inputs);
            app.features.put(tenant_id, inputs.clone()).await;
            found.insert(tenant_id, inputs);
        }
    }
    Ok(found)
}

/// Effective flags of one tenant (an in-memory look-up when the cache is warm).
pub async fn effective(
    app: &App,
    db: &Db,
    scope: Scope,
    tenant_id: TenantId,
    plan_id: PlanId,
) -> AppResult<Vec<EffectiveFeature>> {
    let inputs = inputs_of(app, db, scope, &[(tenant_id, plan_id)]).await?;
    Ok(inputs
        .get(&tenant_id)
        .map(|i| i.evaluate(Utc::now()))
        .unwrap_or_default())
}

pub async fn is_enabled(
    app: &App,
    db: &Db,
    scope: Scope,
    tenant_id: TenantId,
    plan_id: PlanId,
    key: &str,
) -> AppResult<bool> {
    let flags = effective(app, db, scope, tenant_id, plan_id).await?;
    Ok(flags.iter().any(|f| f.key == key && f.enabled))
}

/// Fails with FEATURE_DISABLED unless `key` is on for the tenant.
pub async fn require(
    app: &App,
    db: &Db,
    scope: Scope,
    tenant_id: TenantId,
    plan_id: PlanId,
    key: &str,
) -> AppResult<()> {
    if is_enabled(app, db, scope, tenant_id, plan_id, key).await? {
        Ok(())
    } else {
        Err(AppError::FeatureDisabled(key.to_owned()))
    }
}

/// Locks the tenant and checks the override rules shared by set and clear: the tenant is
/// live and writable for the actor, the key exists, and a tenant admin only touches what the
/// plan includes.
async fn locked_inputs(
    c: &mut Conn,
    actor: &Actor,
    tenant_id: TenantId,
    key: &str,
) -> AppResult<(crate::tenants::model::TenantRow, FeatureInputs)> {
    let tenant = crate::tenants::lifecycle::lock_writable(c, actor, tenant_id).await?;
    let inputs = load_inputs(c, &[(tenant.id, tenant.plan_id)])
        .await?
        .remove(&tenant.id)
        .ok_or_else(|| AppError::not_found("tenant"))?;
    if !inputs.definitions.iter().any(|d| d.key == key) {
        return Err(AppError::bad_input(
            "key",
            format!("unknown feature {key:?}"),
        ));
    }
    if !actor.is_platform() && !inputs.plan_features.iter().any(|f| f == key) {
        return Err(AppError::FeatureNotInPlan(key.to_owned()));
    }
    Ok((tenant, inputs))
}

/// What a platform actor set (an admin's decision, a webhook's or job's effect) is theirs:
/// a tenant admin may neither replace nor clear it.
fn guard_provenance(actor: &Actor, existing: Option<&FeatureOverride>) -> AppResult<()> {
    if !actor.is_platform() && existing.is_some_and(FeatureOverride::set_by_platform) {
        return Err(AppError::forbidden(
            "this feature override was set by a platform administrator; only a platform administrator can change it",
        ));
    }
    Ok(())
}

/// Entitlements follow the plan: deletes the tenant's enabling overrides of features `plan_id`
/// does not include (disabling ones only restrict, so they stay), with one audit entry, in the
/// caller's transaction (the one that switches the plan). The caller invalidates the feature
/// caches of every instance after commit (`App::tenant_changed`). Returns the removed keys.
pub async fn reconcile_with_plan(
    c: &mut Conn,
    actor: &Actor,
    tenant_id: TenantId,
    plan: &crate::plans::model::PlanRow,
) -> AppResult<Vec<String>> {
    let included: Vec<String> = plans::store::features_of(c, &[plan.id])
        .await?
        .into_iter()
        .map(|(_, key)| key)
        .collect();
    let removed = store::delete_enabling_except(c, tenant_id, &included).await?;
    if removed.is_empty() {
        return Ok(vec![]);
    }
    let keys: Vec<String> = removed.iter().map(|o| o.feature_key.clone()).collect();
    let views: Vec<serde_json::Value> = removed
        .iter()
        .map(|o| json!({ "key": o.feature_key, "enabled": o.enabled, "expiresAt": o.expires_at, "setByType": o.set_by_type }))
        .collect();
    audit::record(
        c,
        actor,
        audit::Change {
            tenant_id: Some(tenant_id),
            entity_type: "tenant",
            entity_id: tenant_id.to_string(),
            action: "UPDATE",
            before: json!({ "featureOverrides": views }),
            after: json!({ "featureOverrides": [] }),
            metadata: json!({
                "reason": "plan change: overrides enabling features outside the new plan removed",
                "plan": plan.slug,
                "removedOverrides": keys,
            }),
        },
    )
    .await?;
    Ok(keys)
}

/// Sets (or replaces) a tenant's override of `key` and returns the effective flag.
pub async fn set_override(
    app: &App,
    actor: &Actor,
    tenant_id: TenantId,
    key: &str,
    enabled: bool,
    expires_at: Option<DateTime<Utc>>,
) -> AppResult<EffectiveFeature> {
    actor.require(Role::TenantAdmin)?;
    let scope = target_scope(actor, tenant_id, "feature_override")?;
    let (actor_c, key_c) = (actor.clone(), key.to_owned());
    let tenant = app
        .db
        .scoped(scope, |c| {
            async move {
                let (tenant, inputs) = locked_inputs(c, &actor_c, tenant_id, &key_c).await?;
                let before = inputs
                    .overrides
                    .iter()
                    .find(|o| o.feature_key == key_c)
                    .cloned();
                guard_provenance(&actor_c, before.as_ref())?;
                store::upsert_override(
                    c,
                    tenant_id,
                    &key_c,
                    enabled,
                    expires_at,
                    actor_c.id.as_deref(),
                    actor_c.kind.as_str(),
                    Utc::now(),
                )
                .await?;
                audit::record(
                    c,
                    &actor_c,
                    audit::Change {
                        tenant_id: Some(tenant_id),
                        entity_type: "feature",
                        entity_id: key_c.clone(),
                        action: if before.is_some() { "UPDATE" } else { "CREATE" },
                        before: before
                            .as_ref()
                            .map_or(serde_json::Value::Null, override_view),
                        after: json!({ "enabled": enabled, "expiresAt": expires_at }),
                        metadata: json!({}),
                    },
                )
                .await?;
                Ok(tenant)
            }
            .scope_boxed()
        })
        .await?;
    changed(app, tenant_id).await;
    one(app, scope, tenant.id, tenant.plan_id, key).await
}

/// Removes a tenant's override; the flag falls back to the plan (or the default).
pub async fn clear_override(
    app: &App,
    actor: &Actor,
    tenant_id: TenantId,
    key: &str,
) -> AppResult<EffectiveFeature> {
    actor.require(Role::TenantAdmin)?;
    let scope = target_scope(actor, tenant_id, "feature_override")?;
    let (actor_c, key_c) = (actor.clone(), key.to_owned());
    let tenant = app
        .db
        .scoped(scope, |c| {
            async move {
                let (tenant, inputs) = locked_inputs(c, &actor_c, tenant_id, &key_c).await?;
                let existing = inputs.overrides.iter().find(|o| o.feature_key == key_c);
                guard_provenance(&actor_c, existing)?;
                let removed = store::delete_override(c, tenant_id, &key_c).await?;
                if removed > 0 {
                    let before = existing;
                    audit::record(
                        c,
                        &actor_c,
                        audit::Change {
                            tenant_id: Some(tenant_id),
                            entity_type: "feature",
                            entity_id: key_c.clone(),
                            action: "DELETE",
                            before: before.map_or(serde_json::Value::Null, override_view),
                            after: serde_json::Value::Null,
                            metadata: json!({}),
                        },
                    )
                    .await?;
                }
                Ok(tenant)
            }
            .scope_boxed()
        })
        .await?;
    changed(app, tenant_id).await;
    one(app, scope, tenant.id, tenant.plan_id, key).await
}

async fn one(
    app: &App,
    scope: Scope,
    tenant_id: TenantId,
    plan_id: PlanId,
    key: &str,
) -> AppResult<EffectiveFeature> {
    effective(app, &app.db, scope, tenant_id, plan_id)
        .await?
        .into_iter()
        .find(|f| f.key == key)
        .ok_or_else(|| AppError::not_found("feature"))
}

/// An override as the audit log records it.
fn override_view(o: &super::model::FeatureOverride) -> serde_json::Value {
    json!({ "enabled": o.enabled, "expiresAt": o.expires_at })
}

async fn changed(app: &App, tenant_id: TenantId) {
    app.features.invalidate(tenant_id).await;
    app.bus.publish(Event::FeaturesChanged { tenant_id }).await;
}
