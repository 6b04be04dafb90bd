//! When introspection is switched off, [`NoIntrospection`] refuses `__schema`/`__type` with a
//! coded error instead of async-graphql's silent null. The other document limits (size,
//! aliases, cost) are in [`super::admission`]; depth and complexity in `build_schema`.

use std::sync::Arc;

use async_graphql::extensions::{Extension, ExtensionContext, ExtensionFactory, NextParseQuery};
use async_graphql::parser::types::{ExecutableDocument, Selection, SelectionSet};
use async_graphql::{ServerError, ServerResult, Variables};

/// Refuses introspection (`__schema`, `__type`; `__typename` stays allowed) with a coded error.
pub struct NoIntrospection;

impl ExtensionFactory for NoIntrospection {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(NoIntrospection)
    }
}

fn introspects(set: &SelectionSet) -> bool {
    set.items.iter().any(|sel| match &sel.node {
        Selection::Field(f) => {
            matches!(f.node.name.node.as_str(), "__schema" | "__type")
                || introspects(&f.node.selection_set.node)
        }
        Selection::InlineFragment(f) => introspects(&f.node.selection_set.node),
        Selection::FragmentSpread(_) => false,
    })
}

fn coded(message: &str, code: &str) -> ServerError {
    let mut err = ServerError::new(message, None);
    let mut ext = async_graphql::ErrorExtensionValues::default();
    ext.set("code", code);
    err.extensions = Some(ext);
    err
}

#[async_graphql::async_trait::async_trait]
impl Extension for NoIntrospection {
    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        let doc = next.run(ctx, query, variables).await?;
        let in_ops = doc
            .operations
            .iter()
            .any(|(_, op)| introspects(&op.node.selection_set.node));
        let in_frags = doc
            .fragments
            .values()
            .any(|f| introspects(&f.node.selection_set.node));
        if in_ops || in_frags {
            return Err(coded(
                "introspection is disabled on this server",
                "FORBIDDEN",
            ));
        }
        Ok(doc)
    }
}
