//! DataLoader: a tenant's effective features. The key carries the plan id, so a batch needs
//! no tenant lookup: definitions, plan entitlements and overrides are three statements.

use std::collections::HashMap;

use async_graphql::dataloader::Loader;
use chrono::Utc;
use scoped_futures::ScopedFutureExt;
use uuid::Uuid;

use super::model::{evaluate, EffectiveFeature};
use super::store;
use crate::error::AppError;
use crate::graphql::loaders::DbLoader;
use crate::plans;

#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub struct FeaturesOfTenant {
    pub tenant_id: Uuid,
    pub plan_id: Uuid,
}

impl Loader<FeaturesOfTenant> for DbLoader {
    type Value = Vec<EffectiveFeature>;
    type Error = AppError;

    async fn load(
        &self,
        keys: &[FeaturesOfTenant],
    ) -> Result<HashMap<FeaturesOfTenant, Self::Value>, AppError> {
        let tenant_ids: Vec<Uuid> = keys.iter().map(|k| k.tenant_id).collect();
        let mut plan_ids: Vec<Uuid> = keys.iter().map(|k| k.plan_id).collect();
        plan_ids.sort();
        plan_ids.dedup();
        let (defs, plan_features, overrides) = self
            .run(|c| {
                async move {
                    let defs = store::definitions(c).await?;
                    let plan_features = plans::store::features_of(c, &plan_ids).await?;
                    let overrides = store::overrides_of(c, &tenant_ids).await?;
                    Ok((defs, plan_features, overrides))
                }
                .scope_boxed()
            })
            .await?;
        let now = Utc::now();
        Ok(keys
            .iter()
            .map(|k| {
                let plan: Vec<String> = plan_features
                    .iter()
                    .filter(|(p, _)| *p == k.plan_id)
                    .map(|(_, f)| f.clone())
                    .collect();
                let own: Vec<_> = overrides
                    .iter()
                    .filter(|o| o.tenant_id == k.tenant_id)
                    .cloned()
                    .collect();
                (*k, evaluate(&defs, &plan, &own, now))
            })
            .collect())
    }
}
