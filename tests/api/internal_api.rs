//! The service-to-service REST API: service token required (constant-time checked), the same
//! rules as GraphQL, JSON errors with the contract codes.

use crate::common::{count, TestApp};
use serde_json::{json, Value};

const TOKEN: &str = "svc-token-for-tests";

async fn spawn() -> TestApp {
    TestApp::spawn_with(|env| {
        env.insert("SERVICE_TOKEN".into(), TOKEN.into());
    })
    .await
}

async fn call(
    app: &TestApp,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let url = format!("{}{path}", app.base);
    let mut req = match method {
        "GET" => app.client.get(url),
        _ => app.client.post(url),
    };
    if let Some(t) = token {
        req = req.header("x-service-token", t);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_over_rest_has_the_graphql_semantics() {
    let app = spawn().await;
    let t = app.tenant().plan("free").create().await;
    let path = format!("/internal/tenants/{}/usage", t.id);
    let (status, body) = call(
        &app,
        "POST",
        &path,
        Some(TOKEN),
        Some(json!({ "resource": "users", "amount": 2, "idempotencyKey": "u-1" })),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (
            body["used"].as_i64(),
            body["limit"].as_i64(),
            body["remaining"].as_i64()
        ),
        (Some(2), Some(3), Some(1))
    );
    let (_, again) = call(
        &app,
        "POST",
        &path,
        Some(TOKEN),
        Some(json!({ "resource": "users", "amount": 2, "idempotencyKey": "u-1" })),
    )
    .await;
    assert_eq!(again["used"], 2);
    assert_eq!(again["duplicate"], true);
    let (status, body) = call(
        &app,
        "POST",
        &path,
        Some(TOKEN),
        Some(json!({ "resource": "users", "amount": 2 })),
    )
    .await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error"]["code"], "QUOTA_EXCEEDED");
    assert_eq!(body["error"]["limit"], 3);
    assert_eq!(body["error"]["used"], 2);
    let (status, body) = call(
        &app,
        "POST",
        &path,
        Some(TOKEN),
        Some(json!({ "resource": "users" })),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "BAD_USER_INPUT");
    let (status, body) = call(
        &app,
        "POST",
        &format!("/internal/tenants/{}/usage", uuid::Uuid::new_v4()),
        Some(TOKEN),
        Some(json!({ "resource": "users", "amount": 1 })),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("NOT_FOUND"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_or_wrong_service_token_is_401_and_records_nothing() {
    let app = spawn().await;
    let t = app.tenant().create().await;
    let path = format!("/internal/tenants/{}/usage", t.id);
    for token in [
        None,
        Some("wrong"),
        Some("svc-token-for-test"),
        Some(&t.admin[..]),
    ] {
        let (status, body) = call(
            &app,
            "POST",
            &path,
            token,
            Some(json!({ "resource": "users", "amount": 1 })),
        )
        .await;
        assert_eq!(status, 401, "{token:?}: {body}");
        assert_eq!(body["error"]["code"], "UNAUTHENTICATED");
        let (status, _) = call(
            &app,
            "GET",
            &format!("/internal/tenants/{}/context", t.id),
            token,
            None,
        )
        .await;
        assert_eq!(status, 401);
    }
    let mut db = app.db.superuser().await;
    assert_eq!(
        count(&mut db, "select count(*) as n from usage_records").await,
        0
    );

    // Without SERVICE_TOKEN configured the internal API is closed.
    let closed = TestApp::spawn().await;
    let (status, _) = call(
        &closed,
        "POST",
        "/internal/tenants/validate",
        Some(""),
        Some(json!({ "slug": "x" })),
    )
    .await;
    assert_eq!(status, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn context_features_quotas_and_validate() {
    let app = spawn().await;
    let t = app
        .tenant()
        .plan("professional")
        .domain("app.example-co.com")
        .create()
        .await;
    let (status, ctx) = call(
        &app,
        "GET",
        &format!("/internal/tenants/{}/context", t.id),
        Some(TOKEN),
        None,
    )
    .await;
    assert_eq!(status, 200, "{ctx}");
    assert_eq!(ctx["tenant"]["slug"], t.slug.as_str());
    assert_eq!(ctx["plan"]["slug"], "professional");
    assert_eq!(ctx["plan"]["rateLimitPerMinute"], 300);
    let flags = ctx["features"].as_array().unwrap();
    assert!(flags
        .iter()
        .any(|f| f["key"] == "audit_logs" && f["enabled"] == true));
    assert!(flags
        .iter()
        .any(|f| f["key"] == "sso_integration" && f["enabled"] == false));
    assert!(ctx["quotas"]
        .as_array()
        .unwrap()
        .iter()
        .any(|q| q["resource"] == "users" && q["limit"] == 100));

    let (_, f) = call(
        &app,
        "GET",
        &format!("/internal/tenants/{}/features", t.slug),
        Some(TOKEN),
        None,
    )
    .await;
    assert_eq!(f["features"].as_array().unwrap().len(), 8);
    let (_, q) = call(
        &app,
        "GET",
        &format!("/internal/tenants/{}/quotas", t.id),
        Some(TOKEN),
        None,
    )
    .await;
    assert!(q["quotas"].as_array().unwrap().len() >= 5);

    for body in [
        json!({ "tenantId": t.id.to_string() }),
        json!({ "slug": t.slug }),
        json!({ "domain": "APP.example-co.com" }),
    ] {
        let (status, v) = call(
            &app,
            "POST",
            "/internal/tenants/validate",
            Some(TOKEN),
            Some(body.clone()),
        )
        .await;
        assert_eq!(status, 200);
        assert_eq!(
            (v["valid"].as_bool(), v["active"].as_bool()),
            (Some(true), Some(true)),
            "{body}: {v}"
        );
    }
    app.suspend_tenant(t.id, "x").await.ok();
    let (_, v) = call(
        &app,
        "POST",
        "/internal/tenants/validate",
        Some(TOKEN),
        Some(json!({ "slug": t.slug })),
    )
    .await;
    assert_eq!(
        (
            v["valid"].as_bool(),
            v["active"].as_bool(),
            v["status"].as_str()
        ),
        (Some(true), Some(false), Some("SUSPENDED"))
    );
    // A suspended tenant's usage is refused.
    let (status, body) = call(
        &app,
        "POST",
        &format!("/internal/tenants/{}/usage", t.id),
        Some(TOKEN),
        Some(json!({ "resource": "users", "amount": 1 })),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("TENANT_SUSPENDED"))
    );
    let (_, v) = call(
        &app,
        "POST",
        "/internal/tenants/validate",
        Some(TOKEN),
        Some(json!({ "slug": "nobody-here" })),
    )
    .await;
    assert_eq!(v["valid"], false);
    let (status, _) = call(
        &app,
        "POST",
        "/internal/tenants/validate",
        Some(TOKEN),
        Some(json!({ "slug": "a", "domain": "b.c" })),
    )
    .await;
    assert_eq!(status, 400);
}
