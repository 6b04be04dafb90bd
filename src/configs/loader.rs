//! DataLoader: a tenant's configuration, through the config cache.

use std::collections::HashMap;
use std::sync::Arc;

use async_graphql::dataloader::Loader;

use super::service::{self, TenantConfig};
use crate::error::AppError;
use crate::graphql::loaders::DbLoader;
use crate::ids::TenantId;

#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub struct ConfigOfTenant(pub TenantId);

impl Loader<ConfigOfTenant> for DbLoader {
    type Value = Arc<TenantConfig>;
    type Error = AppError;

    async fn load(
        &self,
        keys: &[ConfigOfTenant],
    ) -> Result<HashMap<ConfigOfTenant, Self::Value>, AppError> {
        let ids: Vec<TenantId> = keys.iter().map(|k| k.0).collect();
        let found = service::of_tenants(&self.app, &self.db, self.scope, &ids).await?;
        Ok(found
            .into_iter()
            .map(|(id, cfg)| (ConfigOfTenant(id), cfg))
            .collect())
    }
}
