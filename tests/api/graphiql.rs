//! GraphiQL at `GET /graphql` works on a machine without internet (issue 13): the binary
//! serves the page and every file it loads, and a real browser — Debian's headless chromium,
//! driven by `tests/node/graphiql.mjs`, with every non-loopback destination unreachable and
//! every attempt recorded — renders it, runs a query authorised by the token pasted into the
//! Headers pane, and starts a subscription over `/graphql/ws`.

use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;

use crate::common::TestApp;

/// Runs the browser script against `app` and returns its report.
async fn drive_chromium(
    app: &TestApp,
    token: &str,
    query: &str,
    subscription: &str,
    trigger: (&str, &str),
) -> Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/node/graphiql.mjs");
    let child = tokio::process::Command::new("node")
        .args([
            script,
            &app.base,
            token,
            query,
            subscription,
            trigger.0,
            trigger.1,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node is installed (scripts/test.sh installs tests/node and chromium)");
    let out = tokio::time::timeout(Duration::from_secs(120), child.wait_with_output())
        .await
        .expect("the browser run ends within 120 s")
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "node failed:\n{stdout}\n{stderr}");
    let report: Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("{e}: not a JSON report:\n{stdout}\n{stderr}"));
    assert!(
        report.get("failure").is_none(),
        "the browser run failed: {report:#}"
    );
    report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graphiql_runs_a_query_with_the_pasted_token_and_nothing_leaves_the_machine() {
    let app = TestApp::spawn().await;
    let t = app.tenant().plan("free").create().await;

    // A small api_calls quota, so that the trigger (8 of 10) crosses the 75 % threshold.
    let set = "mutation($t: ID!) { setQuota(tenantId: $t, input: { resource: \"api_calls\", limit: 10 }) { limit } }";
    app.gql(
        Some(&app.admin_token()),
        set,
        serde_json::json!({ "t": t.id }),
    )
    .await
    .ok();
    let record = "mutation { recordUsage(resource: \"api_calls\", amount: 8) { used } }";

    let report = drive_chromium(
        &app,
        &t.member,
        "{ me { role } }",
        "subscription { quotaAlerts { resource percentUsed } }",
        (record, &t.admin),
    )
    .await;

    // The page rendered, and what was pasted into its editors is what they hold.
    assert_eq!(report["query"], "{ me { role } }", "{report:#}");
    let headers = report["headers"].as_str().unwrap_or_default();
    assert!(
        headers.contains(&format!("Bearer {}", t.member)),
        "{report:#}"
    );

    // Without a token the answer is a refusal; with the pasted one, the member's role.
    let before = report["resultWithoutToken"].as_str().unwrap_or_default();
    assert!(before.contains("UNAUTHENTICATED"), "{report:#}");
    assert!(!before.contains("TENANT_MEMBER"), "{report:#}");
    let shown = report["result"].as_str().unwrap_or_default();
    assert!(shown.contains("\"role\": \"TENANT_MEMBER\""), "{report:#}");
    assert!(!shown.contains("\"errors\""), "{report:#}");

    // Nothing but this server was asked for anything, and the page raised no error.
    assert_eq!(report["blocked"], serde_json::json!([]), "{report:#}");
    let requests = report["requests"].as_array().expect("requests");
    assert!(!requests.is_empty(), "{report:#}");
    for url in requests {
        let url = url.as_str().unwrap_or_default();
        assert!(url.starts_with(&format!("{}/", app.base)), "{url}");
    }
    assert_eq!(report["pageErrors"], serde_json::json!([]), "{report:#}");
    assert_eq!(report["consoleErrors"], serde_json::json!([]), "{report:#}");
    assert_eq!(report["dialogs"], true, "{report:#}");

    // The subscription went over /graphql/ws with the Headers pane as connection_init payload,
    // and the server accepted both.
    let socket = &report["socket"];
    assert_eq!(
        socket["url"],
        format!("ws://{}/graphql/ws", app.addr),
        "{report:#}"
    );
    assert_eq!(socket["protocol"], "graphql-transport-ws", "{report:#}");
    assert_eq!(socket["initCarriesToken"], true, "{report:#}");
    assert_eq!(socket["acknowledged"], true, "{report:#}");
    assert_eq!(socket["subscribed"], true, "{report:#}");
    assert_eq!(socket["refused"], serde_json::json!([]), "{report:#}");
    assert!(socket["closed"].is_null(), "{report:#}");
    // The alert the trigger caused reached the page over that socket and is on screen.
    assert!(report["trigger"]["errors"].is_null(), "{report:#}");
    let event = report["event"].as_str().unwrap_or_default();
    assert!(
        event.contains("\"resource\": \"api_calls\"") && event.contains("percentUsed"),
        "{report:#}"
    );

    // The recorder is not blind: a request to another host, made on purpose, was caught.
    let control = &report["control"];
    assert_eq!(
        control["blocked"],
        serde_json::json!(["https://registry.npmjs.org/graphiql"]),
        "{report:#}"
    );
    assert!(
        control["fetched"]
            .as_str()
            .is_some_and(|f| f.starts_with("failed")),
        "{report:#}"
    );
}

/// Answers `GET path` as a browser asks for it.
async fn browser_get(app: &TestApp, path: &str) -> reqwest::Response {
    app.client
        .get(format!("{}{path}", app.base))
        .header("accept", "text/html,*/*")
        .send()
        .await
        .expect("request")
}

/// The files the page loads, as named in its HTML.
fn assets_of(html: &str) -> Vec<String> {
    html.split('"')
        .filter(|s| s.starts_with("/graphql/assets/"))
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_and_its_files_come_from_the_server_under_a_strict_policy() {
    let app = TestApp::spawn().await;
    let page = browser_get(&app, "/graphql").await;
    assert_eq!(page.status(), 200);
    let header = |r: &reqwest::Response, name: &str| {
        r.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    assert!(header(&page, "content-type").starts_with("text/html"));
    let csp = header(&page, "content-security-policy");
    assert!(csp.contains("default-src 'none'"), "{csp}");
    assert!(csp.contains("script-src 'self';"), "{csp}");
    assert!(
        csp.contains(&format!("connect-src 'self' ws://{}", app.addr)),
        "{csp}"
    );
    let html = page.text().await.unwrap();
    assert!(
        !html.contains("https://") && !html.contains("http://"),
        "{html}"
    );
    assert!(!html.contains("<script>"), "no inline script: {html}");

    let assets = assets_of(&html);
    assert_eq!(assets.len(), 6, "{html}");
    for path in &assets {
        let resp = browser_get(&app, path).await;
        assert_eq!(resp.status(), 200, "{path}");
        let kind = header(&resp, "content-type");
        let cache = header(&resp, "cache-control");
        if path.ends_with(".js") {
            assert!(kind.starts_with("text/javascript"), "{path}: {kind}");
        } else {
            assert!(kind.starts_with("text/css"), "{path}: {kind}");
        }
        // Vendored files carry their version in the name and are kept for a year; the page's
        // own script and style are revalidated.
        if path.contains("-3.9.0.") || path.contains("-18.3.1.") {
            assert!(cache.contains("max-age=31536000"), "{path}: {cache}");
        } else {
            assert_eq!(cache, "no-cache", "{path}");
        }
        assert!(resp.bytes().await.unwrap().len() > 30, "{path}");
    }

    for unknown in [
        "/graphql/assets/nope.js",
        "/graphql/assets/..%2FCargo.toml",
        "/graphql/assets/graphiql-3.9.0.min.js.map",
    ] {
        let resp = browser_get(&app, unknown).await;
        assert_eq!(resp.status(), 404, "{unknown}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_graphiql_neither_the_page_nor_its_files_are_served() {
    let on = TestApp::spawn().await;
    let html = browser_get(&on, "/graphql").await.text().await.unwrap();
    let assets = assets_of(&html);
    assert!(!assets.is_empty(), "{html}");

    for (var, value) in [("GRAPHIQL_ENABLED", "false"), ("APP_ENV", "production")] {
        let off = TestApp::spawn_with(|env| {
            env.insert(var.into(), value.into());
        })
        .await;
        assert_eq!(browser_get(&off, "/graphql").await.status(), 404, "{var}");
        for path in &assets {
            assert_eq!(browser_get(&off, path).await.status(), 404, "{var}: {path}");
        }
    }
}
