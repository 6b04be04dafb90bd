//! Plans by id, in memory: the rate limiter and the internal API read a tenant's plan on
//! every request. Plans change rarely (seed, admin edits); entries live one minute.

use std::time::Duration;

use moka::future::Cache;
use scoped_futures::ScopedFutureExt;

use super::model::PlanRow;
use super::store;
use crate::db::{Db, Scope};
use crate::error::{AppError, AppResult};
use crate::ids::PlanId;

#[derive(Clone)]
pub struct PlanCache(Cache<PlanId, PlanRow>);

impl Default for PlanCache {
    fn default() -> Self {
        PlanCache(
            Cache::builder()
                .max_capacity(1_000)
                .time_to_live(Duration::from_secs(60))
                .build(),
        )
    }
}

impl PlanCache {
    pub async fn by_id(&self, db: &Db, id: PlanId) -> AppResult<PlanRow> {
        if let Some(p) = self.0.get(&id).await {
            return Ok(p);
        }
        let rows = db
            .scoped(Scope::Anonymous, |c| {
                async move { Ok(store::by_ids(c, &[id]).await?) }.scope_boxed()
            })
            .await?;
        let plan = rows
            .into_iter()
            .next()
            .ok_or_else(|| AppError::internal(anyhow::anyhow!("plan {id} missing")))?;
        self.0.insert(id, plan.clone()).await;
        Ok(plan)
    }
}
