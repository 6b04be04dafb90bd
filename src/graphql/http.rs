//! `POST /graphql` and `GET /graphql`: authenticate, resolve the tenant, attach the per-request
//! context and loaders, enforce size limits, execute, then stamp every error with a code and
//! the request id and record metrics by operation and outcome.

use std::sync::Arc;
use std::time::Instant;

use async_graphql::http::GraphiQLSource;
use async_graphql::{BatchRequest, BatchResponse, ErrorExtensionValues, ServerError};
use async_graphql_axum::rejection::GraphQLRejection;
use async_graphql_axum::{GraphQLBatchRequest, GraphQLResponse};
use axum::extract::FromRequest;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};

use super::context::RequestCtx;
use super::loaders::DbLoader;
use crate::app::HttpState;
use crate::auth::resolve::{bearer, resolve, Resolved};
use crate::auth::Role;
use crate::db::RequestStats;
use crate::error::AppError;
use crate::http::ratelimit::Decision;

/// GraphiQL for browsers (when enabled); everything else is a GET query.
pub async fn get(State(st): State<HttpState>, req: axum::extract::Request) -> Response {
    let headers = req.headers().clone();
    if let Some(resp) = graphiql(&st, &headers) {
        return resp;
    }
    parse_and_execute(st, headers, req).await
}

/// Reads the GraphQL request(s) from the HTTP request; an unreadable one answers a coded
/// GraphQL error (never the parser's debug text).
async fn parse_and_execute(
    st: HttpState,
    headers: HeaderMap,
    req: axum::extract::Request,
) -> Response {
    match GraphQLBatchRequest::<GraphQLRejection>::from_request(req, &st).await {
        Ok(batch) => execute(st, headers, batch.into_inner()).await,
        Err(GraphQLRejection(err)) => {
            let status = match err {
                async_graphql::ParseRequestError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
                _ => StatusCode::BAD_REQUEST,
            };
            let message = format!("unreadable GraphQL request: {err}");
            error_response(
                AppError::BadInput {
                    message,
                    field: None,
                },
                &request_id(&headers),
                status,
            )
        }
    }
}

fn graphiql(st: &HttpState, headers: &HeaderMap) -> Option<Response> {
    let wants_html = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/html"));
    if !wants_html {
        return None;
    }
    if !st.app.settings.graphql.graphiql {
        return Some((StatusCode::NOT_FOUND, "GraphiQL is disabled").into_response());
    }
    Some(
        Html(
            GraphiQLSource::build()
                .endpoint("/graphql")
                .subscription_endpoint("/graphql/ws")
                .finish(),
        )
        .into_response(),
    )
}

pub async fn post(State(st): State<HttpState>, req: axum::extract::Request) -> Response {
    let headers = req.headers().clone();
    parse_and_execute(st, headers, req).await
}

fn request_id(headers: &HeaderMap) -> String {
    headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_owned()
}

/// A response carrying one error and no data, for failures before execution.
fn error_response(err: AppError, request_id: &str, status: StatusCode) -> Response {
    let gql: async_graphql::Error = err.into();
    let mut server_error = gql.into_server_error(Default::default());
    server_error.locations.clear();
    let mut resp = async_graphql::Response::from_errors(vec![server_error]);
    stamp(&mut resp, request_id);
    let mut out = GraphQLResponse::from(resp).into_response();
    *out.status_mut() = status;
    out
}

/// Every error gets `extensions.code` (async-graphql's own validation errors have none) and
/// `extensions.requestId`, the key to the server log.
fn stamp(resp: &mut async_graphql::Response, request_id: &str) {
    for err in &mut resp.errors {
        stamp_error(err, request_id);
    }
}

fn stamp_error(err: &mut ServerError, request_id: &str) {
    let ext = err
        .extensions
        .get_or_insert_with(ErrorExtensionValues::default);
    if ext.get("code").is_none() {
        ext.set("code", "BAD_USER_INPUT");
    }
    ext.set("requestId", request_id);
}

fn operation_label(name: Option<&str>) -> String {
    match name {
        Some(n) if !n.is_empty() => n
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
            .take(64)
            .collect(),
        _ => "anonymous".into(),
    }
}

async fn execute(st: HttpState, headers: HeaderMap, batch: BatchRequest) -> Response {
    let started = Instant::now();
    let rid = request_id(&headers);
    let limits = &st.app.settings.graphql;
    if let BatchRequest::Batch(list) = &batch {
        if list.len() > limits.max_batch {
            let msg = format!(
                "batch of {} operations; at most {} are allowed",
                list.len(),
                limits.max_batch
            );
            return error_response(
                AppError::BadInput {
                    message: msg,
                    field: None,
                },
                &rid,
                StatusCode::BAD_REQUEST,
            );
        }
    }
    if let Some(big) = batch
        .iter()
        .find(|r| r.query.len() > limits.max_query_bytes)
    {
        let msg = format!(
            "query is {} bytes; at most {} are allowed",
            big.query.len(),
            limits.max_query_bytes
        );
        return error_response(
            AppError::BadInput {
                message: msg,
                field: None,
            },
            &rid,
            StatusCode::PAYLOAD_TOO_LARGE,
        );
    }

    let app = &st.app;
    let stats = Arc::new(RequestStats::default());
    let db = app.db.for_request(stats.clone());
    let token = match bearer(&headers) {
        Ok(t) => t,
        Err(e) => return error_response(e, &rid, StatusCode::OK),
    };
    let resolved = match resolve(
        &app.jwt,
        &app.tenant_cache,
        &db,
        app.settings.base_domain.as_deref(),
        token,
        &headers,
    )
    .await
    {
        Ok(r) => r,
        Err(e) => return error_response(e, &rid, StatusCode::OK),
    };
    let limited = match rate_limit(&st, &resolved).await {
        Ok(d) => d,
        Err(e) => return error_response(e, &rid, StatusCode::OK),
    };
    if let Some(d) = limited.filter(|d| !d.allowed) {
        metrics::counter!("tenantry_rate_limited_total").increment(1);
        let err = AppError::RateLimited {
            limit: d.limit as u64,
            retry_after_secs: d.reset_secs,
        };
        let mut resp = error_response(err, &rid, StatusCode::TOO_MANY_REQUESTS);
        rate_headers(&mut resp, &d);
        if let Ok(v) = HeaderValue::from_str(&d.reset_secs.to_string()) {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return resp;
    }
    let span = tracing::Span::current();
    if let Some(p) = resolved.caller.principal() {
        span.record("user_id", p.user_id.as_str());
    }
    if let Some(t) = &resolved.tenant {
        span.record("tenant_id", tracing::field::display(t.id));
    }
    let ops: Vec<String> = batch
        .iter()
        .map(|r| operation_label(r.operation_name.as_deref()))
        .collect();
    span.record("operation", ops.join(",").as_str());

    let ctx = Arc::new(RequestCtx {
        request_id: rid.clone(),
        caller: resolved.caller,
        tenant: resolved.tenant,
        public_tenant: resolved.public_tenant,
        db: db.clone(),
    });
    let loaders = Arc::new(DbLoader::new_loaders(app.clone(), db, ctx.read_scope()));
    let batch = batch.data(ctx).data(loaders);

    let mut response = st.schema.execute_batch(batch).await;
    let outcome = |r: &async_graphql::Response| -> String {
        r.errors
            .first()
            .and_then(|e| {
                e.extensions
                    .as_ref()?
                    .get("code")
                    .map(|c| c.to_string().trim_matches('"').to_owned())
            })
            .unwrap_or_else(|| {
                if r.errors.is_empty() {
                    "ok".into()
                } else {
                    "BAD_USER_INPUT".into()
                }
            })
    };
    let elapsed = started.elapsed().as_secs_f64();
    let record = |r: &mut async_graphql::Response, op: &str| {
        stamp(r, &rid);
        let outcome = outcome(r);
        metrics::counter!("tenantry_graphql_requests_total", "operation" => op.to_owned(), "outcome" => outcome.clone())
            .increment(1);
        metrics::histogram!("tenantry_graphql_request_duration_seconds", "operation" => op.to_owned(), "outcome" => outcome)
            .record(elapsed);
    };
    match &mut response {
        BatchResponse::Single(r) => record(r, &ops[0]),
        BatchResponse::Batch(list) => {
            for (r, op) in list.iter_mut().zip(&ops) {
                record(r, op);
            }
        }
    }
    let statements = stats.statements();
    metrics::histogram!("tenantry_sql_statements_per_request").record(statements as f64);
    let mut out = GraphQLResponse::from(response).into_response();
    if let Ok(v) = HeaderValue::from_str(&statements.to_string()) {
        out.headers_mut().insert("x-sql-statements", v);
    }
    if let Some(d) = &limited {
        rate_headers(&mut out, d);
    }
    out
}

/// Tenant users are limited per tenant by plan; platform admins and anonymous callers are not.
async fn rate_limit(st: &HttpState, resolved: &Resolved) -> Result<Option<Decision>, AppError> {
    let app = &st.app;
    if !app.settings.rate_limits_enabled {
        return Ok(None);
    }
    let (Some(p), Some(t)) = (resolved.caller.principal(), &resolved.tenant) else {
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
    Ok(Some(app.rate_limiter.check(t.id, limit).await))
}

fn rate_headers(resp: &mut Response, d: &Decision) {
    let h = resp.headers_mut();
    for (name, value) in [
        ("x-ratelimit-limit", d.limit as u64),
        ("x-ratelimit-remaining", d.remaining as u64),
        ("x-ratelimit-reset", d.reset_secs),
    ] {
        if let Ok(v) = HeaderValue::from_str(&value.to_string()) {
            h.insert(name, v);
        }
    }
}
