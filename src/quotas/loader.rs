//! DataLoader: a tenant's quotas.

use std::collections::HashMap;

use async_graphql::dataloader::Loader;
use scoped_futures::ScopedFutureExt;

use super::model::QuotaRow;
use super::store;
use crate::error::AppError;
use crate::graphql::loaders::{group_by, DbLoader};
use crate::ids::TenantId;

#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub struct QuotasOfTenant(pub TenantId);

impl Loader<QuotasOfTenant> for DbLoader {
    type Value = Vec<QuotaRow>;
    type Error = AppError;

    async fn load(
        &self,
        keys: &[QuotasOfTenant],
    ) -> Result<HashMap<QuotasOfTenant, Self::Value>, AppError> {
        let ids: Vec<TenantId> = keys.iter().map(|k| k.0).collect();
        let rows = self
            .run(|c| async move { Ok(store::of_tenants(c, &ids).await?) }.scope_boxed())
            .await?;
        Ok(group_by(keys, rows, |r| QuotasOfTenant(r.tenant_id)))
    }
}
