//! One admission path for every GraphQL operation, whichever way it came in: `POST /graphql`
//! (single or batched), `GET /graphql`, APQ (resolved here, to text, by [`apq`]) and each
//! `subscribe` on `/graphql/ws`. It is a schema extension, so no entry point can
//! execute an operation without passing it:
//!
//! - strings with NUL (U+0000) are refused (PostgreSQL cannot store them) before parsing;
//! - query size is capped (`GRAPHQL_MAX_QUERY_BYTES`) on every way in, persisted queries too;
//! - aliases are counted with every fragment spread expanded (`GRAPHQL_MAX_ALIASES`);
//! - depth is capped (`GRAPHQL_MAX_DEPTH`) without counting introspection's `ofType` chain,
//!   which is capped on its own at the same number, so the standard introspection query of
//!   graphql-js (GraphiQL, codegen, schemathesis) passes while nesting stays bounded;
//! - `GET` may not run mutations;
//! - introspection (`__schema`, `__type`), when switched off, is `FORBIDDEN`, not a silent null;
//! - the per-plan rate limit is charged per operation, and a mutation costs one unit per root
//!   field (a mutation of 30 aliased `recordUsage` calls costs 30);
//! - the operation gets a metrics label from a closed set (`query.tenant`, `mutation.other`, ...).
//!
//! - complexity (`first` × what each list item selects, summed; async-graphql's validation
//!   computes it) is capped at `GRAPHQL_MAX_COMPLEXITY`, and a refusal says what the query
//!   costs;
//! - the same figure is charged to the tenant's cost bucket ([`cost`]) and every answer
//!   carries `extensions.cost`. An operation of introspection alone is exempt from both.
//!
//! The document measurements themselves are pure functions in [`measure`].
//! The HTTP handler reads each operation's [`OpSlot`] afterwards for its status code,
//! `X-RateLimit-*` headers and metrics.

use std::sync::{Arc, Mutex, OnceLock};

use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextExecute, NextParseQuery, NextPrepareRequest,
    NextRequest, NextSubscribe, NextValidation,
};
use async_graphql::futures_util::stream::{BoxStream, StreamExt};
use async_graphql::parser::types::{ExecutableDocument, OperationType, SelectionSet};
use async_graphql::registry::MetaType;
use async_graphql::{Request, Response, ServerError, ServerResult, ValidationResult, Variables};

pub(crate) mod apq;
pub mod cost;
mod documents;
mod measure;

use super::context::RequestCtx;
use crate::app::App;
use crate::auth::Caller;
use crate::config::GraphqlLimits;
use crate::error::AppError;
use crate::http::ratelimit::Decision;
use crate::tenants::model::TenantRow;
use apq::PersistedQueries;
use cost::Cost;
use documents::ParsedDocuments;
use measure::{
    aliases_in, depth_of, entity_representations, first_field, has_nul, introspection_only,
    introspects, operation, root_fields,
};

/// Entity references one operation may resolve through `_entities` (federation): a gateway
/// batches what one query plan needs, far fewer than this.
pub const MAX_ENTITY_REPRESENTATIONS: usize = 100;

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
    /// Seconds to wait, when the cost bucket refused this operation.
    pub cost_refused: OnceLock<u64>,
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

    /// Seconds to wait when a limit (the window or the cost bucket) refused the operation.
    pub fn refused_for(&self) -> Option<u64> {
        match self.decision() {
            Some(d) if !d.allowed => Some(d.reset_secs),
            _ => self.cost_refused.get().copied(),
        }
    }
}

/// The admission extension; it owns the persisted-query store and the parsed documents (one
/// of each per schema).
pub struct Admission {
    apq: PersistedQueries,
    docs: ParsedDocuments,
}

impl Admission {
    /// `redis`: persisted queries are shared by the instances through it (under `prefix`).
    pub fn new(apq_bytes: u64, redis: Option<crate::app::RedisPool>, prefix: &str) -> Self {
        Admission {
            apq: PersistedQueries::new(apq_bytes).with_redis(redis, prefix),
            docs: ParsedDocuments::default(),
        }
    }
}

impl ExtensionFactory for Admission {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(AdmissionExtension {
            apq: self.apq.clone(),
            docs: self.docs.clone(),
            operation_name: Mutex::new(None),
            introspection_only: Default::default(),
            representations: Default::default(),
            cost: Default::default(),
        })
    }
}

struct AdmissionExtension {
    apq: PersistedQueries,
    docs: ParsedDocuments,
    /// The operation the request names, kept from `prepare_request` for `parse_query`.
    operation_name: Mutex<Option<String>>,
    /// The operation selects introspection alone: no complexity cap, no cost.
    introspection_only: std::sync::atomic::AtomicBool,
    /// Entity representations given to `_entities`: the operation costs its complexity once
    /// per representation.
    representations: std::sync::atomic::AtomicUsize,
    /// What the operation cost, once validation has measured it.
    cost: Arc<Mutex<Option<Cost>>>,
}

impl AdmissionExtension {
    fn cost(&self) -> Option<Cost> {
        *self.cost.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn set_cost(&self, cost: Cost) {
        *self.cost.lock().unwrap_or_else(|p| p.into_inner()) = Some(cost);
    }
}

/// Adds `extensions.cost` to an answer that has none yet, when the cost is known.
fn with_cost(mut resp: Response, cost: Option<Cost>) -> Response {
    if let Some(c) = cost {
        if !resp.extensions.contains_key("cost") {
            resp.extensions.insert("cost".into(), c.to_value());
        }
    }
    resp
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
        mut request: Request,
        next: NextPrepareRequest<'_>,
    ) -> ServerResult<Request> {
        *self
            .operation_name
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = request.operation_name.clone();
        // The text checks run before a persisted query is stored, and again (in parse_query)
        // on the text a hash resolves to.
        if let Some(app) = ctx.data_opt::<Arc<App>>() {
            check_text(&app.settings.graphql, &request.query, &request.variables)
                .map_err(refuse)?;
        }
        self.apq.resolve(&mut request).await.map_err(refuse)?;
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
            check_text(l, query, variables).map_err(refuse)?;
        }
        let doc = match self.docs.get(query).await {
            Some(doc) => doc,
            None => {
                let doc = next.run(ctx, query, variables).await?;
                self.docs.insert(query, &doc).await;
                doc
            }
        };
        if let Some(l) = limits {
            if !l.introspection && introspects(&doc) {
                // async-graphql would answer null without a word; say why, with a code.
                return Err(refuse(AppError::forbidden(
                    "introspection is disabled on this server",
                )));
            }
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
        self.introspection_only.store(
            introspection_only(&doc, set),
            std::sync::atomic::Ordering::Relaxed,
        );
        let representations = entity_representations(&doc, set, variables, 0);
        if representations > MAX_ENTITY_REPRESENTATIONS {
            return Err(refuse(AppError::bad_input(
                "representations",
                format!(
                    "{representations} entity representations; at most {MAX_ENTITY_REPRESENTATIONS} are allowed per operation"
                ),
            )));
        }
        self.representations
            .store(representations, std::sync::atomic::Ordering::Relaxed);
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
            let charged = charge(app, &req.caller, req.tenant.as_ref(), cost);
            if let Some(decision) = charged.await.map_err(refuse)? {
                if let Some(slot) = slot {
                    *slot.decision.lock().unwrap_or_else(|p| p.into_inner()) = Some(decision);
                }
                if let Some(err) = refusal(&decision) {
                    return Err(refuse(err));
                }
            }
        }
        Ok(doc)
    }

    async fn request(&self, ctx: &ExtensionContext<'_>, next: NextRequest<'_>) -> Response {
        // Refusals after validation carry the cost too (executed answers got it in `execute`).
        let resp = next.run(ctx).await;
        with_cost(resp, self.cost())
    }

    fn subscribe<'s>(
        &self,
        ctx: &ExtensionContext<'_>,
        stream: BoxStream<'s, Response>,
        next: NextSubscribe<'_>,
    ) -> BoxStream<'s, Response> {
        // Over the socket: queries and mutations got the cost in `execute`; a refusal gets
        // it here. Subscription events are not charged again and carry none.
        let cost = self.cost.clone();
        next.run(ctx, stream)
            .map(move |resp| {
                if resp.errors.is_empty() {
                    return resp;
                }
                let known = *cost.lock().unwrap_or_else(|p| p.into_inner());
                with_cost(resp, known)
            })
            .boxed()
    }

    async fn validation(
        &self,
        ctx: &ExtensionContext<'_>,
        next: NextValidation<'_>,
    ) -> Result<ValidationResult, Vec<ServerError>> {
        let result = next.run(ctx).await?;
        let Some(app) = ctx.data_opt::<Arc<App>>() else {
            return Ok(result);
        };
        if self
            .introspection_only
            .load(std::sync::atomic::Ordering::Relaxed)
        {
            self.set_cost(Cost::default());
            return Ok(result);
        }
        // `_entities` resolves each representation: the selection is paid once per each.
        let per = self
            .representations
            .load(std::sync::atomic::Ordering::Relaxed)
            .max(1);
        let measured = result.complexity.saturating_mul(per);
        let max = app.settings.graphql.max_complexity;
        if measured > max {
            self.set_cost(Cost {
                requested: measured as u64,
                ..Cost::default()
            });
            return Err(vec![refuse(AppError::bad_input(
                "query",
                format!(
                    "query costs {measured} (lists count `first` × what each item selects); at most {max} are allowed"
                ),
            ))]);
        }
        if let Some(req) = ctx.data_opt::<Arc<RequestCtx>>() {
            let requested = measured as u64;
            let charged = cost::charge(app, &req.caller, req.tenant.as_ref(), requested).await;
            match charged {
                Ok(c) => self.set_cost(c),
                Err((c, err)) => {
                    self.set_cost(c);
                    if let (
                        AppError::CostThrottled {
                            retry_after_secs, ..
                        }
                        | AppError::RateLimited {
                            retry_after_secs, ..
                        },
                        Some(slot),
                    ) = (&err, ctx.data_opt::<Arc<OpSlot>>())
                    {
                        let _ = slot.cost_refused.set(*retry_after_secs);
                    }
                    return Err(vec![refuse(err)]);
                }
            }
        }
        Ok(result)
    }

    async fn execute(
        &self,
        ctx: &ExtensionContext<'_>,
        operation_name: Option<&str>,
        next: NextExecute<'_>,
    ) -> Response {
        let resp = next.run(ctx, operation_name).await;
        let (Some(app), Some(mut c)) = (ctx.data_opt::<Arc<App>>(), self.cost()) else {
            return resp;
        };
        cost::settle(app, &mut c, &resp.data).await;
        self.set_cost(c);
        with_cost(resp, Some(c))
    }
}

/// The error for a refused charge (counted), or `None` when it was allowed.
pub fn refusal(decision: &Decision) -> Option<AppError> {
    if decision.allowed {
        return None;
    }
    metrics::counter!("tenantry_rate_limited_total").increment(1);
    Some(AppError::RateLimited {
        limit: decision.limit as u64,
        retry_after_secs: decision.reset_secs,
    })
}

/// The limits on the text itself: its size, and NUL anywhere in it or in the variables.
fn check_text(limits: &GraphqlLimits, query: &str, variables: &Variables) -> Result<(), AppError> {
    if query.len() > limits.max_query_bytes {
        return Err(AppError::bad_input(
            "query",
            format!(
                "query is {} bytes; at most {} are allowed",
                query.len(),
                limits.max_query_bytes
            ),
        ));
    }
    if has_nul(query, variables) {
        return Err(AppError::bad_input(
            "query",
            "strings may not contain the NUL character (U+0000)",
        ));
    }
    Ok(())
}

/// Charges `cost` units to the caller's tenant. Tenant users (and, later, their API keys) are
/// limited per tenant by plan; platform admins and anonymous callers are not. REST entry
/// points that act for a user (the export download) charge here too.
pub async fn charge(
    app: &App,
    caller: &Caller,
    tenant: Option<&TenantRow>,
    cost: u32,
) -> Result<Option<Decision>, AppError> {
    let Some((tenant_id, plan)) = cost::limited(app, caller, tenant).await? else {
        return Ok(None);
    };
    let limit = cost::requests_per_minute(app, &plan);
    Ok(Some(app.rate_limiter.check(tenant_id, limit, cost).await))
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
