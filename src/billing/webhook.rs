//! `POST /webhooks/stripe` (SPEC §4): HTTP only. The signature check over the raw body
//! ([`super::signature`]), the envelope (id, type, created, api_version), then the inbox
//! ([`super::inbox`]) processes the event exactly once. Answers:
//! - 400 for a bad signature or a body that is not a Stripe event (Stripe shows it to the
//!   operator; nothing is stored);
//! - 200 `{received, status}` once the event is stored: PROCESSED, IGNORED, or FAILED when its
//!   object cannot be read (acknowledged so Stripe keeps the endpoint; retried by the job);
//! - 500 when processing failed for a reason that may pass (the database): Stripe retries.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::Utc;
use serde::Deserialize;
use serde_json::{json, Value};

use super::inbox::{self, Delivery};
use super::payments::ts;
use super::signature::verify;
use crate::app::HttpState;

#[derive(Deserialize)]
struct Envelope {
    id: String,
    #[serde(rename = "type")]
    kind: String,
    created: i64,
    /// The version the endpoint is pinned to; null for some legacy events.
    #[serde(default)]
    api_version: Option<String>,
}

fn bad_request(msg: &str) -> Response {
    let body = json!({ "error": { "code": "BAD_REQUEST", "message": msg } });
    (StatusCode::BAD_REQUEST, Json(body)).into_response()
}

fn count(kind: &str, outcome: &str) {
    metrics::counter!("tenantry_webhook_events_total", "type" => kind.to_owned(), "outcome" => outcome.to_owned())
        .increment(1);
}

pub async fn handler(State(state): State<HttpState>, headers: HeaderMap, body: Bytes) -> Response {
    let app = state.app;
    let started = std::time::Instant::now();
    let header = headers
        .get("stripe-signature")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let secrets = &app.settings.stripe_webhook_secrets;
    if let Err(e) = verify(secrets, header, &body, Utc::now().timestamp()) {
        count("unknown", "bad_signature");
        return bad_request(e.message());
    }
    let Ok(env) = serde_json::from_slice::<Envelope>(&body) else {
        return bad_request("the body is not a Stripe event");
    };
    let Ok(payload) = serde_json::from_slice::<Value>(&body) else {
        return bad_request("the body is not JSON");
    };
    if !payload
        .pointer("/data/object")
        .is_some_and(Value::is_object)
    {
        return bad_request("the event has no data.object");
    }
    let Some(created) = ts(env.created) else {
        return bad_request("bad event timestamp");
    };
    metrics::histogram!("tenantry_webhook_lag_seconds")
        .record((Utc::now() - created).num_milliseconds().max(0) as f64 / 1000.0);
    let delivery = Delivery {
        id: &env.id,
        kind: &env.kind,
        created,
        api_version: env.api_version.as_deref(),
        payload: &payload,
    };
    let outcome = inbox::receive(&app, &delivery).await;
    metrics::histogram!("tenantry_webhook_duration_seconds")
        .record(started.elapsed().as_secs_f64());
    match outcome {
        Ok(row) => {
            count(&env.kind, &row.status.as_str().to_ascii_lowercase());
            let body = json!({ "received": true, "status": row.status.as_str() });
            (StatusCode::OK, Json(body)).into_response()
        }
        Err(e) => {
            count(&env.kind, "failed");
            tracing::error!(event = %env.id, error = %e, "stripe event failed; Stripe will retry");
            let body = json!({ "error": { "code": "INTERNAL", "message": "event processing failed; retry later" } });
            (StatusCode::INTERNAL_SERVER_ERROR, Json(body)).into_response()
        }
    }
}
