//! A minimal GraphQL-over-WebSocket client for the cases a stock client hides (close codes,
//! raw protocol messages). The stock `graphql-ws` npm client is driven in tests/subscriptions.rs.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

use super::TestApp;

pub type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens `/graphql/ws` with the given sub-protocol (`graphql-transport-ws` or `graphql-ws`).
pub async fn connect(app: &TestApp, protocol: &str) -> Ws {
    let mut req = format!("ws://{}/graphql/ws", app.addr)
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("sec-websocket-protocol", protocol.parse().unwrap());
    tokio_tungstenite::connect_async(req)
        .await
        .expect("websocket")
        .0
}

/// The next text message as JSON, or `{"closed": code}` when the server closes; `None` after
/// five silent seconds.
pub async fn next_json<S>(ws: &mut S) -> Option<Value>
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    loop {
        match tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .ok()??
        {
            Ok(Message::Text(t)) => return serde_json::from_str(&t).ok(),
            Ok(Message::Close(frame)) => {
                return Some(json!({ "closed": frame.map(|f| u16::from(f.code)) }))
            }
            Ok(_) => continue,
            Err(_) => return Some(json!({ "closed": null })),
        }
    }
}

pub async fn send(ws: &mut Ws, msg: Value) {
    ws.send(Message::text(msg.to_string())).await.unwrap();
}

/// A `graphql-transport-ws` socket past `connection_ack`.
pub async fn open(app: &TestApp, token: &str) -> Ws {
    let mut ws = connect(app, "graphql-transport-ws").await;
    send(
        &mut ws,
        json!({ "type": "connection_init", "payload": { "Authorization": format!("Bearer {token}") } }),
    )
    .await;
    let ack = next_json(&mut ws).await;
    assert_eq!(
        ack.as_ref().map(|m| &m["type"]),
        Some(&json!("connection_ack")),
        "{ack:?}"
    );
    ws
}

/// Runs one query or mutation as operation `id` and returns its result payload
/// (`{data, errors}`), consuming the `complete` that follows.
pub async fn execute(ws: &mut Ws, id: &str, query: &str, variables: Value) -> Value {
    send(
        ws,
        json!({ "id": id, "type": "subscribe", "payload": { "query": query, "variables": variables } }),
    )
    .await;
    let msg = next_json(ws).await.expect("an answer");
    assert_eq!(msg["id"], id, "{msg}");
    let complete = next_json(ws).await.expect("complete");
    assert_eq!(complete["type"], "complete", "{complete}");
    msg["payload"].clone()
}
