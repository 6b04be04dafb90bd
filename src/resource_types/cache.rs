//! The resource types, in memory: `recordUsage` and the internal usage endpoint check every
//! increment's resource against them, so the check must cost no SQL. The whole catalogue is
//! one small list, loaded at once. `createResourceType` announces a change with
//! `App::resource_types_changed`, which empties this cache on every instance (the list also
//! expires after one minute, the bound on staleness should an announcement be missed; a bus
//! resync drops it too).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use scoped_futures::ScopedFutureExt;

use super::model::ResourceTypeRow;
use super::store;
use crate::db::{Db, Scope};
use crate::error::AppResult;

const TIME_TO_LIVE: Duration = Duration::from_secs(60);

/// The catalogue, sorted by key.
pub type ResourceTypes = Arc<Vec<ResourceTypeRow>>;

#[derive(Default)]
pub struct ResourceTypeCache {
    loaded: RwLock<Option<(Instant, ResourceTypes)>>,
    /// Bumped by every invalidation: a read that started before one does not store its
    /// (possibly stale) rows.
    generation: AtomicU64,
}

impl ResourceTypeCache {
    /// Every resource type, sorted by key: from memory, or read once when absent or expired.
    pub async fn all(&self, db: &Db) -> AppResult<ResourceTypes> {
        if let Some((at, types)) = &*self.loaded.read().unwrap_or_else(|p| p.into_inner()) {
            if at.elapsed() < TIME_TO_LIVE {
                return Ok(types.clone());
            }
        }
        let generation = self.generation.load(Ordering::SeqCst);
        let rows = db
            .scoped(Scope::Anonymous, |c| {
                async move { Ok(store::list(c).await?) }.scope_boxed()
            })
            .await?;
        let types = Arc::new(rows);
        let mut loaded = self.loaded.write().unwrap_or_else(|p| p.into_inner());
        // An invalidation while the rows were read: answer them, keep nothing.
        if self.generation.load(Ordering::SeqCst) == generation {
            *loaded = Some((Instant::now(), types.clone()));
        }
        Ok(types)
    }

    /// Drops the list (a resource type was created, here or on another instance).
    pub fn invalidate_all(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        *self.loaded.write().unwrap_or_else(|p| p.into_inner()) = None;
    }
}
