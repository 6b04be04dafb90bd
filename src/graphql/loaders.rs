//! The per-request DataLoader. One `DataLoader<DbLoader>` is built with each request (never on
//! the schema, which would share caches across tenants); it owns the pool handle and the
//! request's read scope, because `load()` gets no request context. Each aggregate implements
//! `Loader<ItsKey>` for [`DbLoader`] in its own `loader.rs`; every batch is one scoped
//! transaction.
//!
//! A DataLoader batches the keys that arrive within its delay, which on a busy machine is not
//! all the siblings of a list. [`SiblingBatch`] makes the bound deterministic: objects of one
//! list share a batch holding every sibling's key, and the first field resolved asks the
//! DataLoader for all of them in one `load_many`. So the number of statements follows the
//! query's shape, never the row count or the timing.

use std::collections::HashMap;
use std::hash::Hash;

use async_graphql::dataloader::{DataLoader, Loader};
use tokio::sync::OnceCell;

use std::sync::Arc;

use crate::app::App;
use crate::db::{Conn, Db, Scope, ScopedBoxFuture};
use crate::error::{AppError, AppResult};

pub type Loaders = DataLoader<DbLoader>;

pub struct DbLoader {
    pub app: Arc<App>,
    pub db: Db,
    pub scope: Scope,
}

impl DbLoader {
    pub fn new_loaders(app: Arc<App>, db: Db, scope: Scope) -> Loaders {
        DataLoader::new(DbLoader { app, db, scope }, tokio::spawn)
    }

    pub async fn run<'a, R, F>(&self, f: F) -> AppResult<R>
    where
        F: for<'r> FnOnce(&'r mut Conn) -> ScopedBoxFuture<'a, 'r, AppResult<R>> + Send + 'a,
        R: Send + 'a,
    {
        self.db.scoped(self.scope, f).await
    }
}

/// Groups rows under their key; every requested key gets an entry (empty when it has no rows).
pub fn group_by<K, V>(keys: &[K], rows: Vec<V>, key_of: impl Fn(&V) -> K) -> HashMap<K, Vec<V>>
where
    K: Hash + Eq + Clone,
{
    let mut map: HashMap<K, Vec<V>> = keys.iter().map(|k| (k.clone(), Vec::new())).collect();
    for row in rows {
        if let Some(list) = map.get_mut(&key_of(&row)) {
            list.push(row);
        }
    }
    map
}

/// The keys of one list's objects, loaded together on first use (see the module docs).
pub struct SiblingBatch<K, V> {
    keys: Vec<K>,
    loaded: OnceCell<Result<HashMap<K, V>, AppError>>,
}

impl<K, V> SiblingBatch<K, V>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
    DbLoader: Loader<K, Value = V, Error = AppError>,
{
    pub fn new(mut keys: Vec<K>) -> Self {
        let mut seen = std::collections::HashSet::new();
        keys.retain(|k| seen.insert(k.clone()));
        SiblingBatch {
            keys,
            loaded: OnceCell::new(),
        }
    }

    pub async fn get(&self, loaders: &Loaders, key: &K) -> AppResult<Option<V>> {
        let loaded = self
            .loaded
            .get_or_init(|| async { loaders.load_many(self.keys.iter().cloned()).await })
            .await;
        match loaded {
            Ok(map) => Ok(map.get(key).cloned()),
            Err(e) => Err(e.clone()),
        }
    }
}
