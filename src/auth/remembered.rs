//! A look-up cache that remembers answers, absent ones too, and never keeps an answer a
//! concurrent invalidation made stale: every invalidation bumps a generation, and a load that
//! started before one stores nothing (or takes back what it stored). Used by tenant
//! resolution, API keys and memberships.

use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use moka::future::Cache;

use crate::error::AppResult;

/// Selects keys whose absent answers to drop.
pub type KeyFilter<K> = Box<dyn Fn(&K) -> bool + Send + Sync + 'static>;

pub struct Remembered<K, V> {
    /// Counted as `tenantry_cache_requests_total{cache}`.
    name: &'static str,
    hits: Cache<K, V>,
    misses: Cache<K, ()>,
    generation: Arc<AtomicU64>,
}

impl<K, V> Clone for Remembered<K, V> {
    fn clone(&self) -> Self {
        Remembered {
            name: self.name,
            hits: self.hits.clone(),
            misses: self.misses.clone(),
            generation: self.generation.clone(),
        }
    }
}

impl<K, V> Remembered<K, V>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// Found answers for `hit_ttl` (at most `hits`), absent ones for `miss_ttl` (at most
    /// `misses`, bounded apart so a flood of unknown keys never evicts known ones).
    pub fn new(
        name: &'static str,
        (hits, hit_ttl): (u64, Duration),
        (misses, miss_ttl): (u64, Duration),
    ) -> Self {
        Remembered {
            name,
            hits: Cache::builder()
                .max_capacity(hits)
                .time_to_live(hit_ttl)
                .support_invalidation_closures()
                .build(),
            misses: Cache::builder()
                .max_capacity(misses)
                .time_to_live(miss_ttl)
                .support_invalidation_closures()
                .build(),
            generation: Arc::new(AtomicU64::new(0)),
        }
    }

    /// The answer for `key`: remembered, or `load`ed and remembered unless an invalidation
    /// happened meanwhile.
    pub async fn get(
        &self,
        key: K,
        load: impl std::future::Future<Output = AppResult<Option<V>>>,
    ) -> AppResult<Option<V>> {
        let count = |outcome: &'static str| {
            metrics::counter!("tenantry_cache_requests_total", "cache" => self.name, "outcome" => outcome)
                .increment(1)
        };
        if let Some(hit) = self.hits.get(&key).await {
            count("hit");
            return Ok(Some(hit));
        }
        if self.misses.contains_key(&key) {
            count("negative_hit");
            return Ok(None);
        }
        count("miss");
        let generation = self.generation.load(Ordering::SeqCst);
        let value = load.await?;
        if self.generation.load(Ordering::SeqCst) != generation {
            return Ok(value);
        }
        match &value {
            Some(v) => self.hits.insert(key.clone(), v.clone()).await,
            None => self.misses.insert(key.clone(), ()).await,
        }
        // An invalidation between the check and the insert: take the answer back out.
        if self.generation.load(Ordering::SeqCst) != generation {
            self.hits.invalidate(&key).await;
            self.misses.invalidate(&key).await;
        }
        Ok(value)
    }

    /// Drops the answers (found or absent) for `key`.
    pub async fn forget(&self, key: &K) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.hits.invalidate(key).await;
        self.misses.invalidate(key).await;
    }

    /// Drops the found answers `found` selects and the absent ones `absent` selects.
    pub fn forget_where(
        &self,
        found: impl Fn(&K, &V) -> bool + Send + Sync + 'static,
        absent: Option<KeyFilter<K>>,
    ) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        let _ = self.hits.invalidate_entries_if(found);
        if let Some(absent) = absent {
            let _ = self.misses.invalidate_entries_if(move |k, _| absent(k));
        }
    }

    /// Drops everything (this instance may have missed invalidations).
    pub fn invalidate_all(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.hits.invalidate_all();
        self.misses.invalidate_all();
    }
}
