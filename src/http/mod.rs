//! Plain HTTP endpoints: liveness, readiness, Prometheus metrics, and the metrics middleware.

use std::time::{Duration, Instant};

pub mod internal;
pub mod ratelimit;
pub mod request_id;

use axum::extract::{MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::app::HttpState;

/// Liveness: 200 while the process runs.
pub async fn health() -> impl IntoResponse {
    Json(json!({ "status": "ok" }))
}

/// Readiness: 200 only when PostgreSQL (and Redis, when configured) answer; otherwise 503
/// naming what is down. Checks run on every call, so recovery needs no restart.
pub async fn ready(State(st): State<HttpState>) -> Response {
    let timeout = Duration::from_secs(2);
    let (pg, redis) = tokio::join!(st.app.db.ping(timeout), st.app.redis_ok(timeout));
    let mut checks = serde_json::Map::new();
    let mut down = Vec::new();
    checks.insert("postgres".into(), json!(if pg { "ok" } else { "down" }));
    if !pg {
        down.push("postgres");
    }
    if let Some(ok) = redis {
        checks.insert("redis".into(), json!(if ok { "ok" } else { "down" }));
        if !ok {
            down.push("redis");
        }
    }
    let status = if down.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({
        "status": if down.is_empty() { "ready" } else { "unavailable" },
        "down": down,
        "checks": checks,
    });
    (status, Json(body)).into_response()
}

pub async fn metrics() -> impl IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        crate::telemetry::prometheus().render(),
    )
}

/// Requests and latency by route and status.
pub async fn record_metrics(req: Request, next: Next) -> Response {
    let started = Instant::now();
    let path = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".into());
    let method = req.method().to_string();
    let resp = next.run(req).await;
    let status = resp.status().as_u16().to_string();
    metrics::counter!("tenantry_http_requests_total", "path" => path.clone(), "method" => method, "status" => status)
        .increment(1);
    metrics::histogram!("tenantry_http_request_duration_seconds", "path" => path)
        .record(started.elapsed().as_secs_f64());
    resp
}

/// Refuses bodies over the limit with 413: at once by `Content-Length`, and while reading
/// when the body is chunked.
pub async fn limit_body(State(limit): State<usize>, req: Request, next: Next) -> Response {
    let declared = req
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        let body = json!({ "error": { "code": "BAD_USER_INPUT", "message": format!("request body exceeds {limit} bytes") } });
        return (StatusCode::PAYLOAD_TOO_LARGE, Json(body)).into_response();
    }
    let (parts, body) = req.into_parts();
    let body = axum::body::Body::new(http_body_util::Limited::new(body, limit));
    next.run(Request::from_parts(parts, body)).await
}
