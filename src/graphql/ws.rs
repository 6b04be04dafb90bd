//! `GET /graphql/ws`: GraphQL over WebSocket (`graphql-transport-ws`, and the legacy
//! `graphql-ws`). The JWT comes in the `connection_init` payload (`Authorization: Bearer ..`,
//! or `authorization`/`token`) and is checked like an HTTP request's. Every operation on the
//! socket (subscriptions, and queries and mutations, which clients such as graphql-ws send
//! here too) passes the same admission as HTTP (`graphql::admission`: size, NUL, aliases,
//! depth, complexity, rate cost). On top, per socket:
//!
//! - a message may be at most `HTTP_MAX_BODY_BYTES` (larger frames close the socket);
//! - `connection_init` must succeed within `WS_INIT_TIMEOUT_SECS` (else close 4408);
//! - at most `WS_MAX_OPERATIONS` operations run at once; one more is answered with a
//!   `RATE_LIMITED` error for its id, and a reused id is answered `BAD_USER_INPUT`;
//! - at most `WS_MAX_SOCKETS_PER_TENANT` sockets per tenant on this instance (close 4429);
//! - outgoing messages wait in a queue of `WS_OUTBOUND_QUEUE`; a client that does not read
//!   stalls its own streams, not the server's memory, and is dropped after 10 s;
//! - the socket closes with 4403 when the token expires, or when its API key is revoked (or
//!   its rotation overlap ends), on whichever instance that happened.
//!
//! Refusals of `connection_init` close with a 44xx code and a reason that starts with the
//! contract's error code (`UNAUTHENTICATED: ...`).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_graphql::Data;
use async_graphql_axum::{GraphQLProtocol, GraphQLWebSocket};
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio::sync::watch;
use uuid::Uuid;

use super::context::RequestCtx;
use super::loaders::DbLoader;
use crate::app::HttpState;
use crate::db::RequestStats;
use crate::error::AppError;
use crate::ids::TenantId;
use crate::members::membership;

/// How long one message may take to leave before the socket is dropped as not reading.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// Open sockets per tenant on this instance.
#[derive(Default)]
pub struct Sockets(Mutex<HashMap<TenantId, usize>>);

/// One counted socket; the count drops with it.
pub struct SocketSlot {
    sockets: Arc<Sockets>,
    tenant_id: TenantId,
}

impl Sockets {
    fn acquire(self: &Arc<Self>, tenant_id: TenantId, max: usize) -> Option<SocketSlot> {
        let mut open = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let n = open.entry(tenant_id).or_default();
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(SocketSlot {
            sockets: self.clone(),
            tenant_id,
        })
    }
}

impl Drop for SocketSlot {
    fn drop(&mut self) {
        let mut open = self.sockets.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = open.get_mut(&self.tenant_id) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.tenant_id);
            }
        }
    }
}

pub async fn handler(
    State(st): State<HttpState>,
    protocol: GraphQLProtocol,
    upgrade: WebSocketUpgrade,
) -> Response {
    let max = st.app.settings.graphql.max_body_bytes;
    upgrade
        .protocols(async_graphql::http::ALL_WEBSOCKET_PROTOCOLS)
        .max_message_size(max)
        .max_frame_size(max)
        // Small buffers: thousands of idle sockets must not cost 128 KiB each. The read buffer
        // is allocated up front; larger messages are read in 1 KiB steps.
        .read_buffer_size(1024)
        .write_buffer_size(8 * 1024)
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

/// The close code for a refused `connection_init`, from the reason's leading error code.
fn close_code(reason: &str) -> u16 {
    match reason.split(':').next().unwrap_or_default() {
        "UNAUTHENTICATED" => 4401,
        "FORBIDDEN" | "NOT_FOUND" | "TENANT_SUSPENDED" => 4403,
        "RATE_LIMITED" => 4429,
        "SERVICE_UNAVAILABLE" | "INTERNAL" => 1011,
        _ => 4400,
    }
}

/// Authenticates `connection_init` and builds the connection's context.
async fn init(
    st: HttpState,
    payload: serde_json::Value,
    expiry: watch::Sender<Option<i64>>,
    member: watch::Sender<Option<Membership>>,
) -> async_graphql::Result<Data> {
    let coded =
        |e: AppError| async_graphql::Error::new(format!("{}: {}", e.code(), e.public_message()));
    let app = st.app.clone();
    let token = token_from(&payload).ok_or_else(|| {
        coded(AppError::Unauthenticated(
            "connection_init needs a token".into(),
        ))
    })?;
    let db = app.db.for_request(Arc::new(RequestStats::default()));
    let mut resolved = crate::auth::resolve::resolve(
        &app.jwt,
        &app.api_keys,
        &app.tenant_cache,
        &db,
        None,
        Some(&token),
        &HeaderMap::new(),
    )
    .await
    .map_err(coded)?;
    // The JWT's own role, before the membership narrows it: what a later check starts from.
    let jwt_role = resolved.caller.principal().map(|p| p.role);
    membership::enforce(&app, &mut resolved)
        .await
        .map_err(coded)?;
    let mut data = Data::default();
    if let (Some(t), false) = (&resolved.tenant, resolved.caller.is_platform_admin()) {
        let max = app.settings.graphql.ws.max_sockets_per_tenant;
        let slot = st.sockets.acquire(t.id, max).ok_or_else(|| {
            metrics::counter!("tenantry_rate_limited_total").increment(1);
            coded(AppError::RateLimited {
                limit: max as u64,
                retry_after_secs: 60,
            })
        })?;
        data.insert(Arc::new(slot));
    }
    if let Some(p) = resolved.caller.principal() {
        let user = matches!(resolved.caller, crate::auth::Caller::User(_));
        if let (Some(t), true) = (p.tenant_id, user && app.settings.membership_enforced) {
            let jwt_role = jwt_role.unwrap_or(p.role);
            let _ = member.send(Some((t, p.user_id.clone(), jwt_role, p.role)));
        }
        let _ = expiry.send(Some(p.expires_at));
    }
    // An API key's revocation or rotation moves the deadline while the socket is open.
    crate::api_keys::auth::watch_socket(&app, &resolved.caller, expiry);
    let ctx = Arc::new(RequestCtx {
        request_id: Uuid::new_v4().to_string(),
        caller: resolved.caller,
        tenant: resolved.tenant,
        public_tenant: None,
        db: db.clone(),
    });
    let loaders = Arc::new(DbLoader::new_loaders(app.clone(), db, ctx.read_scope()));
    data.insert(ctx);
    data.insert(loaders);
    Ok(data)
}

/// The operations running on one socket, by id: what the per-socket cap counts.
struct Running {
    ids: Mutex<HashSet<String>>,
    max: usize,
    legacy: bool,
}

#[derive(serde::Deserialize)]
struct Envelope {
    #[serde(rename = "type")]
    kind: String,
    id: Option<String>,
}

impl Running {
    fn envelope(text: &str) -> Option<Envelope> {
        serde_json::from_str(text).ok()
    }

    /// A client message: `None` to pass it on, or the answer that refuses it.
    fn inbound(&self, text: &str) -> Option<Vec<String>> {
        let env = Self::envelope(text)?;
        let mut ids = self.ids.lock().unwrap_or_else(|p| p.into_inner());
        match (env.kind.as_str(), env.id) {
            ("subscribe" | "start", Some(id)) => {
                let refusal = if ids.contains(&id) {
                    Some(AppError::bad_input(
                        "id",
                        format!("an operation with id {id:?} is already running"),
                    ))
                } else if ids.len() >= self.max {
                    metrics::counter!("tenantry_rate_limited_total").increment(1);
                    Some(AppError::RateLimited {
                        limit: self.max as u64,
                        retry_after_secs: 1,
                    })
                } else {
                    None
                };
                match refusal {
                    Some(err) => Some(self.refusal(&id, err)),
                    None => {
                        ids.insert(id);
                        None
                    }
                }
            }
            ("complete" | "stop", Some(id)) => {
                ids.remove(&id);
                None
            }
            _ => None,
        }
    }

    /// A server message: an operation that completed no longer counts.
    fn outbound(&self, text: &str) {
        if !text.starts_with(r#"{"type":"complete""#) {
            return;
        }
        if let Some(Envelope { id: Some(id), .. }) = Self::envelope(text) {
            self.ids
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&id);
        }
    }

    /// An error result then `complete` for `id`, as the library answers any failed operation.
    fn refusal(&self, id: &str, err: AppError) -> Vec<String> {
        let mut error = serde_json::Map::new();
        error.insert("message".into(), json!(err.public_message()));
        let mut ext = err.extra();
        ext.insert("code".into(), json!(err.code()));
        error.insert("extensions".into(), serde_json::Value::Object(ext));
        let kind = if self.legacy { "data" } else { "next" };
        vec![
            json!({ "type": kind, "id": id, "payload": { "data": null, "errors": [error] } })
                .to_string(),
            json!({ "type": "complete", "id": id }).to_string(),
        ]
    }
}

async fn serve(st: HttpState, protocol: GraphQLProtocol, socket: WebSocket) {
    let limits = st.app.settings.graphql.ws.clone();
    let legacy = socket
        .protocol()
        .is_some_and(|p| p.as_bytes().eq_ignore_ascii_case(b"graphql-ws"));
    let running = Arc::new(Running {
        ids: Mutex::new(HashSet::new()),
        max: limits.max_operations,
        legacy,
    });
    let (mut ws_sink, ws_stream) = socket.split();
    let (out_tx, mut out_rx) = futures_channel::mpsc::channel::<Message>(limits.outbound_queue);
    let (expiry_tx, mut expiry_rx) = watch::channel::<Option<i64>>(None);
    let (member_tx, member_rx) = watch::channel::<Option<Membership>>(None);
    // Taken before the handshake: a change published while it runs reaches the watch.
    let (member_events, member_resyncs) = (st.app.bus.subscribe(), st.app.bus.resyncs());

    // Client messages pass the per-socket cap; refused ones are answered here directly.
    let mut refusals = out_tx.clone();
    let gate = running.clone();
    let inbound = ws_stream.filter(move |msg| {
        // The library reads text and binary frames alike: both pass the gate.
        let text = match msg {
            Ok(Message::Text(text)) => Some(text.as_str()),
            Ok(Message::Binary(bytes)) => std::str::from_utf8(bytes).ok(),
            _ => None,
        };
        let pass = match text.map(|t| gate.inbound(t)) {
            Some(Some(answers)) => {
                for a in answers {
                    // A client that does not read its answers loses the refusal, not memory.
                    let _ = refusals.try_send(Message::Text(a.into()));
                }
                false
            }
            _ => true,
        };
        std::future::ready(pass)
    });

    let state = st.clone();
    let graphql = GraphQLWebSocket::new_with_pair(out_tx, inbound, st.schema.clone(), protocol)
        .on_connection_init(move |payload| init(state, payload, expiry_tx, member_tx))
        .keepalive_timeout(Duration::from_secs(60))
        .serve();

    // Closes the socket when init does not succeed in time, and when the token expires.
    let deadline = async move {
        let init = async { expiry_rx.wait_for(|e| e.is_some()).await.map(|e| *e) };
        let exp = match tokio::time::timeout(limits.init_timeout, init).await {
            Err(_) => return (4408, "connection initialisation timeout"),
            Ok(Err(_)) => return std::future::pending().await,
            Ok(Ok(e)) => e.unwrap_or_default(),
        };
        // The deadline may move while the socket is open (an API key rotated or revoked,
        // `api_keys::auth::watch_socket`); a JWT's never does (its sender is gone).
        let mut exp = exp;
        loop {
            if exp == crate::api_keys::auth::REVOKED {
                return (4403, "credentials revoked");
            }
            let left = (exp - chrono::Utc::now().timestamp()).max(0) as u64;
            let sleep = tokio::time::sleep(Duration::from_secs(left));
            tokio::select! {
                _ = sleep => return (4403, "token expired"),
                changed = expiry_rx.changed() => match changed {
                    Ok(()) => exp = expiry_rx.borrow_and_update().unwrap_or_default(),
                    Err(_) => {
                        let left = (exp - chrono::Utc::now().timestamp()).max(0) as u64;
                        tokio::time::sleep(Duration::from_secs(left)).await;
                        return (4403, "token expired");
                    }
                },
            }
        }
    };
    let revoked = membership_watch(st.app.clone(), member_rx, member_events, member_resyncs);
    let forward = async {
        tokio::pin!(deadline);
        tokio::pin!(revoked);
        loop {
            tokio::select! {
                msg = out_rx.next() => match msg {
                    Some(Message::Close(Some(frame))) if frame.code == 1002 => {
                        // A refused connection_init: its reason starts with the error code.
                        let code = close_code(frame.reason.as_str());
                        let close = CloseFrame { code, reason: frame.reason };
                        let _ = ws_sink.send(Message::Close(Some(close))).await;
                        break;
                    }
                    Some(m) => {
                        if let Message::Text(t) = &m {
                            running.outbound(t.as_str());
                        }
                        // A client that stops reading is closed, not waited for: its queue
                        // stays bounded and its token expiry still applies.
                        match tokio::time::timeout(SEND_TIMEOUT, ws_sink.send(m)).await {
                            Ok(Ok(())) => {}
                            _ => break,
                        }
                    }
                    None => break,
                },
                (code, reason) = &mut deadline => {
                    let close = CloseFrame { code, reason: reason.into() };
                    let _ = ws_sink.send(Message::Close(Some(close))).await;
                    break;
                }
                (code, reason) = &mut revoked => {
                    let close = CloseFrame { code, reason: reason.into() };
                    let _ = ws_sink.send(Message::Close(Some(close))).await;
                    break;
                }
            }
        }
        let _ = ws_sink.close().await;
    };
    metrics::gauge!("tenantry_websocket_connections").increment(1.0);
    tokio::pin!(forward);
    tokio::select! {
        // The protocol ended (a refused init, a terminate): deliver what it queued last, such
        // as the close frame, before the socket goes.
        _ = graphql => {
            let _ = tokio::time::timeout(Duration::from_secs(2), &mut forward).await;
        }
        _ = &mut forward => {}
    }
    metrics::gauge!("tenantry_websocket_connections").decrement(1.0);
}

/// Who a socket's tenant user is: tenant, `sub`, the JWT's role, and the role it acts with.
type Membership = (TenantId, String, crate::auth::Role, crate::auth::Role);

/// Resolves with a close (4403) when the socket's tenant user stops being allowed in, or would
/// now act with a lower role (a socket keeps the role it was opened with): checked once right
/// after the handshake (the subscription to the bus was taken before it, so nothing published
/// in between is missed), then after each change of the tenant's members on any instance and
/// after missed events; a database that cannot be read is asked again a second later. Never
/// resolves for other sockets.
async fn membership_watch(
    app: std::sync::Arc<crate::app::App>,
    mut who: watch::Receiver<Option<Membership>>,
    mut events: tokio::sync::broadcast::Receiver<crate::bus::Event>,
    mut resyncs: watch::Receiver<u64>,
) -> (u16, &'static str) {
    let Ok(Some((tenant, sub, jwt_role, acting))) =
        who.wait_for(|w| w.is_some()).await.map(|w| w.clone())
    else {
        return std::future::pending().await;
    };
    let mut due = true;
    loop {
        if !due {
            use tokio::sync::broadcast::error::RecvError;
            due = tokio::select! {
                event = events.recv() => match event {
                    Ok(crate::bus::Event::MembersChanged { tenant_id }) => tenant_id == tenant,
                    Ok(crate::bus::Event::Resync) | Err(RecvError::Lagged(_)) => true,
                    Ok(_) => false,
                    Err(RecvError::Closed) => return std::future::pending().await,
                },
                changed = resyncs.changed() => {
                    if changed.is_err() {
                        return std::future::pending().await;
                    }
                    true
                }
            };
            continue;
        }
        due = false;
        match membership::current_role(&app, tenant, &sub, jwt_role).await {
            Some(Some(role)) if role.satisfies(acting) => {}
            Some(_) => return (4403, "FORBIDDEN: membership revoked or narrowed"),
            None => {
                tokio::time::sleep(Duration::from_secs(1)).await;
                due = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn running(max: usize) -> Running {
        Running {
            ids: Mutex::new(HashSet::new()),
            max,
            legacy: false,
        }
    }

    #[test]
    fn the_operation_cap_counts_running_ids() {
        let r = running(2);
        let sub = |id: &str| format!(r#"{{"type":"subscribe","id":"{id}","payload":{{}}}}"#);
        assert!(r.inbound(&sub("1")).is_none());
        let dup = r.inbound(&sub("1")).expect("a reused id is refused");
        assert!(dup[0].contains("BAD_USER_INPUT"));
        assert!(r.inbound(&sub("2")).is_none());
        let over = r.inbound(&sub("3")).expect("a third operation is refused");
        assert!(over[0].contains("RATE_LIMITED") && over[1].contains("complete"));
        r.outbound(r#"{"type":"complete","id":"1"}"#);
        assert!(
            r.inbound(&sub("3")).is_none(),
            "a completed operation frees its place"
        );
        assert!(r.inbound(r#"{"type":"complete","id":"2"}"#).is_none());
        assert!(r.inbound(&sub("4")).is_none());
    }

    #[test]
    fn init_refusals_close_with_the_code_of_their_error() {
        assert_eq!(close_code("UNAUTHENTICATED: bad token"), 4401);
        assert_eq!(close_code("RATE_LIMITED: rate limit exceeded"), 4429);
        assert_eq!(close_code("NOT_FOUND: tenant not found"), 4403);
        assert_eq!(close_code("whatever"), 4400);
    }
}
