//! Quota alerts over GraphQL subscriptions: a stock `graphql-ws` client (Node) and a hand-rolled
//! protocol client; fan-out across instances through Redis; tenant isolation; token expiry.

use crate::common;

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use crate::common::ws::{connect, next_json};
use crate::common::TestApp;
use futures_util::SinkExt;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio_tungstenite::tungstenite::Message;

const RECORD: &str =
    "mutation($a: BigInt!) { recordUsage(resource: \"api_calls\", amount: $a) { used } }";

/// The Node `graphql-ws` client as a child process; its stdout lines are JSON events.
struct NodeSubscriber {
    lines: tokio::sync::mpsc::UnboundedReceiver<Value>,
    _child: tokio::process::Child,
}

impl NodeSubscriber {
    async fn start(app: &TestApp, token: &str, count: usize, timeout_ms: u64) -> NodeSubscriber {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/node/subscribe.mjs");
        let url = format!("ws://{}/graphql/ws", app.addr);
        let mut child = tokio::process::Command::new("node")
            .args([
                script,
                &url,
                token,
                &count.to_string(),
                &timeout_ms.to_string(),
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("node is installed (scripts/test.sh installs tests/node)");
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut reader = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    let _ = tx.send(v);
                }
            }
        });
        let mut sub = NodeSubscriber {
            lines,
            _child: child,
        };
        let first = sub
            .next(Duration::from_secs(10))
            .await
            .expect("client connects");
        assert_eq!(first, json!({ "ready": true }), "{first}");
        // connection_ack precedes the subscribe message: give it a moment to register.
        tokio::time::sleep(Duration::from_millis(300)).await;
        sub
    }

    async fn next(&mut self, within: Duration) -> Option<Value> {
        tokio::time::timeout(within, self.lines.recv())
            .await
            .ok()
            .flatten()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stock_client_on_instance_b_gets_alerts_caused_on_instance_a_and_nobody_elses() {
    let a = TestApp::spawn().await;
    let b = a.second_instance().await;
    let t = a.tenant().plan("free").create().await; // api_calls: 1,000 / month
    let c = a.tenant().plan("free").create().await;

    let mut sub_t = NodeSubscriber::start(&b, &t.member, 0, 8_000).await;
    let mut sub_c = NodeSubscriber::start(&b, &c.member, 0, 8_000).await;

    a.gql(Some(&t.member), RECORD, json!({ "a": 760 }))
        .await
        .ok();
    let msg = sub_t
        .next(Duration::from_secs(5))
        .await
        .expect("alert delivered to B's subscriber");
    let alert = &msg["data"]["quotaAlerts"];
    assert_eq!(alert["tenantId"], t.id.to_string(), "{msg}");
    assert_eq!(alert["resource"], "api_calls");
    assert_eq!(alert["threshold"], 75);
    assert_eq!(alert["used"], 760);
    assert_eq!(alert["limit"], 1000);
    assert_eq!(
        sub_c.next(Duration::from_millis(700)).await,
        None,
        "tenant C must receive nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_writers_produce_exactly_one_message_per_threshold() {
    let app = Arc::new(TestApp::spawn().await);
    let t = app.tenant().plan("free").create().await;
    let mut sub = NodeSubscriber::start(&app, &t.member, 0, 20_000).await;

    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..64 {
        let (app, token) = (app.clone(), t.member.clone());
        tasks.spawn(async move {
            for _ in 0..20 {
                let resp = app.gql(Some(&token), RECORD, json!({ "a": 1 })).await;
                assert!(
                    matches!(resp.code(), None | Some("QUOTA_EXCEEDED")),
                    "{}",
                    resp.body
                );
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
    let mut thresholds = Vec::new();
    while let Some(msg) = sub.next(Duration::from_millis(1500)).await {
        thresholds.push(
            msg["data"]["quotaAlerts"]["threshold"]
                .as_i64()
                .expect("an alert"),
        );
    }
    thresholds.sort();
    assert_eq!(thresholds, vec![75, 90, 95, 100]);
    let mut db = app.db.superuser().await;
    let sql = format!(
        "select count(*) as n from quota_alerts where tenant_id = '{}'",
        t.id
    );
    assert_eq!(common::count(&mut db, &sql).await, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_protocol_isolation_and_auth_on_the_socket() {
    let app = TestApp::spawn().await;
    let t = app.tenant().plan("free").create().await;
    let other = app.tenant().plan("free").create().await;

    // Legacy `graphql-ws` (subscriptions-transport-ws) with the token under `authorization`.
    let mut ws = connect(&app, "graphql-ws").await;
    ws.send(Message::text(json!({ "type": "connection_init", "payload": { "authorization": format!("Bearer {}", t.member) } }).to_string()))
        .await
        .unwrap();
    assert_eq!(next_json(&mut ws).await.unwrap()["type"], "connection_ack");
    ws.send(Message::text(json!({ "id": "1", "type": "start", "payload": { "query": "subscription { quotaAlerts { threshold tenantId } }" } }).to_string()))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    app.gql(Some(&t.member), RECORD, json!({ "a": 950 }))
        .await
        .ok();
    let mut got = Vec::new();
    for _ in 0..2 {
        let msg = next_json(&mut ws).await.expect("data");
        assert_eq!(msg["type"], "data", "{msg}");
        got.push(
            msg["payload"]["data"]["quotaAlerts"]["threshold"]
                .as_i64()
                .unwrap(),
        );
    }
    got.sort();
    assert_eq!(got, vec![75, 90]);

    // Asking for another tenant's alerts is refused on the socket.
    let mut ws = connect(&app, "graphql-transport-ws").await;
    ws.send(Message::text(json!({ "type": "connection_init", "payload": { "Authorization": format!("Bearer {}", t.member) } }).to_string()))
        .await
        .unwrap();
    assert_eq!(next_json(&mut ws).await.unwrap()["type"], "connection_ack");
    let q = json!({ "id": "x", "type": "subscribe", "payload": {
        "query": "subscription($t: ID) { quotaAlerts(tenantId: $t) { threshold } }", "variables": { "t": other.id.to_string() } } });
    ws.send(Message::text(q.to_string())).await.unwrap();
    let msg = next_json(&mut ws).await.unwrap();
    let code = match msg["type"].as_str() {
        Some("error") => &msg["payload"][0]["extensions"]["code"],
        _ => &msg["payload"]["errors"][0]["extensions"]["code"],
    };
    assert_eq!(code, "NOT_FOUND", "{msg}");
    assert!(msg["payload"]["data"]["quotaAlerts"].is_null());

    // No token, or a bad one: the connection is refused.
    let mut ws = connect(&app, "graphql-transport-ws").await;
    ws.send(Message::text(
        json!({ "type": "connection_init", "payload": { "Authorization": "Bearer nope" } })
            .to_string(),
    ))
    .await
    .unwrap();
    let msg = next_json(&mut ws).await.unwrap();
    assert!(
        msg.get("closed").is_some() || msg["type"] == "connection_error",
        "{msg}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_socket_ends_when_the_token_expires() {
    let app = TestApp::spawn().await;
    let t = app.tenant().create().await;
    let short = tenantry::auth::jwt::issue(
        &app.app.settings,
        tenantry::auth::Role::TenantMember,
        Some(t.id.into()),
        "short-lived",
        Duration::from_secs(2),
    )
    .unwrap();
    let mut ws = connect(&app, "graphql-transport-ws").await;
    ws.send(Message::text(
        json!({ "type": "connection_init", "payload": { "token": short } }).to_string(),
    ))
    .await
    .unwrap();
    assert_eq!(next_json(&mut ws).await.unwrap()["type"], "connection_ack");
    let started = std::time::Instant::now();
    let msg = loop {
        let m = next_json(&mut ws).await.expect("closed within the timeout");
        if m.get("closed").is_some() {
            break m;
        }
    };
    assert_eq!(msg["closed"], 4403, "{msg}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_platform_admin_hears_every_tenant_or_the_one_chosen() {
    use crate::common::ws::{open, send};
    let app = TestApp::spawn().await;
    let a = app.tenant().plan("free").create().await;
    let b = app.tenant().plan("free").create().await;
    let mut ws = open(&app, &app.admin_token()).await;
    let sub = |id: &str, query: &str, vars: Value| json!({ "id": id, "type": "subscribe", "payload": { "query": query, "variables": vars } });
    send(
        &mut ws,
        sub(
            "all",
            "subscription { quotaAlerts { threshold tenantId } }",
            json!({}),
        ),
    )
    .await;
    send(
        &mut ws,
        sub(
            "only-b",
            "subscription($t: ID) { quotaAlerts(tenantId: $t) { threshold tenantId } }",
            json!({ "t": b.id.to_string() }),
        ),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    // A crosses 75 %, then B crosses 75 %: `all` hears both, `only-b` hears B's alone.
    app.gql(Some(&a.member), RECORD, json!({ "a": 750 }))
        .await
        .ok();
    app.gql(Some(&b.member), RECORD, json!({ "a": 750 }))
        .await
        .ok();
    let mut heard: Vec<(String, String)> = Vec::new();
    while let Some(msg) = next_json(&mut ws).await {
        assert_eq!(msg["type"], "next", "{msg}");
        let alert = &msg["payload"]["data"]["quotaAlerts"];
        assert_eq!(alert["threshold"], 75, "{msg}");
        heard.push((
            msg["id"].as_str().unwrap().to_owned(),
            alert["tenantId"].as_str().unwrap().to_owned(),
        ));
        if heard.len() == 3 {
            break;
        }
    }
    heard.sort();
    let (a, b) = (a.id.to_string(), b.id.to_string());
    let mut expected = vec![
        ("all".to_owned(), a.clone()),
        ("all".to_owned(), b.clone()),
        ("only-b".to_owned(), b),
    ];
    expected.sort();
    assert_eq!(heard, expected);
    // Nothing more (A's alert never reached `only-b`).
    let extra = tokio::time::timeout(Duration::from_millis(500), next_json(&mut ws)).await;
    assert!(matches!(extra, Err(_) | Ok(None)), "{extra:?}");
}
