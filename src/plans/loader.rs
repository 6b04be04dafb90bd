//! DataLoaders for plans and their prices, features and quotas.

use std::collections::HashMap;

use async_graphql::dataloader::Loader;
use scoped_futures::ScopedFutureExt;

use super::model::{PlanPriceRow, PlanQuotaRow, PlanRow};
use super::store;
use crate::error::AppError;
use crate::graphql::loaders::{group_by, DbLoader};
use crate::ids::PlanId;

#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub struct PlanById(pub PlanId);
/// An active plan by slug (federation references): one read of the catalogue per request,
/// however many references name plans.
#[derive(Debug, Clone, Hash, PartialEq, Eq)]
pub struct ActivePlanBySlug(pub String);
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub struct PricesOfPlan(pub PlanId);
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub struct FeaturesOfPlan(pub PlanId);
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub struct QuotasOfPlan(pub PlanId);

fn ids<K: Copy>(keys: &[K], f: impl Fn(K) -> PlanId) -> Vec<PlanId> {
    keys.iter().map(|k| f(*k)).collect()
}

impl Loader<PlanById> for DbLoader {
    type Value = PlanRow;
    type Error = AppError;

    /// Through the plan cache: plans are global and change rarely.
    async fn load(&self, keys: &[PlanById]) -> Result<HashMap<PlanById, PlanRow>, AppError> {
        let plans = self.app.plans.many(&self.db, &ids(keys, |k| k.0)).await?;
        Ok(plans.into_iter().map(|(id, p)| (PlanById(id), p)).collect())
    }
}

impl Loader<ActivePlanBySlug> for DbLoader {
    type Value = PlanRow;
    type Error = AppError;

    async fn load(
        &self,
        keys: &[ActivePlanBySlug],
    ) -> Result<HashMap<ActivePlanBySlug, PlanRow>, AppError> {
        let rows = self
            .run(|c| async move { Ok(store::list_active(c).await?) }.scope_boxed())
            .await?;
        Ok(rows
            .into_iter()
            .map(|p| (ActivePlanBySlug(p.slug.clone()), p))
            .filter(|(k, _)| keys.contains(k))
            .collect())
    }
}

impl Loader<PricesOfPlan> for DbLoader {
    type Value = Vec<PlanPriceRow>;
    type Error = AppError;

    async fn load(
        &self,
        keys: &[PricesOfPlan],
    ) -> Result<HashMap<PricesOfPlan, Self::Value>, AppError> {
        let ids = ids(keys, |k| k.0);
        let rows = self
            .run(|c| async move { Ok(store::prices_of(c, &ids).await?) }.scope_boxed())
            .await?;
        Ok(group_by(keys, rows, |r| PricesOfPlan(r.plan_id)))
    }
}

impl Loader<FeaturesOfPlan> for DbLoader {
    type Value = Vec<String>;
    type Error = AppError;

    async fn load(
        &self,
        keys: &[FeaturesOfPlan],
    ) -> Result<HashMap<FeaturesOfPlan, Self::Value>, AppError> {
        let ids = ids(keys, |k| k.0);
        let rows = self
            .run(|c| async move { Ok(store::features_of(c, &ids).await?) }.scope_boxed())
            .await?;
        let grouped = group_by(keys, rows, |(plan, _)| FeaturesOfPlan(*plan));
        Ok(grouped
            .into_iter()
            .map(|(k, v)| (k, v.into_iter().map(|(_, f)| f).collect()))
            .collect())
    }
}

impl Loader<QuotasOfPlan> for DbLoader {
    type Value = Vec<PlanQuotaRow>;
    type Error = AppError;

    async fn load(
        &self,
        keys: &[QuotasOfPlan],
    ) -> Result<HashMap<QuotasOfPlan, Self::Value>, AppError> {
        let ids = ids(keys, |k| k.0);
        let rows = self
            .run(|c| async move { Ok(store::quotas_of(c, &ids).await?) }.scope_boxed())
            .await?;
        Ok(group_by(keys, rows, |r| QuotasOfPlan(r.plan_id)))
    }
}
