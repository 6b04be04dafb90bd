//! DataLoaders of billing: a tenant's subscription mirror, batched across a page of tenants.

use std::collections::HashMap;

use async_graphql::dataloader::Loader;
use scoped_futures::ScopedFutureExt;

use super::model::SubscriptionRow;
use super::store;
use crate::error::AppError;
use crate::graphql::loaders::DbLoader;
use crate::ids::TenantId;

#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub struct SubscriptionOfTenant(pub TenantId);

impl Loader<SubscriptionOfTenant> for DbLoader {
    type Value = SubscriptionRow;
    type Error = AppError;

    async fn load(
        &self,
        keys: &[SubscriptionOfTenant],
    ) -> Result<HashMap<SubscriptionOfTenant, SubscriptionRow>, AppError> {
        let ids: Vec<TenantId> = keys.iter().map(|k| k.0).collect();
        let rows = self
            .run(|c| async move { Ok(store::subscriptions_of(c, &ids).await?) }.scope_boxed())
            .await?;
        Ok(rows
            .into_iter()
            .map(|r| (SubscriptionOfTenant(r.tenant_id), r))
            .collect())
    }
}
