//! Plain HTTP endpoints: liveness, readiness, Prometheus metrics, and the metrics middleware.

use std::time::{Duration, Instant};

pub mod export;
pub mod graphiql;
pub mod internal;
pub mod outbound;
pub mod ratelimit;
pub mod request_id;

use axum::extract::{MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::app::HttpState;
use crate::auth::jwks::Health;

/// Liveness: 200 while the process runs.
pub async fn health() -> impl IntoResponse {
    Json(json!({ "status": "ok" }))
}

/// Readiness, for load balancers: 503 only when PostgreSQL does not answer (this instance
/// cannot serve). Redis down is `"status": "degraded"` with 200: every instance shares the same
/// Redis, so a 503 would pull them all out of rotation at once, while the API keeps working
/// without it (see docs/decisions.md). `down` lists whatever does not answer either way.
/// With `JWT_JWKS_URL`, 503 also while no signing key was ever fetched, and `reasons.jwks`
/// says why. Checks run on every call, so recovery needs no restart.
pub async fn ready(State(st): State<HttpState>) -> Response {
    let (pg, redis) = tokio::join!(
        st.app.db.ping(Duration::from_secs(2)),
        st.app.redis_ok(Duration::from_millis(500))
    );
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
    // JWKS: no key ever fetched takes this instance out (its provider's users cannot sign
    // in here); keys in hand with a failing refresh only degrade it.
    let mut reasons = serde_json::Map::new();
    let mut jwks_missing = false;
    if let Some(health) = st.app.jwt.jwks_health() {
        let (state, reason) = match health {
            Health::Ok => ("ok", None),
            Health::Stale(why) => ("stale", Some(why)),
            Health::Unavailable(why) => {
                jwks_missing = true;
                ("down", Some(why))
            }
        };
        checks.insert("jwks".into(), json!(state));
        if let Some(why) = reason {
            down.push("jwks");
            reasons.insert("jwks".into(), json!(why));
        }
    }
    let (status, label) = match (pg && !jwks_missing, down.is_empty()) {
        (false, _) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
        (true, false) => (StatusCode::OK, "degraded"),
        (true, true) => (StatusCode::OK, "ready"),
    };
    let mut body = json!({
        "status": label,
        "down": down,
        "checks": checks,
    });
    if !reasons.is_empty() {
        body["reasons"] = reasons.into();
    }
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

/// Requests and latency by route and status. Every label comes from a closed set (matched
/// route templates, standard methods, status codes), so no caller can create new series.
pub async fn record_metrics(req: Request, next: Next) -> Response {
    let started = Instant::now();
    let path = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".into());
    let method = method_label(req.method());
    let resp = next.run(req).await;
    let status = resp.status().as_u16().to_string();
    metrics::counter!("tenantry_http_requests_total", "path" => path.clone(), "method" => method, "status" => status)
        .increment(1);
    metrics::histogram!("tenantry_http_request_duration_seconds", "path" => path)
        .record(started.elapsed().as_secs_f64());
    resp
}

fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
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
