//! Automatic persisted queries (Apollo's APQ protocol, version 1), kept as *text*: a hash-only
//! request gets its query text back before admission reads it, so every limit applies to a
//! persisted query exactly as to one sent in full. The store is bounded by the bytes of text
//! it holds (`APQ_CACHE_BYTES` total), not by a count of parsed documents, and only texts that
//! passed the size and NUL checks are stored.
//!
//! With Redis the texts are shared by every instance (`<prefix>apq:<hash>`, kept
//! [`REDIS_TTL`]): a client registers a query on one instance and sends the hash alone to
//! another behind the same load balancer. Redis is a best effort here: a slow or failing Redis
//! makes a hash a miss (the client then sends the text again), never an error.

use std::sync::Arc;
use std::time::Duration;

use async_graphql::Request;
use moka::future::Cache;

use crate::app::RedisPool;
use crate::error::AppError;

/// How long a text registered through Redis stays there.
const REDIS_TTL: Duration = Duration::from_secs(24 * 3600);
/// The longest a look-up or a store may wait on Redis.
const REDIS_TIMEOUT: Duration = Duration::from_millis(250);

/// Persisted query texts by SHA-256 (hex), weighed by their length, in memory and (when
/// configured) in Redis.
#[derive(Clone)]
pub struct PersistedQueries(Cache<String, Arc<str>>, Option<(RedisPool, String)>);

impl PersistedQueries {
    pub fn new(max_bytes: u64) -> Self {
        PersistedQueries(
            Cache::builder()
                .weigher(|k: &String, v: &Arc<str>| {
                    u32::try_from(k.len() + v.len()).unwrap_or(u32::MAX)
                })
                .max_capacity(max_bytes)
                .build(),
            None,
        )
    }

    /// Shares the texts through Redis, under `<prefix>apq:`.
    pub fn with_redis(mut self, redis: Option<RedisPool>, prefix: &str) -> Self {
        self.1 = redis.map(|pool| (pool, format!("{prefix}apq:")));
        self
    }

    async fn lookup(&self, hash: &str) -> Option<Arc<str>> {
        if let Some(text) = self.0.get(hash).await {
            return Some(text);
        }
        let (pool, prefix) = self.1.as_ref()?;
        let fetch = async {
            let mut conn = pool.get().await.ok()?;
            redis::cmd("GET")
                .arg(format!("{prefix}{hash}"))
                .query_async::<Option<String>>(&mut *conn)
                .await
                .ok()
                .flatten()
        };
        let text: Arc<str> = Arc::from(tokio::time::timeout(REDIS_TIMEOUT, fetch).await.ok()??);
        // The stored text must still be the one the hash names.
        if sha256_hex(&text) != hash {
            return None;
        }
        self.0.insert(hash.to_owned(), text.clone()).await;
        Some(text)
    }

    async fn store(&self, hash: String, text: &str) {
        self.0.insert(hash.clone(), Arc::from(text)).await;
        let Some((pool, prefix)) = &self.1 else {
            return;
        };
        let put = async {
            let mut conn = pool.get().await.ok()?;
            redis::cmd("SET")
                .arg(format!("{prefix}{hash}"))
                .arg(text)
                .arg("EX")
                .arg(REDIS_TTL.as_secs())
                .query_async::<()>(&mut *conn)
                .await
                .ok()
        };
        if tokio::time::timeout(REDIS_TIMEOUT, put)
            .await
            .ok()
            .flatten()
            .is_none()
        {
            metrics::counter!("tenantry_apq_redis_errors_total").increment(1);
        }
    }

    /// Resolves the `persistedQuery` extension of `request`, if any: a hash alone is replaced
    /// by its stored text (or refused as `PersistedQueryNotFound`, which Apollo clients answer
    /// by sending the full text); a hash with its text is checked and stored.
    pub async fn resolve(&self, request: &mut Request) -> Result<(), AppError> {
        let Some(value) = request.extensions.remove("persistedQuery") else {
            return Ok(());
        };
        let ext = value.into_json().unwrap_or_default();
        if ext.get("version").and_then(|v| v.as_i64()) != Some(1) {
            return Err(AppError::bad_input(
                "persistedQuery",
                "only version 1 of the persistedQuery extension is supported",
            ));
        }
        let Some(hash) = ext.get("sha256Hash").and_then(|v| v.as_str()) else {
            return Err(AppError::bad_input(
                "persistedQuery",
                "persistedQuery needs sha256Hash",
            ));
        };
        let hash = hash.to_ascii_lowercase();
        if request.query.is_empty() {
            let text = self
                .lookup(&hash)
                .await
                .ok_or_else(|| AppError::bad_input("persistedQuery", "PersistedQueryNotFound"))?;
            request.query = text.to_string();
            return Ok(());
        }
        if sha256_hex(&request.query) != hash {
            return Err(AppError::bad_input(
                "persistedQuery",
                "provided sha256Hash does not match the query",
            ));
        }
        self.store(hash, &request.query).await;
        Ok(())
    }
}

pub(crate) fn sha256_hex(text: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_ext(query: &str, hash: &str) -> Request {
        let mut r = Request::new(query);
        r.extensions.insert(
            "persistedQuery".into(),
            async_graphql::Value::from_json(
                serde_json::json!({ "version": 1, "sha256Hash": hash }),
            )
            .unwrap(),
        );
        r
    }

    #[tokio::test]
    async fn a_hash_gets_its_text_back_and_a_wrong_hash_is_refused() {
        let apq = PersistedQueries::new(1 << 20);
        let q = "{ me { role } }";
        let hash: String = ring::digest::digest(&ring::digest::SHA256, q.as_bytes())
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let mut unknown = with_ext("", &hash);
        assert!(apq.resolve(&mut unknown).await.is_err());
        apq.resolve(&mut with_ext(q, &hash)).await.unwrap();
        let mut again = with_ext("", &hash);
        apq.resolve(&mut again).await.unwrap();
        assert_eq!(again.query, q);
        assert!(apq
            .resolve(&mut with_ext("{ plans { slug } }", &hash))
            .await
            .is_err());
    }

    #[tokio::test]
    async fn the_store_is_bounded_by_bytes() {
        let apq = PersistedQueries::new(10_000);
        for i in 0..100 {
            apq.0
                .insert(format!("{i:064}"), Arc::from("x".repeat(1000).as_str()))
                .await;
        }
        apq.0.run_pending_tasks().await;
        assert!(apq.0.weighted_size() <= 10_000);
    }
}
