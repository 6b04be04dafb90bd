//! Logging (tracing, JSON or pretty) and the Prometheus recorder.

use std::sync::OnceLock;

use axum::http::Request;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Libraries whose debug and trace events print what crosses the wire: WebSocket frames
/// (`connection_init` holds a JWT or an API key), SQL bind parameters (API key hashes),
/// HTTP headers. Kept at `info` even under `RUST_LOG=trace`, unless `RUST_LOG` names them.
const WIRE_LOGGERS: [&str; 5] = [
    "tungstenite",
    "tokio_tungstenite",
    "tokio_postgres",
    "hyper",
    "h2",
];

/// Installs the global subscriber. `RUST_LOG` filters (default `info`); credentials never
/// reach the log through a library's wire dumps ([`WIRE_LOGGERS`]).
pub fn init_logging(format: LogFormat) {
    let spec = std::env::var("RUST_LOG").unwrap_or_default();
    let mut filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    for target in WIRE_LOGGERS {
        if !spec.contains(target) {
            if let Ok(directive) = format!("{target}=info").parse() {
                filter = filter.add_directive(directive);
            }
        }
    }
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init(),
        LogFormat::Pretty => builder.compact().try_init(),
    };
}

/// The process-wide Prometheus recorder, installed on first use.
pub fn prometheus() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets(&[
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ])
            .expect("static buckets")
            .build_recorder();
        let handle = recorder.handle();
        // Fails only if another recorder is installed (then metrics go there).
        let _ = metrics::set_global_recorder(recorder);
        handle
    })
}

/// The span every HTTP request runs in; the GraphQL handler fills in tenant, user and operation.
pub fn request_span<B>(req: &Request<B>) -> tracing::Span {
    let request_id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-");
    tracing::info_span!(
        "request",
        request_id = %request_id,
        method = %req.method(),
        path = %req.uri().path(),
        tenant_id = tracing::field::Empty,
        user_id = tracing::field::Empty,
        operation = tracing::field::Empty,
    )
}
