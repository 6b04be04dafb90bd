//! Parsed documents by query text. Clients send the same few documents over and over (a
//! dashboard's queries, a service's one mutation), and parsing is a visible share of a small
//! request's CPU: a text parsed once is cloned from here afterwards. Bounded by weight (an
//! estimate of the parsed size, [`WEIGHT_PER_BYTE`] × the text's length) and only texts up to
//! [`MAX_TEXT`] bytes are kept, so an attacker sending endless distinct queries churns the
//! cache without growing it. Validation and every admission check still run on each request.

use async_graphql::parser::types::ExecutableDocument;
use moka::future::Cache;

/// Longest text kept (longer ones are parsed every time).
const MAX_TEXT: usize = 8 * 1024;
/// Parsed trees are larger than their text; the weight counts them so.
const WEIGHT_PER_BYTE: usize = 16;
/// Total weight: about 8 MiB of parsed documents.
const MAX_WEIGHT: u64 = 8 << 20;

#[derive(Clone)]
pub struct ParsedDocuments(Cache<String, ExecutableDocument>);

impl Default for ParsedDocuments {
    fn default() -> Self {
        ParsedDocuments(
            Cache::builder()
                .weigher(|text: &String, _: &ExecutableDocument| {
                    u32::try_from(text.len() * WEIGHT_PER_BYTE).unwrap_or(u32::MAX)
                })
                .max_capacity(MAX_WEIGHT)
                .build(),
        )
    }
}

impl ParsedDocuments {
    pub async fn get(&self, text: &str) -> Option<ExecutableDocument> {
        if text.len() > MAX_TEXT {
            return None;
        }
        self.0.get(text).await
    }

    pub async fn insert(&self, text: &str, doc: &ExecutableDocument) {
        if text.len() <= MAX_TEXT {
            self.0.insert(text.to_owned(), doc.clone()).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn keeps_short_texts_and_skips_long_ones() {
        let docs = ParsedDocuments::default();
        let short = "{ tenant { slug } }";
        let doc = async_graphql::parser::parse_query(short).unwrap();
        docs.insert(short, &doc).await;
        assert!(docs.get(short).await.is_some());
        let long = format!("{{ tenant {{ slug }} }} #{}", "x".repeat(MAX_TEXT));
        let doc = async_graphql::parser::parse_query(&long).unwrap();
        docs.insert(&long, &doc).await;
        assert!(docs.get(&long).await.is_none());
    }
}
