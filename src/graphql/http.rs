//! `POST /graphql` and `GET /graphql`: authenticate, resolve the tenant, attach the per-request
//! context and loaders, enforce size limits, execute, then stamp every error with a code and
//! the request id and record metrics by operation and outcome.

use std::sync::Arc;
use std::time::Instant;

use async_graphql::{BatchRequest, BatchResponse, ErrorExtensionValues, ServerError};
use async_graphql_axum::rejection::GraphQLRejection;
use async_graphql_axum::{GraphQLBatchRequest, GraphQLResponse};
use axum::extract::FromRequest;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::admission::OpSlot;
use super::context::RequestCtx;
use super::loaders::DbLoader;
use crate::app::HttpState;
use crate::auth::resolve::{bearer, resolve};
use crate::db::RequestStats;
use crate::error::AppError;
use crate::http::ratelimit::Decision;

/// GraphiQL for browsers (when enabled); everything else is a GET query.
pub async fn get(State(st): State<HttpState>, req: axum::extract::Request) -> Response {
    let headers = req.headers().clone();
    if let Some(resp) = crate::http::graphiql::page(&st, &headers) {
        return resp;
    }
    parse_and_execute(st, headers, req, true).await
}

/// Reads the GraphQL request(s) from the HTTP request; an unreadable one answers a coded
/// GraphQL error (never the parser's debug text).
async fn parse_and_execute(
    st: HttpState,
    headers: HeaderMap,
    req: axum::extract::Request,
    read_only: bool,
) -> Response {
    match GraphQLBatchRequest::<GraphQLRejection>::from_request(req, &st).await {
        Ok(batch) => execute(st, headers, batch.into_inner(), read_only).await,
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

pub async fn post(State(st): State<HttpState>, req: axum::extract::Request) -> Response {
    let headers = req.headers().clone();
    parse_and_execute(st, headers, req, false).await
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

async fn execute(
    st: HttpState,
    headers: HeaderMap,
    batch: BatchRequest,
    read_only: bool,
) -> Response {
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
    // Admission checks the size again for every way in; here it also gets its HTTP status.
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
        &app.api_keys,
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
    let span = tracing::Span::current();
    if let Some(p) = resolved.caller.principal() {
        span.record("user_id", p.user_id.as_str());
    }
    if let Some(t) = &resolved.tenant {
        span.record("tenant_id", tracing::field::display(t.id));
    }

    let ctx = Arc::new(RequestCtx {
        request_id: rid.clone(),
        caller: resolved.caller,
        tenant: resolved.tenant,
        public_tenant: resolved.public_tenant,
        db: db.clone(),
    });
    let loaders = Arc::new(DbLoader::new_loaders(app.clone(), db, ctx.read_scope()));
    // One admission slot per operation: what admission decided comes back through it.
    let new_slot = || {
        Arc::new(if read_only {
            OpSlot::read_only()
        } else {
            OpSlot::default()
        })
    };
    let mut slots = Vec::new();
    let batch = match batch {
        BatchRequest::Single(r) => {
            slots.push(new_slot());
            BatchRequest::Single(r.data(slots[0].clone()))
        }
        BatchRequest::Batch(list) => BatchRequest::Batch(
            list.into_iter()
                .map(|r| {
                    let slot = new_slot();
                    slots.push(slot.clone());
                    r.data(slot)
                })
                .collect(),
        ),
    };
    let batch = batch.data(ctx).data(loaders);

    let mut response = st.schema.execute_batch(batch).await;
    let elapsed = started.elapsed().as_secs_f64();
    let mut responses: Vec<&mut async_graphql::Response> = match &mut response {
        BatchResponse::Single(r) => vec![r],
        BatchResponse::Batch(list) => list.iter_mut().collect(),
    };
    let labels: Vec<&str> = slots.iter().map(|s| s.label()).collect();
    span.record("operation", labels.join(",").as_str());
    for (r, op) in responses.iter_mut().zip(&labels) {
        stamp(r, &rid);
        let outcome = outcome(r);
        metrics::counter!("tenantry_graphql_requests_total", "operation" => op.to_string(), "outcome" => outcome)
            .increment(1);
        metrics::histogram!("tenantry_graphql_request_duration_seconds", "operation" => op.to_string(), "outcome" => outcome)
            .record(elapsed);
    }
    // The window after this request: the decision that left the least.
    let decision = slots
        .iter()
        .filter_map(|s| s.decision())
        .min_by_key(|d| (d.allowed, d.remaining));
    // Every operation refused by a limit (window or cost): the longest wait.
    let refused = slots
        .iter()
        .map(|s| s.refused_for())
        .collect::<Option<Vec<u64>>>()
        .and_then(|waits| waits.into_iter().max());

    let statements = stats.statements();
    metrics::histogram!("tenantry_sql_statements_per_request").record(statements as f64);
    let mut out = GraphQLResponse::from(response).into_response();
    if let Ok(v) = HeaderValue::from_str(&statements.to_string()) {
        out.headers_mut().insert("x-sql-statements", v);
    }
    if let Some(d) = &decision {
        rate_headers(&mut out, d);
    }
    // Every operation refused by a limit: the request as a whole is a 429.
    if let Some(wait) = refused {
        *out.status_mut() = StatusCode::TOO_MANY_REQUESTS;
        if let Ok(v) = HeaderValue::from_str(&wait.to_string()) {
            out.headers_mut().insert(header::RETRY_AFTER, v);
        }
    }
    out
}

/// The outcome label of one response: `ok`, or the first error's code (a closed set).
fn outcome(r: &async_graphql::Response) -> &'static str {
    let Some(first) = r.errors.first() else {
        return "ok";
    };
    let code = first
        .extensions
        .as_ref()
        .and_then(|e| e.get("code"))
        .map(|c| c.to_string());
    let code = code.as_deref().map(|c| c.trim_matches('"'));
    crate::error::CODES
        .iter()
        .find(|known| Some(**known) == code)
        .copied()
        .unwrap_or("BAD_USER_INPUT")
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
