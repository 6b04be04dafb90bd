//! Raw SQL kept prepared. Diesel never caches a `sql_query` statement (it cannot know that
//! the text is bounded), so every execution is parsed, analysed and planned again by
//! PostgreSQL; on the metering hot path that was most of the database's CPU. [`prepared`]
//! marks a statement as safe to keep: diesel-async then prepares it once per connection,
//! keyed by its text and bind types, and later executions only bind and run.
//!
//! Only for SQL whose text is a compile-time constant (a literal or a `concat!` of
//! literals); text built at run time would grow every connection's statement cache.

use diesel::pg::Pg;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::QueryResult;

/// A statement that may be kept prepared (see the module docs).
#[derive(Debug, Clone, Copy)]
#[must_use = "Queries are only executed when calling `load`, `get_result` or similar."]
pub struct Prepared<Q>(Q);

/// Marks `query` (built from constant SQL text, see the module docs) as safe to keep prepared.
pub fn prepared<Q>(query: Q) -> Prepared<Q> {
    Prepared(query)
}

impl<Q: QueryFragment<Pg>> QueryFragment<Pg> for Prepared<Q> {
    fn walk_ast<'b>(&'b self, pass: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        self.0.walk_ast(pass)
    }

    fn is_safe_to_cache_prepared(&self, _backend: &Pg) -> QueryResult<bool> {
        Ok(true)
    }
}

impl<Q> QueryId for Prepared<Q> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<Q: Query> Query for Prepared<Q> {
    type SqlType = Q::SqlType;
}
