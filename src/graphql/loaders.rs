//! The per-request DataLoader. One `DataLoader<DbLoader>` is built with each request (never on
//! the schema, which would share caches across tenants); it owns the pool handle and the
//! request's read scope, because `load()` gets no request context. Each aggregate implements
//! `Loader<ItsKey>` for [`DbLoader`] in its own `loader.rs`; every batch is one scoped
//! transaction, so the number of statements follows the query's shape, not the row count.

use std::collections::HashMap;
use std::hash::Hash;

use async_graphql::dataloader::DataLoader;

use crate::db::{Conn, Db, Scope, ScopedBoxFuture};
use crate::error::AppResult;

pub type Loaders = DataLoader<DbLoader>;

pub struct DbLoader {
    db: Db,
    scope: Scope,
}

impl DbLoader {
    pub fn new_loaders(db: Db, scope: Scope) -> Loaders {
        DataLoader::new(DbLoader { db, scope }, tokio::spawn)
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
