//! `GET /graphql/ws`: GraphQL over WebSocket (`graphql-transport-ws`, and the legacy
//! `graphql-ws`). The JWT comes in the `connection_init` payload (`Authorization: Bearer ..`,
//! or `authorization`/`token`) and is checked like an HTTP request's. When the token expires
//! the server closes the socket (4403); a closed socket drops its subscriptions and with them
//! every broadcast receiver they held.

use std::sync::Arc;
use std::time::Duration;

use async_graphql::Data;
use async_graphql_axum::{GraphQLProtocol, GraphQLWebSocket};
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use futures_util::{SinkExt, StreamExt};
use tokio::sync::watch;

use super::context::RequestCtx;
use super::loaders::DbLoader;
use crate::app::{App, HttpState};
use crate::auth::resolve::resolve;
use crate::db::RequestStats;
use crate::error::AppError;

pub async fn handler(
    State(st): State<HttpState>,
    protocol: GraphQLProtocol,
    upgrade: WebSocketUpgrade,
) -> Response {
    upgrade
        .protocols(async_graphql::http::ALL_WEBSOCKET_PROTOCOLS)
        .on_upgrade(move |socket| serve(st, protocol, socket))
}

fn token_from(payload: &serde_json::Value) -> Option<String> {
    let raw = ["Authorization", "authorization", "token"]
        .iter()
        .find_map(|k| payload.get(*k).and_then(|v| v.as_str()))?;
    let raw = raw.trim();
    Some(match raw.split_once(' ') {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => rest.trim().to_owned(),
        _ => raw.to_owned(),
    })
}

/// Authenticates `connection_init` and builds the connection's context.
async fn init(
    app: Arc<App>,
    payload: serde_json::Value,
    expiry: watch::Sender<Option<i64>>,
) -> async_graphql::Result<Data> {
    let token = token_from(&payload)
        .ok_or_else(|| AppError::Unauthenticated("connection_init needs a token".into()))?;
    let db = app.db.for_request(Arc::new(RequestStats::default()));
    let resolved = resolve(
        &app.jwt,
        &app.tenant_cache,
        &db,
        None,
        Some(&token),
        &HeaderMap::new(),
    )
    .await?;
    if let Some(p) = resolved.caller.principal() {
        let _ = expiry.send(Some(p.expires_at));
    }
    let ctx = Arc::new(RequestCtx {
        request_id: uuid::Uuid::new_v4().to_string(),
        caller: resolved.caller,
        tenant: resolved.tenant,
        public_tenant: None,
        db: db.clone(),
    });
    let loaders = Arc::new(DbLoader::new_loaders(app.clone(), db, ctx.read_scope()));
    let mut data = Data::default();
    data.insert(ctx);
    data.insert(loaders);
    Ok(data)
}

async fn serve(st: HttpState, protocol: GraphQLProtocol, socket: WebSocket) {
    let (mut ws_sink, ws_stream) = socket.split();
    let (out_tx, mut out_rx) = futures_channel::mpsc::unbounded::<Message>();
    let (expiry_tx, mut expiry_rx) = watch::channel::<Option<i64>>(None);
    let app = st.app.clone();
    let graphql = GraphQLWebSocket::new_with_pair(out_tx, ws_stream, st.schema.clone(), protocol)
        .on_connection_init(move |payload| init(app, payload, expiry_tx))
        .keepalive_timeout(Duration::from_secs(60))
        .serve();

    let expired = async move {
        let Ok(exp) = expiry_rx
            .wait_for(|e| e.is_some())
            .await
            .map(|e| e.unwrap_or_default())
        else {
            return std::future::pending().await;
        };
        let left = (exp - chrono::Utc::now().timestamp()).max(0) as u64;
        tokio::time::sleep(Duration::from_secs(left)).await;
    };
    let forward = async {
        tokio::pin!(expired);
        loop {
            tokio::select! {
                msg = out_rx.next() => match msg {
                    Some(m) => if ws_sink.send(m).await.is_err() { break },
                    None => break,
                },
                _ = &mut expired => {
                    let close = CloseFrame { code: 4403, reason: "token expired".into() };
                    let _ = ws_sink.send(Message::Close(Some(close))).await;
                    break;
                }
            }
        }
        let _ = ws_sink.close().await;
    };
    metrics::gauge!("tenantry_websocket_connections").increment(1.0);
    tokio::select! {
        _ = graphql => {}
        _ = forward => {}
    }
    metrics::gauge!("tenantry_websocket_connections").decrement(1.0);
}
