//! How the configuration layers read and merge: the tenant layer (defaults overridden by the
//! tenant's entries, encrypted values decrypted or masked) and the effective view where the
//! read-only `system` and `plan` layers come first and the tenant's categories follow. Pure:
//! the caller (`service`) loads the inputs.

use std::sync::Arc;

use serde_json::{json, Map, Value};

use super::crypto;
use super::model::{ConfigDefault, ConfigEntry, ConfigLayer, ConfigRow, MASK};
use crate::features::model::EffectiveFeature;
use crate::ids::TenantId;
use crate::plans::model::{PlanQuotaRow, PlanRow};

/// A tenant's stored entries plus the defaults they override.
#[derive(Debug)]
pub struct TenantConfig {
    pub tenant_id: TenantId,
    pub rows: Vec<ConfigRow>,
    pub defaults: Arc<Vec<ConfigDefault>>,
}

impl TenantConfig {
    /// One key of the tenant layer: the tenant's entry (decrypted with `secret` when
    /// encrypted), else the default.
    pub fn value(&self, category: &str, key: &str, secret: Option<&[u8; 32]>) -> Option<Value> {
        match self
            .rows
            .iter()
            .find(|r| r.category == category && r.key == key)
        {
            Some(row) => Some(visible_value(row, true, secret)),
            None => self.default_value(category, key),
        }
    }

    /// One key's default (`config_defaults`), whatever the tenant set.
    pub fn default_value(&self, category: &str, key: &str) -> Option<Value> {
        self.defaults
            .iter()
            .find(|d| d.category == category && d.key == key)
            .map(|d| d.value.clone())
    }

    /// The tenant layer: defaults, overridden by the tenant's entries; `category` filters.
    pub fn entries(
        &self,
        category: Option<&str>,
        reveal: bool,
        secret: Option<&[u8; 32]>,
    ) -> Vec<ConfigEntry> {
        let wanted = |c: &str| category.is_none_or(|w| w == c);
        let mut out: Vec<ConfigEntry> = self
            .defaults
            .iter()
            .filter(|d| wanted(&d.category))
            .filter(|d| {
                !self
                    .rows
                    .iter()
                    .any(|r| r.category == d.category && r.key == d.key)
            })
            .map(|d| ConfigEntry {
                category: d.category.clone(),
                key: d.key.clone(),
                value: d.value.clone(),
                data_type: d.data_type,
                encrypted: false,
                layer: ConfigLayer::Default,
                updated_at: None,
            })
            .collect();
        out.extend(
            self.rows
                .iter()
                .filter(|r| wanted(&r.category))
                .map(|r| ConfigEntry {
                    category: r.category.clone(),
                    key: r.key.clone(),
                    value: visible_value(r, reveal, secret),
                    data_type: r.data_type,
                    encrypted: r.encrypted,
                    layer: ConfigLayer::Tenant,
                    updated_at: Some(r.updated_at),
                }),
        );
        out.sort_by(|a, b| (&a.category, &a.key).cmp(&(&b.category, &b.key)));
        out
    }
}

/// A stored value as the caller may see it: plain, decrypted for those who may, else masked.
pub(super) fn visible_value(row: &ConfigRow, reveal: bool, secret: Option<&[u8; 32]>) -> Value {
    if !row.encrypted {
        return row.value.clone().unwrap_or(Value::Null);
    }
    if !reveal {
        return json!(MASK);
    }
    let plain = secret
        .zip(row.encrypted_value.as_deref())
        .and_then(|(k, stored)| crypto::decrypt(k, row.tenant_id, &row.category, &row.key, stored));
    match plain.and_then(|p| serde_json::from_slice(&p).ok()) {
        Some(v) => v,
        None => {
            tracing::error!(tenant_id = %row.tenant_id, category = %row.category, key = %row.key,
                "cannot decrypt config value (CONFIG_ENCRYPTION_KEY missing or changed)");
            json!(MASK)
        }
    }
}

/// What the read-only layers are built from.
pub(super) struct ReadOnlyLayers<'a> {
    pub environment: &'a str,
    pub region: &'a str,
    pub billing_live: bool,
    pub plan: Option<&'a PlanRow>,
    pub quotas: &'a [PlanQuotaRow],
    pub flags: &'a [EffectiveFeature],
}

/// `{ system: {..}, plan: {..}, <category>: {..} }`, each leaf `{ value, layer }`.
pub(super) fn merge(fixed: ReadOnlyLayers<'_>, tenant_layer: Vec<ConfigEntry>) -> Value {
    let entry =
        |value: Value, layer: ConfigLayer| json!({ "value": value, "layer": layer.as_str() });
    let mut merged: Map<String, Value> = Map::new();
    let mut system = Map::new();
    system.insert(
        "version".into(),
        entry(json!(env!("CARGO_PKG_VERSION")), ConfigLayer::System),
    );
    system.insert(
        "environment".into(),
        entry(json!(fixed.environment), ConfigLayer::System),
    );
    system.insert(
        "region".into(),
        entry(json!(fixed.region), ConfigLayer::System),
    );
    system.insert(
        "billingMode".into(),
        entry(
            json!(if fixed.billing_live {
                "STRIPE"
            } else {
                "LOCAL"
            }),
            ConfigLayer::System,
        ),
    );
    merged.insert("system".into(), Value::Object(system));

    let mut plan_layer = Map::new();
    if let Some(p) = fixed.plan {
        plan_layer.insert("slug".into(), entry(json!(p.slug), ConfigLayer::Plan));
        plan_layer.insert(
            "rateLimitPerMinute".into(),
            entry(json!(p.rate_limit_per_minute), ConfigLayer::Plan),
        );
    }
    let limits: Map<String, Value> = fixed
        .quotas
        .iter()
        .map(|q| (q.resource.clone(), json!(q.limit)))
        .collect();
    plan_layer.insert(
        "limits".into(),
        entry(Value::Object(limits), ConfigLayer::Plan),
    );
    let enabled: Vec<&str> = fixed
        .flags
        .iter()
        .filter(|f| f.enabled)
        .map(|f| f.key.as_str())
        .collect();
    plan_layer.insert("features".into(), entry(json!(enabled), ConfigLayer::Plan));
    merged.insert("plan".into(), Value::Object(plan_layer));

    for e in tenant_layer {
        let cat = merged
            .entry(e.category.clone())
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(m) = cat {
            m.insert(e.key.clone(), entry(e.value, e.layer));
        }
    }
    Value::Object(merged)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::features::model::FeatureSource;

    #[test]
    fn read_only_layers_come_first_and_tenant_categories_follow() {
        let flag = |key: &str, enabled| EffectiveFeature {
            key: key.into(),
            enabled,
            source: FeatureSource::Plan,
            expires_at: None,
        };
        let merged = merge(
            ReadOnlyLayers {
                environment: "test",
                region: "EU",
                billing_live: false,
                plan: None,
                quotas: &[],
                flags: &[flag("sso", true), flag("audit_logs", false)],
            },
            vec![ConfigEntry {
                category: "branding".into(),
                key: "color".into(),
                value: json!("#fff"),
                data_type: super::super::model::ConfigDataType::String,
                encrypted: false,
                layer: ConfigLayer::Tenant,
                updated_at: None,
            }],
        );
        assert_eq!(
            merged["system"]["region"],
            json!({ "value": "EU", "layer": "SYSTEM" })
        );
        assert_eq!(merged["system"]["billingMode"]["value"], json!("LOCAL"));
        assert_eq!(
            merged["plan"]["features"],
            json!({ "value": ["sso"], "layer": "PLAN" })
        );
        assert_eq!(merged["plan"]["limits"]["value"], json!({}));
        assert_eq!(
            merged["branding"]["color"],
            json!({ "value": "#fff", "layer": "TENANT" })
        );
    }
}
