//! Automatic persisted queries (Apollo's APQ protocol, version 1), kept as *text*: a hash-only
//! request gets its query text back before admission reads it, so every limit applies to a
//! persisted query exactly as to one sent in full. The store is bounded by the bytes of text
//! it holds (`APQ_CACHE_BYTES` total), not by a count of parsed documents, and only texts that
//! passed the size and NUL checks are stored.

use std::sync::Arc;

use async_graphql::Request;
use moka::future::Cache;

use crate::error::AppError;

/// Persisted query texts by SHA-256 (hex), weighed by their length.
#[derive(Clone)]
pub struct PersistedQueries(Cache<String, Arc<str>>);

impl PersistedQueries {
    pub fn new(max_bytes: u64) -> Self {
        PersistedQueries(
            Cache::builder()
                .weigher(|k: &String, v: &Arc<str>| {
                    u32::try_from(k.len() + v.len()).unwrap_or(u32::MAX)
                })
                .max_capacity(max_bytes)
                .build(),
        )
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
            let text =
                self.0.get(&hash).await.ok_or_else(|| {
                    AppError::bad_input("persistedQuery", "PersistedQueryNotFound")
                })?;
            request.query = text.to_string();
            return Ok(());
        }
        let digest = ring::digest::digest(&ring::digest::SHA256, request.query.as_bytes());
        let actual: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        if actual != hash {
            return Err(AppError::bad_input(
                "persistedQuery",
                "provided sha256Hash does not match the query",
            ));
        }
        self.0.insert(hash, Arc::from(request.query.as_str())).await;
        Ok(())
    }
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
