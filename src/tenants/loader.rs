//! DataLoaders for tenants' own nested data.

use std::collections::HashMap;

use async_graphql::dataloader::Loader;
use chrono::Utc;
use scoped_futures::ScopedFutureExt;

use super::model::DomainClaim;
use super::store;
use crate::error::AppError;
use crate::graphql::loaders::DbLoader;
use crate::ids::TenantId;

/// A tenant's unexpired custom-domain claim (`Tenant.pendingDomain`).
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub struct PendingDomainOf(pub TenantId);

impl Loader<PendingDomainOf> for DbLoader {
    type Value = DomainClaim;
    type Error = AppError;

    async fn load(
        &self,
        keys: &[PendingDomainOf],
    ) -> Result<HashMap<PendingDomainOf, DomainClaim>, AppError> {
        let ids: Vec<TenantId> = keys.iter().map(|k| k.0).collect();
        let rows = self
            .run(|c| {
                async move { Ok(store::live_claims(c, &ids, Utc::now()).await?) }.scope_boxed()
            })
            .await?;
        Ok(rows
            .into_iter()
            .map(|r| (PendingDomainOf(r.tenant_id), r))
            .collect())
    }
}
