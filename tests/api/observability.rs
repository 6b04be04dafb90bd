//! Observability and the operator's tools (SPEC §2, §8): liveness, Prometheus metrics by
//! operation, request ids on every response, clean 404s — and `tenantry token`, which prints
//! one usable JWT line.

use crate::common;

use std::collections::HashMap;
use std::time::Duration;

use crate::common::{TestApp, APP_ROLE, JWT_SECRET};
use serde_json::json;

async fn get(app: &TestApp, path: &str) -> reqwest::Response {
    tokio::time::timeout(
        Duration::from_secs(10),
        app.client.get(format!("{}{path}", app.base)).send(),
    )
    .await
    .expect("answered within 10 s")
    .expect("request")
}

/// The sample value of the first line of `metric` carrying all `labels`.
fn sample(metrics: &str, metric: &str, labels: &[&str]) -> Option<f64> {
    metrics
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(&format!("{metric}{{")) || l.starts_with(&format!("{metric} ")))
        .find(|l| labels.iter().all(|label| l.contains(label)))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_answers_while_the_process_runs() {
    let app = TestApp::spawn().await;
    let resp = get(&app, "/health").await;
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().contains_key("x-request-id"));
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["status"], "ok");

    let resp = get(&app, "/ready").await;
    assert_eq!(resp.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_graphql_requests_by_operation() {
    // Reads counters every test of a process adds to.
    if !common::in_own_process("observability::metrics_count_graphql_requests_by_operation") {
        return;
    }
    let app = TestApp::spawn().await;

    // Two successful requests and one refused one, each with its operation name.
    for _ in 0..2 {
        let resp = app
            .post_json(
                "/graphql",
                None,
                &[],
                &json!({
                    "query": "query ObservedPlans { plans { slug } }",
                    "operationName": "ObservedPlans",
                }),
            )
            .await;
        resp.ok();
    }
    let resp = app
        .post_json(
            "/graphql",
            None,
            &[],
            &json!({
                "query": "query ObservedWhoami { me { role } }",
                "operationName": "ObservedWhoami",
            }),
        )
        .await;
    resp.err("UNAUTHENTICATED");

    let resp = get(&app, "/metrics").await;
    assert_eq!(resp.status(), 200);
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    let metrics = resp.text().await.unwrap();

    assert!(
        metrics.contains("tenantry_graphql_requests_total"),
        "{metrics}"
    );
    assert_eq!(
        sample(
            &metrics,
            "tenantry_graphql_requests_total",
            &["operation=\"query.plans\"", "outcome=\"ok\""]
        ),
        Some(2.0),
        "{metrics}"
    );
    assert_eq!(
        sample(
            &metrics,
            "tenantry_graphql_requests_total",
            &["operation=\"query.me\"", "outcome=\"UNAUTHENTICATED\""]
        ),
        Some(1.0),
        "{metrics}"
    );
    assert!(
        metrics.lines().any(
            |l| l.starts_with("tenantry_graphql_request_duration_seconds")
                && l.contains("operation=\"query.plans\"")
        ),
        "{metrics}"
    );
    // Not one label per arbitrary string: client-chosen operation names are never labels.
    assert!(!metrics.contains("Observed"), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_response_carries_a_request_id() {
    let app = TestApp::spawn().await;
    let mut ids = std::collections::HashSet::new();
    for path in ["/health", "/ready", "/metrics", "/no-such-path"] {
        let resp = get(&app, path).await;
        let id = resp
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_else(|| panic!("{path}: no x-request-id"))
            .to_owned();
        assert!(!id.is_empty(), "{path}");
        assert!(ids.insert(id.clone()), "{path}: request id reused: {id}");
    }
    let resp = app.gql(None, "{ plans { slug } }", json!({})).await;
    resp.ok();
    let id = resp
        .header("x-request-id")
        .expect("x-request-id")
        .to_owned();
    assert!(ids.insert(id));

    // A caller's own id is kept.
    let resp = app
        .gql_with(
            None,
            &[("x-request-id", "trace-me-7")],
            "{ plans { slug } }",
            json!({}),
        )
        .await;
    assert_eq!(resp.header("x-request-id"), Some("trace-me-7"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_paths_are_404() {
    let app = TestApp::spawn().await;
    for path in ["/no-such-path", "/graphql/extra", "/internal", "/metrics/x"] {
        let resp = get(&app, path).await;
        assert_eq!(resp.status(), 404, "{path}");
    }
    let resp = tokio::time::timeout(
        Duration::from_secs(10),
        app.client
            .post(format!("{}/no-such-path", app.base))
            .json(&json!({ "query": "{ plans { slug } }" }))
            .send(),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(resp.status(), 404);
}

fn cli_env(app: &TestApp) -> HashMap<String, String> {
    HashMap::from([
        ("DATABASE_URL".to_string(), app.db.url.clone()),
        ("JWT_SECRET".to_string(), JWT_SECRET.to_string()),
        ("DATABASE_APP_ROLE".to_string(), APP_ROLE.to_string()),
    ])
}

fn run(args: &[&str], env: &HashMap<String, String>) -> std::process::Output {
    common::binary(args, env)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run tenantry")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_command_prints_one_usable_line() {
    let app = TestApp::spawn().await;
    let t = app.tenant().create().await;
    let env = cli_env(&app);

    let out = run(
        &["token", "--role", "tenant_admin", "--tenant", &t.slug],
        &env,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(stdout.lines().count(), 1, "{stdout:?}");
    assert!(stdout.ends_with('\n'), "{stdout:?}");
    let token = stdout.trim_end();
    assert_eq!(token.split('.').count(), 3, "not a JWT: {token:?}");
    assert!(!token.contains(char::is_whitespace), "{token:?}");

    let resp = app
        .gql(Some(token), "{ me { role tenant { slug } } }", json!({}))
        .await;
    assert_eq!(
        resp.ok()["me"],
        json!({ "role": "TENANT_ADMIN", "tenant": { "slug": t.slug } })
    );

    // By tenant id, with a chosen subject.
    let id = t.id.to_string();
    let out = run(
        &[
            "token",
            "--role",
            "tenant_member",
            "--tenant",
            &id,
            "--sub",
            "ops-bob",
            "--ttl",
            "15m",
        ],
        &env,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(stdout.lines().count(), 1, "{stdout:?}");
    let resp = app
        .gql(
            Some(stdout.trim_end()),
            "{ me { userId role tenant { id } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        resp.ok()["me"],
        json!({ "userId": "ops-bob", "role": "TENANT_MEMBER", "tenant": { "id": id } })
    );

    // A platform admin needs no tenant.
    let out = run(&["token", "--role", "platform_admin"], &env);
    assert!(out.status.success());
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(stdout.lines().count(), 1, "{stdout:?}");
    let resp = app
        .gql(Some(stdout.trim_end()), "{ me { role } }", json!({}))
        .await;
    assert_eq!(resp.ok()["me"]["role"], "PLATFORM_ADMIN");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_command_refuses_incomplete_requests() {
    let app = TestApp::spawn().await;
    let env = cli_env(&app);

    let out = run(&["token", "--role", "tenant_admin"], &env);
    assert!(!out.status.success(), "tenant role without --tenant");
    assert!(
        out.stdout.is_empty(),
        "{:?}",
        String::from_utf8_lossy(&out.stdout)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--tenant"), "{stderr}");

    let out = run(
        &[
            "token",
            "--role",
            "tenant_admin",
            "--tenant",
            "no-such-tenant",
        ],
        &env,
    );
    assert!(!out.status.success(), "unknown tenant slug");
    assert!(out.stdout.is_empty());

    let out = run(&["token", "--role", "superuser"], &env);
    assert!(!out.status.success(), "unknown role");
    assert!(out.stdout.is_empty());

    // Without JWT_SECRET there is nothing to sign with.
    let mut no_secret = env.clone();
    no_secret.remove("JWT_SECRET");
    let out = run(&["token", "--role", "platform_admin"], &no_secret);
    assert!(!out.status.success(), "no JWT_SECRET");
    assert!(out.stdout.is_empty());
}
