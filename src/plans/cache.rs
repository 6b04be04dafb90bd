//! Plans by id, in memory: the rate limiter, the internal API and GraphQL's `tenant { plan }`
//! read a tenant's plan on most requests. Plans change rarely; a change is announced with
//! `App::plans_changed`, which empties this cache on every instance (entries also expire
//! after one minute, the bound on staleness should an announcement be missed).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use std::time::Duration;

use moka::future::Cache;
use scoped_futures::ScopedFutureExt;

use super::model::PlanRow;
use super::store;
use crate::db::{Db, Scope};
use crate::error::{AppError, AppResult};
use crate::ids::PlanId;

#[derive(Clone)]
pub struct PlanCache {
    plans: Cache<PlanId, PlanRow>,
    /// Bumped by every invalidation: a read that started before one does not store its
    /// (possibly stale) rows.
    generation: Arc<AtomicU64>,
}

impl Default for PlanCache {
    fn default() -> Self {
        PlanCache {
            plans: Cache::builder()
                .max_capacity(1_000)
                .time_to_live(Duration::from_secs(60))
                .build(),
            generation: Arc::default(),
        }
    }
}

impl PlanCache {
    pub async fn by_id(&self, db: &Db, id: PlanId) -> AppResult<PlanRow> {
        self.many(db, &[id])
            .await?
            .remove(&id)
            .ok_or_else(|| AppError::internal(anyhow::anyhow!("plan {id} missing")))
    }

    /// The plans of `ids` that exist; the ones not cached are read in one query.
    pub async fn many(&self, db: &Db, ids: &[PlanId]) -> AppResult<HashMap<PlanId, PlanRow>> {
        let mut found = HashMap::with_capacity(ids.len());
        let mut missing = Vec::new();
        for id in ids {
            match self.plans.get(id).await {
                Some(p) => {
                    found.insert(*id, p);
                }
                None => missing.push(*id),
            }
        }
        if missing.is_empty() {
            return Ok(found);
        }
        let generation = self.generation.load(Ordering::SeqCst);
        let rows = db
            .scoped(Scope::Anonymous, |c| {
                async move { Ok(store::by_ids(c, &missing).await?) }.scope_boxed()
            })
            .await?;
        for plan in rows {
            if self.generation.load(Ordering::SeqCst) == generation {
                self.plans.insert(plan.id, plan.clone()).await;
            }
            found.insert(plan.id, plan);
        }
        // An invalidation while the rows were stored: take them back out.
        if self.generation.load(Ordering::SeqCst) != generation {
            self.plans.invalidate_all();
        }
        Ok(found)
    }

    /// Drops every cached plan (a plan changed, here or on another instance).
    pub fn invalidate_all(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.plans.invalidate_all();
    }
}
