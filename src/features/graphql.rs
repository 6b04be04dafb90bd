//! GraphQL shape of a feature flag (SPEC §5 `Feature`).

use async_graphql::SimpleObject;
use chrono::{DateTime, Utc};

use super::model::{EffectiveFeature, FeatureSource};

#[derive(SimpleObject)]
pub struct Feature {
    pub key: String,
    pub enabled: bool,
    pub source: FeatureSource,
    pub expires_at: Option<DateTime<Utc>>,
}

impl From<EffectiveFeature> for Feature {
    fn from(f: EffectiveFeature) -> Self {
        Feature {
            key: f.key,
            enabled: f.enabled,
            source: f.source,
            expires_at: f.expires_at,
        }
    }
}
