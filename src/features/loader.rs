//! DataLoader: a tenant's effective features, through the feature cache. The key carries the
//! plan id, so a batch needs no tenant look-up; misses cost three statements per batch.

use std::collections::HashMap;

use async_graphql::dataloader::Loader;
use chrono::Utc;

use super::model::EffectiveFeature;
use super::service;
use crate::error::AppError;
use crate::graphql::loaders::DbLoader;
use crate::ids::{PlanId, TenantId};

#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub struct FeaturesOfTenant {
    pub tenant_id: TenantId,
    pub plan_id: PlanId,
}

impl Loader<FeaturesOfTenant> for DbLoader {
    type Value = Vec<EffectiveFeature>;
    type Error = AppError;

    async fn load(
        &self,
        keys: &[FeaturesOfTenant],
    ) -> Result<HashMap<FeaturesOfTenant, Self::Value>, AppError> {
        let pairs: Vec<(TenantId, PlanId)> =
            keys.iter().map(|k| (k.tenant_id, k.plan_id)).collect();
        let inputs = service::inputs_of(&self.app, &self.db, self.scope, &pairs).await?;
        let now = Utc::now();
        Ok(keys
            .iter()
            .filter_map(|k| inputs.get(&k.tenant_id).map(|i| (*k, i.evaluate(now))))
            .collect())
    }
}
