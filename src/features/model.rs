//! Feature definitions, overrides and the evaluation rule.

use chrono::{DateTime, Utc};
use diesel::prelude::*;

use crate::db::schema::{feature_definitions, tenant_features};
use crate::ids::{PlanId, TenantId};

#[derive(Queryable, Selectable, Debug, Clone)]
#[diesel(table_name = feature_definitions, check_for_backend(diesel::pg::Pg))]
pub struct FeatureDefinition {
    pub key: String,
    pub name: String,
    pub description: String,
    pub default_enabled: bool,
}

#[derive(Queryable, Selectable, Debug, Clone)]
#[diesel(table_name = tenant_features, check_for_backend(diesel::pg::Pg))]
pub struct FeatureOverride {
    pub tenant_id: TenantId,
    pub feature_key: String,
    pub enabled: bool,
    pub expires_at: Option<DateTime<Utc>>,
    /// The actor type (`USER`, `ADMIN`, `SYSTEM`, ...) that set it; `None` for overrides older
    /// than the column whose audit trail did not say.
    pub set_by_type: Option<String>,
}

impl FeatureOverride {
    /// Set by a platform actor (admin, system, webhook, service): tenant admins may not
    /// change or clear it.
    pub fn set_by_platform(&self) -> bool {
        matches!(
            self.set_by_type.as_deref(),
            Some("ADMIN" | "SYSTEM" | "WEBHOOK" | "SERVICE")
        )
    }
}

#[derive(async_graphql::Enum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeatureSource {
    Plan,
    Override,
    Default,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EffectiveFeature {
    pub key: String,
    pub enabled: bool,
    pub source: FeatureSource,
    pub expires_at: Option<DateTime<Utc>>,
}

/// Effective flags: an unexpired override wins, else the plan's entitlement, else the default.
/// An override whose `expires_at` has passed stops counting at once, with no job involved.
pub fn evaluate(
    definitions: &[FeatureDefinition],
    plan_features: &[String],
    overrides: &[FeatureOverride],
    now: DateTime<Utc>,
) -> Vec<EffectiveFeature> {
    definitions
        .iter()
        .map(|def| {
            let active = overrides
                .iter()
                .find(|o| o.feature_key == def.key && o.expires_at.is_none_or(|t| t > now));
            match active {
                Some(o) => EffectiveFeature {
                    key: def.key.clone(),
                    enabled: o.enabled,
                    source: FeatureSource::Override,
                    expires_at: o.expires_at,
                },
                None if plan_features.contains(&def.key) => EffectiveFeature {
                    key: def.key.clone(),
                    enabled: true,
                    source: FeatureSource::Plan,
                    expires_at: None,
                },
                None => EffectiveFeature {
                    key: def.key.clone(),
                    enabled: def.default_enabled,
                    source: FeatureSource::Default,
                    expires_at: None,
                },
            }
        })
        .collect()
}

/// What a tenant's flags are computed from; cached per tenant and evaluated at read time, so
/// an override's expiry takes effect without invalidation or a job.
#[derive(Debug, Clone)]
pub struct FeatureInputs {
    pub plan_id: PlanId,
    pub definitions: std::sync::Arc<Vec<FeatureDefinition>>,
    pub plan_features: Vec<String>,
    pub overrides: Vec<FeatureOverride>,
}

impl FeatureInputs {
    pub fn evaluate(&self, now: DateTime<Utc>) -> Vec<EffectiveFeature> {
        evaluate(&self.definitions, &self.plan_features, &self.overrides, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn def(key: &str) -> FeatureDefinition {
        FeatureDefinition {
            key: key.into(),
            name: key.into(),
            description: String::new(),
            default_enabled: false,
        }
    }

    #[test]
    fn override_beats_plan_until_it_expires() {
        let now = Utc::now();
        let defs = [def("a"), def("b"), def("c")];
        let plan = vec!["a".to_string()];
        let ov = |k: &str, enabled, exp: Option<DateTime<Utc>>| FeatureOverride {
            tenant_id: TenantId::from(uuid::Uuid::nil()),
            feature_key: k.into(),
            enabled,
            expires_at: exp,
            set_by_type: None,
        };
        let got = evaluate(
            &defs,
            &plan,
            &[
                ov("a", false, None),
                ov("b", true, Some(now - chrono::Duration::seconds(1))),
            ],
            now,
        );
        assert_eq!(
            (got[0].enabled, got[0].source),
            (false, FeatureSource::Override)
        );
        assert_eq!(
            (got[1].enabled, got[1].source),
            (false, FeatureSource::Default)
        );
        assert_eq!(
            (got[2].enabled, got[2].source),
            (false, FeatureSource::Default)
        );
        let got = evaluate(&defs, &plan, &[], now);
        assert_eq!((got[0].enabled, got[0].source), (true, FeatureSource::Plan));
    }
}
