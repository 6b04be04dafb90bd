//! One admission path for every GraphQL operation, whichever way it came in: `POST /graphql`
//! (single or batched), `GET /graphql`, APQ (the persisted query is resolved before this runs)
//! and each `subscribe` on `/graphql/ws`. It is a schema extension, so no entry point can
//! execute an operation without passing it:
//!
//! - strings with NUL (U+0000) are refused (PostgreSQL cannot store them) before parsing;
//! - query size is capped (`GRAPHQL_MAX_QUERY_BYTES`) also where no HTTP handler checked it;
//! - aliases are counted with every fragment spread expanded (`GRAPHQL_MAX_ALIASES`);
//! - depth is capped (`GRAPHQL_MAX_DEPTH`) without counting introspection's `ofType` chain,
//!   which is capped on its own at the same number, so the standard introspection query of
//!   graphql-js (GraphiQL, codegen, schemathesis) passes while nesting stays bounded;
//! - `GET` may not run mutations;
//! - the per-plan rate limit is charged per operation, and a mutation costs one unit per root
//!   field (a mutation of 30 aliased `recordUsage` calls costs 30);
//! - the operation gets a metrics label from a closed set (`query.tenant`, `mutation.other`, ...).
//!
//! Complexity is async-graphql's own validation rule, set in `build_schema`.
//! The HTTP handler reads each operation's [`OpSlot`] afterwards for its status code,
//! `X-RateLimit-*` headers and metrics.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextParseQuery, NextPrepareRequest,
};
use async_graphql::parser::types::{
    DocumentOperations, ExecutableDocument, OperationType, Selection, SelectionSet,
};
use async_graphql::registry::MetaType;
use async_graphql::{Request, ServerError, ServerResult, Value, Variables};

use super::context::RequestCtx;
use crate::app::App;
use crate::auth::Role;
use crate::error::AppError;
use crate::http::ratelimit::Decision;

/// What admission learned about one operation, for the entry point that submitted it.
#[derive(Default)]
pub struct OpSlot {
    /// Set for `GET /graphql`: mutations are refused.
    pub read_only: bool,
    /// The metrics label: `<type>.<first root field>` or `<type>.other`; `invalid` if the
    /// document never parsed.
    pub label: OnceLock<String>,
    /// The rate-limit decision charged for this operation (tenant users only).
    pub decision: Mutex<Option<Decision>>,
}

impl OpSlot {
    pub fn read_only() -> Self {
        OpSlot {
            read_only: true,
            ..OpSlot::default()
        }
    }

    pub fn label(&self) -> &str {
        self.label.get().map(String::as_str).unwrap_or("invalid")
    }

    pub fn decision(&self) -> Option<Decision> {
        *self.decision.lock().unwrap_or_else(|p| p.into_inner())
    }
}

pub struct Admission;

impl ExtensionFactory for Admission {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(AdmissionExtension::default())
    }
}

#[derive(Default)]
struct AdmissionExtension {
    /// The operation the request names, kept from `prepare_request` for `parse_query`.
    operation_name: Mutex<Option<String>>,
}

fn refuse(err: AppError) -> ServerError {
    let gql: async_graphql::Error = err.into();
    let mut e = gql.into_server_error(Default::default());
    e.locations.clear();
    e
}

#[async_graphql::async_trait::async_trait]
impl Extension for AdmissionExtension {
    async fn prepare_request(
        &self,
        ctx: &ExtensionContext<'_>,
        request: Request,
        next: NextPrepareRequest<'_>,
    ) -> ServerResult<Request> {
        *self
            .operation_name
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = request.operation_name.clone();
        next.run(ctx, request).await
    }

    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        let app = ctx.data_opt::<Arc<App>>();
        let limits = app.map(|a| &a.settings.graphql);
        if let Some(l) = limits {
            if query.len() > l.max_query_bytes {
                return Err(refuse(AppError::bad_input(
                    "query",
                    format!(
                        "query is {} bytes; at most {} are allowed",
                        query.len(),
                        l.max_query_bytes
                    ),
                )));
            }
        }
        if has_nul(query, variables) {
            return Err(refuse(AppError::bad_input(
                "query",
                "strings may not contain the NUL character (U+0000)",
            )));
        }
        let doc = next.run(ctx, query, variables).await?;
        if let Some(l) = limits {
            let n = aliases_in(&doc);
            if n > l.max_aliases {
                return Err(refuse(AppError::bad_input(
                    "query",
                    format!(
                        "query uses {n} aliases (fragments counted where spread); at most {} are allowed",
                        l.max_aliases
                    ),
                )));
            }
        }
        if let Some(l) = limits {
            let (depth, of_type) = depth_of(&doc);
            if depth > l.max_depth || of_type > l.max_depth {
                return Err(refuse(AppError::bad_input(
                    "query",
                    format!(
                        "query is nested too deep: depth {}; at most {} are allowed",
                        depth.max(of_type),
                        l.max_depth
                    ),
                )));
            }
        }
        let name = self
            .operation_name
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let Some((ty, set)) = operation(&doc, name.as_deref()) else {
            // No such operation: validation answers that, with nothing charged.
            return Ok(doc);
        };
        let slot = ctx.data_opt::<Arc<OpSlot>>();
        if let Some(slot) = slot {
            let _ = slot.label.set(label(ctx, &doc, ty, set));
            if slot.read_only && ty == OperationType::Mutation {
                return Err(refuse(AppError::bad_input(
                    "query",
                    "mutations are not allowed over GET; use POST",
                )));
            }
        }
        let cost = match ty {
            OperationType::Mutation => root_fields(&doc, set).max(1),
            _ => 1,
        };
        if let (Some(app), Some(req)) = (app, ctx.data_opt::<Arc<RequestCtx>>()) {
            if let Some(decision) = charge(app, req, cost).await.map_err(refuse)? {
                if let Some(slot) = slot {
                    *slot.decision.lock().unwrap_or_else(|p| p.into_inner()) = Some(decision);
                }
                if !decision.allowed {
                    metrics::counter!("tenantry_rate_limited_total").increment(1);
                    return Err(refuse(AppError::RateLimited {
                        limit: decision.limit as u64,
                        retry_after_secs: decision.reset_secs,
                    }));
                }
            }
        }
        Ok(doc)
    }
}

/// Charges `cost` units to the caller's tenant. Tenant users (and, later, their API keys) are
/// limited per tenant by plan; platform admins and anonymous callers are not.
pub async fn charge(app: &App, req: &RequestCtx, cost: u32) -> Result<Option<Decision>, AppError> {
    if !app.settings.rate_limits_enabled {
        return Ok(None);
    }
    let (Some(p), Some(t)) = (req.caller.principal(), &req.tenant) else {
        return Ok(None);
    };
    if p.role == Role::PlatformAdmin {
        return Ok(None);
    }
    let plan = app.plans.by_id(&app.db, t.plan_id).await?;
    let limit = app
        .settings
        .rate_limit_overrides
        .iter()
        .find(|(slug, _)| *slug == plan.slug)
        .map(|(_, n)| *n)
        .unwrap_or(plan.rate_limit_per_minute.max(1) as u32);
    Ok(Some(app.rate_limiter.check(t.id, limit, cost).await))
}

fn has_nul(query: &str, variables: &Variables) -> bool {
    fn in_value(v: &Value) -> bool {
        match v {
            Value::String(s) => s.contains('\0'),
            Value::List(items) => items.iter().any(in_value),
            Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || in_value(v)),
            _ => false,
        }
    }
    // `\u0000` is the only way to write NUL in GraphQL source (no braced escapes).
    query.contains('\0')
        || query.contains("\\u0000")
        || variables
            .iter()
            .any(|(k, v)| k.contains('\0') || in_value(v))
}

/// The operation the request runs (as async-graphql will pick it).
fn operation<'d>(
    doc: &'d ExecutableDocument,
    name: Option<&str>,
) -> Option<(OperationType, &'d SelectionSet)> {
    let op = match (&doc.operations, name) {
        (DocumentOperations::Single(op), _) => op,
        (DocumentOperations::Multiple(map), Some(n)) => map.get(n)?,
        (DocumentOperations::Multiple(map), None) if map.len() == 1 => map.values().next()?,
        _ => return None,
    };
    Some((op.node.ty, &op.node.selection_set.node))
}

/// Folds a selection set, expanding fragment spreads. Each fragment's total is computed once
/// (memoised), so nested spreads cannot make the walk exponential; a cycle (refused later by
/// validation) counts zero.
struct Expander<'d, F> {
    doc: &'d ExecutableDocument,
    memo: HashMap<&'d str, usize>,
    visiting: Vec<&'d str>,
    /// What one field contributes itself (its children are walked by `nested`).
    own: F,
    /// Whether to walk into a field's own selection set.
    nested: bool,
}

impl<'d, F: Fn(&async_graphql::parser::types::Field) -> usize> Expander<'d, F> {
    fn count(&mut self, set: &'d SelectionSet) -> usize {
        let mut total = 0usize;
        for sel in &set.items {
            let n = match &sel.node {
                Selection::Field(f) => {
                    let own = (self.own)(&f.node);
                    if self.nested {
                        own.saturating_add(self.count(&f.node.selection_set.node))
                    } else {
                        own
                    }
                }
                Selection::InlineFragment(f) => self.count(&f.node.selection_set.node),
                Selection::FragmentSpread(s) => self.fragment(s.node.fragment_name.node.as_str()),
            };
            total = total.saturating_add(n);
        }
        total
    }

    fn fragment(&mut self, name: &'d str) -> usize {
        if let Some(n) = self.memo.get(name) {
            return *n;
        }
        if self.visiting.contains(&name) {
            return 0;
        }
        let doc = self.doc;
        let Some((key, frag)) = doc.fragments.get_key_value(name) else {
            return 0;
        };
        self.visiting.push(key.as_str());
        let n = self.count(&frag.node.selection_set.node);
        self.visiting.pop();
        self.memo.insert(key.as_str(), n);
        n
    }
}

/// Aliases in the whole document, each fragment counted once per spread (saturating).
pub fn aliases_in(doc: &ExecutableDocument) -> usize {
    let mut ex = Expander {
        doc,
        memo: HashMap::new(),
        visiting: Vec::new(),
        own: |f: &async_graphql::parser::types::Field| usize::from(f.alias.is_some()),
        nested: true,
    };
    let mut total = 0usize;
    for (_, op) in doc.operations.iter() {
        total = total.saturating_add(ex.count(&op.node.selection_set.node));
    }
    total
}

/// The deepest path of any operation: (fields on it other than `ofType`, `ofType` fields on
/// it). Fragments are measured once each (memoised); a cycle measures zero.
fn depth_of(doc: &ExecutableDocument) -> (usize, usize) {
    struct Depth<'d> {
        doc: &'d ExecutableDocument,
        memo: HashMap<&'d str, (usize, usize)>,
        visiting: Vec<&'d str>,
    }
    impl<'d> Depth<'d> {
        fn set(&mut self, set: &'d SelectionSet) -> (usize, usize) {
            let mut deepest = (0, 0);
            for sel in &set.items {
                let (d, o) = match &sel.node {
                    Selection::Field(f) => {
                        let (d, o) = self.set(&f.node.selection_set.node);
                        if f.node.name.node == "ofType" {
                            (d, o + 1)
                        } else {
                            (d + 1, o)
                        }
                    }
                    Selection::InlineFragment(f) => self.set(&f.node.selection_set.node),
                    Selection::FragmentSpread(s) => {
                        self.fragment(s.node.fragment_name.node.as_str())
                    }
                };
                deepest = (deepest.0.max(d), deepest.1.max(o));
            }
            deepest
        }

        fn fragment(&mut self, name: &'d str) -> (usize, usize) {
            if let Some(m) = self.memo.get(name) {
                return *m;
            }
            let doc = self.doc;
            let Some((key, frag)) = doc.fragments.get_key_value(name) else {
                return (0, 0);
            };
            if self.visiting.contains(&key.as_str()) {
                return (0, 0);
            }
            self.visiting.push(key.as_str());
            let m = self.set(&frag.node.selection_set.node);
            self.visiting.pop();
            self.memo.insert(key.as_str(), m);
            m
        }
    }
    let mut depth = Depth {
        doc,
        memo: HashMap::new(),
        visiting: Vec::new(),
    };
    doc.operations.iter().fold((0, 0), |acc, (_, op)| {
        let (d, o) = depth.set(&op.node.selection_set.node);
        (acc.0.max(d), acc.1.max(o))
    })
}

/// Root fields an operation runs (fragments expanded; `__typename` is free).
fn root_fields(doc: &ExecutableDocument, set: &SelectionSet) -> u32 {
    let mut ex = Expander {
        doc,
        memo: HashMap::new(),
        visiting: Vec::new(),
        own: |f: &async_graphql::parser::types::Field| usize::from(f.name.node != "__typename"),
        nested: false,
    };
    u32::try_from(ex.count(set)).unwrap_or(u32::MAX)
}

/// `<type>.<first root field>` when the field exists in the schema, else `<type>.other`:
/// client-chosen names never become metric labels.
fn label(
    ctx: &ExtensionContext<'_>,
    doc: &ExecutableDocument,
    ty: OperationType,
    set: &SelectionSet,
) -> String {
    let registry = &ctx.schema_env.registry;
    let (kind, root) = match ty {
        OperationType::Query => ("query", Some(registry.query_type.as_str())),
        OperationType::Mutation => ("mutation", registry.mutation_type.as_deref()),
        OperationType::Subscription => ("subscription", registry.subscription_type.as_deref()),
    };
    let field = first_field(doc, set, 0);
    let known = match (field, root.and_then(|r| registry.types.get(r))) {
        (Some(f @ ("__schema" | "__type" | "__typename")), _) => Some(f),
        (Some(f), Some(MetaType::Object { fields, .. })) if fields.contains_key(f) => Some(f),
        _ => None,
    };
    format!("{kind}.{}", known.unwrap_or("other"))
}

fn first_field<'d>(
    doc: &'d ExecutableDocument,
    set: &'d SelectionSet,
    depth: u8,
) -> Option<&'d str> {
    if depth > 8 {
        return None;
    }
    set.items.iter().find_map(|sel| match &sel.node {
        Selection::Field(f) => Some(f.node.name.node.as_str()),
        Selection::InlineFragment(f) => first_field(doc, &f.node.selection_set.node, depth + 1),
        Selection::FragmentSpread(s) => doc
            .fragments
            .get(s.node.fragment_name.node.as_str())
            .and_then(|f| first_field(doc, &f.node.selection_set.node, depth + 1)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(q: &str) -> ExecutableDocument {
        async_graphql::parser::parse_query(q).unwrap()
    }

    #[test]
    fn aliases_count_once_per_spread() {
        let d = doc("query { ...F ...F ...F } fragment F on Query { a: me { b: role } }");
        assert_eq!(aliases_in(&d), 6);
        let nested = "query { ...A ...A } fragment A on Query { ...B ...B } \
                      fragment B on Query { x: me { role } }";
        assert_eq!(aliases_in(&doc(nested)), 4);
    }

    #[test]
    fn fragment_cycles_terminate() {
        let d = doc("query { ...A } fragment A on Query { x: me { role } ...B } fragment B on Query { ...A }");
        assert!(aliases_in(&d) >= 1);
    }

    #[test]
    fn exponential_fragment_nesting_is_counted_without_blowing_up() {
        let mut q = String::from("query { ...F0 } ");
        for i in 0..40 {
            q.push_str(&format!(
                "fragment F{i} on Query {{ ...F{} ...F{} }} ",
                i + 1,
                i + 1
            ));
        }
        q.push_str("fragment F40 on Query { a: me { role } }");
        assert!(aliases_in(&doc(&q)) > 30);
    }

    #[test]
    fn depth_skips_the_of_type_chain_and_counts_fragments() {
        let q = "{ __schema { types { ...T } } } fragment T on __Type { fields { type { ofType { ofType { name } } } } }";
        assert_eq!(depth_of(&doc(q)), (5, 2));
        assert_eq!(
            depth_of(&doc("{ me { tenant { plan { slug } } } }")),
            (4, 0)
        );
    }

    #[test]
    fn a_mutation_costs_one_unit_per_root_field() {
        let d = doc(
            "mutation { a: recordUsage(resource: \"x\", amount: 1) { used } \
             b: recordUsage(resource: \"x\", amount: 1) { used } ...M __typename } \
             fragment M on Mutation { c: recordUsage(resource: \"x\", amount: 1) { used } }",
        );
        let (ty, set) = operation(&d, None).unwrap();
        assert_eq!(ty, OperationType::Mutation);
        assert_eq!(root_fields(&d, set), 3);
    }

    #[test]
    fn nul_in_text_or_variables_is_seen() {
        let vars = Variables::from_json(serde_json::json!({ "a": ["ok", { "b": "x\u{0}y" }] }));
        assert!(has_nul("{ me { role } }", &vars));
        assert!(has_nul(
            r#"{ plan(slug: "a\u0000b") { slug } }"#,
            &Variables::default()
        ));
        assert!(!has_nul(
            r#"{ plan(slug: "a\u0041b") { slug } }"#,
            &Variables::default()
        ));
    }
}
