//! Query protections (SPEC §5): depth, aliases, body and query size, batch size,
//! introspection and GraphiQL switches — refused with a clear 4xx or a coded GraphQL error,
//! never a 5xx or a hang. Plus liveness, metrics and request ids.

mod common;

use std::time::Duration;

use common::TestApp;
use serde_json::{json, Value};

async fn post_raw(app: &TestApp, body: String) -> (u16, Value, reqwest::header::HeaderMap) {
    let resp = tokio::time::timeout(
        Duration::from_secs(10),
        app.client
            .post(format!("{}/graphql", app.base))
            .header("content-type", "application/json")
            .body(body)
            .send(),
    )
    .await
    .expect("answered in time")
    .unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
        headers,
    )
}

fn first_code(v: &Value) -> Option<&str> {
    v["errors"][0]["extensions"]["code"]
        .as_str()
        .or(v["error"]["code"].as_str())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_wide_and_big_queries_are_refused_cleanly() {
    let app = TestApp::spawn().await;

    // 20 levels deep, through the (recursive, valid) introspection types.
    let mut deep = String::from("name");
    for _ in 0..17 {
        deep = format!("ofType {{ {deep} }}");
    }
    let q = format!("{{ __schema {{ types {{ fields {{ type {{ {deep} }} }} }} }} }}");
    let (status, body, _) = post_raw(&app, json!({ "query": q }).to_string()).await;
    assert!(status < 500, "{status}");
    assert!(first_code(&body).is_some(), "{body}");
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .contains("deep"),
        "{body}"
    );
    assert!(body["data"].is_null());

    // Aliases: 30 allowed, 31 and 100 refused.
    let aliased = |n: usize| {
        format!(
            "{{ {} }}",
            (0..n)
                .map(|i| format!("a{i}: plans {{ slug }}"))
                .collect::<Vec<_>>()
                .join(" ")
        )
    };
    let (_, body, _) = post_raw(&app, json!({ "query": aliased(30) }).to_string()).await;
    assert!(body.get("errors").is_none(), "{body}");
    for n in [31, 100] {
        let (status, body, _) = post_raw(&app, json!({ "query": aliased(n) }).to_string()).await;
        assert!(status < 500);
        assert_eq!(first_code(&body), Some("BAD_USER_INPUT"), "{body}");
        assert!(
            body["errors"][0]["message"]
                .as_str()
                .unwrap()
                .contains("aliases"),
            "{body}"
        );
    }

    // A 1 MiB body: 413, nothing parsed.
    let huge = json!({ "query": format!("{{ plans {{ slug }} }} # {}", "x".repeat(1024 * 1024)) })
        .to_string();
    let (status, _, _) = post_raw(&app, huge).await;
    assert_eq!(status, 413);
    // A query over 32 KiB in a body under the limit: 413 with a coded error.
    let long = json!({ "query": format!("{{ plans {{ slug }} }} # {}", "y".repeat(40 * 1024)) })
        .to_string();
    let (status, body, _) = post_raw(&app, long).await;
    assert_eq!(status, 413);
    assert_eq!(first_code(&body), Some("BAD_USER_INPUT"), "{body}");

    // Batches: 2 fine, 11 refused.
    let op = json!({ "query": "{ plans { slug } }" });
    let (status, body, _) = post_raw(&app, json!([op, op]).to_string()).await;
    assert_eq!(status, 200);
    assert_eq!(body.as_array().map(Vec::len), Some(2));
    let (status, body, _) = post_raw(&app, Value::Array(vec![op.clone(); 11]).to_string()).await;
    assert_eq!(status, 400);
    assert_eq!(first_code(&body), Some("BAD_USER_INPUT"), "{body}");

    // Malformed JSON is a 4xx.
    let (status, _, _) = post_raw(&app, "{\"query\": ".into()).await;
    assert!((400..500).contains(&status), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn introspection_and_graphiql_switch_off_in_production() {
    let dev = TestApp::spawn().await;
    let intro = "{ __schema { queryType { name } } }";
    assert_eq!(
        dev.gql(None, intro, json!({})).await.ok()["__schema"]["queryType"]["name"],
        "QueryRoot"
    );
    let page = dev
        .client
        .get(format!("{}/graphql", dev.base))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    assert!(page
        .text()
        .await
        .unwrap()
        .to_lowercase()
        .contains("graphiql"));

    let prod = TestApp::spawn_with(|env| {
        env.insert("APP_ENV".into(), "production".into());
    })
    .await;
    let resp = prod.gql(None, intro, json!({})).await;
    assert!(
        resp.body["data"]["__schema"].is_null(),
        "the schema must not be served: {}",
        resp.body
    );
    assert!(!resp.body.to_string().contains("QueryRoot"));
    let page = prod
        .client
        .get(format!("{}/graphql", prod.base))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 404);
    // GET queries still work.
    let resp = prod
        .client
        .get(format!("{}/graphql?query=%7Bplans%7Bslug%7D%7D", prod.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert!(v["data"]["plans"].as_array().unwrap().len() >= 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_carry_the_request_id_and_metrics_count_operations() {
    let app = TestApp::spawn().await;
    let resp = app
        .post_json(
            "/graphql",
            None,
            &[],
            &json!({ "query": "query Whoami { me { role } }", "operationName": "Whoami" }),
        )
        .await;
    let rid = resp
        .header("x-request-id")
        .expect("x-request-id")
        .to_owned();
    assert_eq!(resp.err("UNAUTHENTICATED")["extensions"]["requestId"], rid);
    app.post_json(
        "/graphql",
        None,
        &[],
        &json!({ "query": "query ListPlans { plans { slug } }", "operationName": "ListPlans" }),
    )
    .await
    .ok();

    assert_eq!(app.get("/health").await.0, 200);
    let (status, _) = app.get("/no/such/path").await;
    assert_eq!(status, 404);
    let (status, metrics) = app.get("/metrics").await;
    assert_eq!(status, 200);
    assert!(
        metrics.contains("tenantry_graphql_requests_total{operation=\"ListPlans\",outcome=\"ok\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            "tenantry_graphql_requests_total{operation=\"Whoami\",outcome=\"UNAUTHENTICATED\"}"
        ),
        "{metrics}"
    );
    assert!(metrics.contains("tenantry_graphql_request_duration_seconds"));
    assert!(metrics.contains("tenantry_sql_statements_per_request"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_command_prints_one_usable_line() {
    let app = TestApp::spawn().await;
    let t = app.tenant().create().await;
    let out = common::binary(
        &["token", "--role", "tenant_admin", "--tenant", &t.slug],
        &app.env,
    )
    .output()
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(stdout.lines().count(), 1, "{stdout:?}");
    let token = stdout.trim();
    let resp = app
        .gql(Some(token), "{ me { role tenant { slug } } }", json!({}))
        .await;
    assert_eq!(
        resp.ok()["me"],
        json!({ "role": "TENANT_ADMIN", "tenant": { "slug": t.slug } })
    );
    let out = common::binary(&["token", "--role", "tenant_admin"], &app.env)
        .output()
        .unwrap();
    assert!(!out.status.success());
}
