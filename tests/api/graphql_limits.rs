//! Query protections (SPEC §5): depth, aliases, body and query size, batch size, introspection
//! and GraphiQL switches. Each abuse is refused with a clear 4xx or a GraphQL error carrying
//! `extensions.code` — never a 5xx, never a hang — and every GraphQL error carries the request id.

use std::time::Duration;

use crate::common::TestApp;
use serde_json::{json, Value};

/// What a client sees: status, headers, body (JSON when it parses, else the text).
struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Value,
}

impl Answer {
    fn code(&self) -> Option<&str> {
        self.body["errors"][0]["extensions"]["code"]
            .as_str()
            .or(self.body["error"]["code"].as_str())
    }

    fn message(&self) -> String {
        self.body["errors"][0]["message"]
            .as_str()
            .or(self.body["error"]["message"].as_str())
            .unwrap_or_default()
            .to_lowercase()
    }

    fn request_id(&self) -> Option<&str> {
        self.headers.get("x-request-id")?.to_str().ok()
    }
}

/// Sends with a 10 s deadline: a protection that hangs fails the test.
async fn send(req: reqwest::RequestBuilder) -> Answer {
    let resp = tokio::time::timeout(Duration::from_secs(10), req.send())
        .await
        .expect("the server answered within 10 s")
        .expect("request");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = tokio::time::timeout(Duration::from_secs(10), resp.text())
        .await
        .expect("the body arrived within 10 s")
        .unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    assert!(status < 500, "HTTP {status}: {body}");
    Answer {
        status,
        headers,
        body,
    }
}

/// POSTs `body` to /graphql with `Transfer-Encoding: chunked` over a raw connection and returns
/// the response status (the server may answer before it has read everything).
async fn chunked_post(app: &TestApp, body: &[u8]) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let stream = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let (mut rd, mut wr) = stream.into_split();
    let mut payload = format!(
        "POST /graphql HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        app.addr
    )
    .into_bytes();
    for chunk in body.chunks(64 * 1024) {
        payload.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        payload.extend_from_slice(chunk);
        payload.extend_from_slice(b"\r\n");
    }
    payload.extend_from_slice(b"0\r\n\r\n");
    let writer = tokio::spawn(async move {
        // The server may close the connection early: write errors are expected then.
        let _ = wr.write_all(&payload).await;
        let _ = wr.flush().await;
        wr
    });
    let mut head = Vec::new();
    let read = async {
        let mut buf = [0u8; 4096];
        while !head.windows(2).any(|w| w == b"\r\n") {
            let n = rd.read(&mut buf).await.unwrap_or(0);
            if n == 0 {
                break;
            }
            head.extend_from_slice(&buf[..n]);
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .expect("the server answered the chunked body within 10 s");
    let _ = writer.await;
    let line = String::from_utf8_lossy(&head);
    line.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP status line: {line:?}"))
}

fn post(app: &TestApp) -> reqwest::RequestBuilder {
    app.client
        .post(format!("{}/graphql", app.base))
        .header("content-type", "application/json")
}

async fn post_body(app: &TestApp, body: impl Into<reqwest::Body>) -> Answer {
    send(post(app).body(body)).await
}

async fn query(app: &TestApp, q: &str) -> Answer {
    post_body(app, json!({ "query": q }).to_string()).await
}

/// `{ __schema { types { fields { type { ofType { … name } } } } } }`, `depth` fields deep.
fn introspection_query(depth: usize) -> String {
    assert!(depth >= 5);
    let mut q = String::from("name");
    for _ in 0..depth - 5 {
        q = format!("ofType {{ {q} }}");
    }
    for field in ["type", "fields", "types", "__schema"] {
        q = format!("{field} {{ {q} }}");
    }
    format!("{{ {q} }}")
}

fn aliases(n: usize) -> String {
    let fields: Vec<String> = (0..n).map(|i| format!("a{i}: plans {{ slug }}")).collect();
    format!("{{ {} }}", fields.join(" "))
}

/// Asserts a GraphQL error with a code and the request id of the response.
fn assert_coded(a: &Answer, why: &str) {
    assert!(a.code().is_some(), "{why}: no code: {}", a.body);
    assert!(a.body["data"].is_null(), "{why}: data returned: {}", a.body);
    let rid = a.request_id().expect("x-request-id header");
    assert_eq!(
        a.body["errors"][0]["extensions"]["requestId"].as_str(),
        Some(rid),
        "{why}: {}",
        a.body
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_queries_are_refused() {
    let app = TestApp::spawn().await;
    let q = introspection_query(20);
    assert_eq!(q.matches("{").count(), 20, "20 nested selection sets: {q}");
    let a = query(&app, &q).await;
    assert_coded(&a, "depth 20");
    let msg = a.message();
    assert!(msg.contains("deep") || msg.contains("depth"), "{}", a.body);
    // The second time its parsed document comes from the cache: refused all the same.
    let again = query(&app, &q).await;
    assert_coded(&again, "depth 20, parsed document cached");
    assert_eq!(again.message(), msg);

    // Within the limit, the same shape answers.
    let ok = query(&app, &introspection_query(10)).await;
    assert!(ok.body.get("errors").is_none(), "{}", ok.body);
    assert!(ok.body["data"]["__schema"]["types"].is_array());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aliases_are_capped_at_thirty() {
    let app = TestApp::spawn().await;

    let a = query(&app, &aliases(100)).await;
    assert_coded(&a, "100 aliases");
    assert_eq!(a.code(), Some("BAD_USER_INPUT"), "{}", a.body);
    assert!(a.message().contains("aliases"), "{}", a.body);
    let again = query(&app, &aliases(100)).await;
    assert_eq!(
        again.code(),
        Some("BAD_USER_INPUT"),
        "cached: {}",
        again.body
    );

    let a = query(&app, &aliases(31)).await;
    assert_coded(&a, "31 aliases");
    assert_eq!(a.code(), Some("BAD_USER_INPUT"), "{}", a.body);
    assert!(a.message().contains("aliases"), "{}", a.body);

    let a = query(&app, &aliases(30)).await;
    assert!(a.body.get("errors").is_none(), "30 aliases: {}", a.body);
    assert!(a.body["data"]["a29"][0]["slug"].is_string(), "{}", a.body);

    // Aliases hidden in a fragment count too.
    let fields: Vec<String> = (0..31).map(|i| format!("f{i}: plans {{ slug }}")).collect();
    let q = format!(
        "query {{ ...F }} fragment F on Query {{ {} }}",
        fields.join(" ")
    );
    let a = query(&app, &q).await;
    assert_eq!(a.code(), Some("BAD_USER_INPUT"), "{}", a.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_bodies_and_queries_are_413() {
    let app = TestApp::spawn().await;

    // 1 MiB of JSON, with a declared Content-Length.
    let filler = "x".repeat(1024 * 1024);
    let body = json!({ "query": format!("#{filler}\n{{ plans {{ slug }} }}") }).to_string();
    assert!(body.len() > 1024 * 1024);
    let a = post_body(&app, body.clone()).await;
    assert_eq!(a.status, 413, "{}", a.body);

    // The same body streamed (chunked, no Content-Length) is refused as well.
    let status = chunked_post(&app, body.as_bytes()).await;
    assert!((400..500).contains(&status), "chunked 1 MiB: HTTP {status}");

    // A query over 32 KiB inside a body well under the body limit.
    let q = format!("#{}\n{{ plans {{ slug }} }}", "y".repeat(33 * 1024));
    let a = query(&app, &q).await;
    assert_eq!(a.status, 413, "{}", a.body);
    assert_eq!(a.code(), Some("BAD_USER_INPUT"), "{}", a.body);
    assert_coded(&a, "query over 32 KiB");

    // Just under the query limit still runs.
    let q = format!("#{}\n{{ plans {{ slug }} }}", "z".repeat(31 * 1024));
    let a = query(&app, &q).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(a.body.get("errors").is_none(), "{}", a.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_are_capped_at_ten() {
    let app = TestApp::spawn().await;
    let op = json!({ "query": "{ plans { slug } }" });

    let eleven = Value::Array(vec![op.clone(); 11]);
    let a = post_body(&app, eleven.to_string()).await;
    assert_eq!(a.status, 400, "{}", a.body);
    assert!(a.code().is_some(), "{}", a.body);
    assert!(a.message().contains("batch"), "{}", a.body);

    let ten = Value::Array(vec![op.clone(); 10]);
    let a = post_body(&app, ten.to_string()).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body.as_array().map(Vec::len), Some(10), "{}", a.body);

    let two = json!([
        { "query": "query A { plans { slug } }", "operationName": "A" },
        {
            "query": "query B($s: String!) { plan(slug: $s) { slug } }",
            "variables": { "s": "free" },
        },
    ]);
    let a = post_body(&app, two.to_string()).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let list = a.body.as_array().expect("an array of results");
    assert_eq!(list.len(), 2, "{}", a.body);
    assert!(list[0].get("errors").is_none(), "{}", a.body);
    assert!(list[0]["data"]["plans"]
        .as_array()
        .is_some_and(|p| !p.is_empty()));
    assert_eq!(list[1]["data"]["plan"]["slug"], "free", "{}", a.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn introspection_and_graphiql_are_on_by_default() {
    let app = TestApp::spawn().await;
    let a = query(&app, "{ __schema { queryType { name } } }").await;
    assert_eq!(a.body["data"]["__schema"]["queryType"]["name"], "Query");
    // The roots carry the standard names (SPEC §13): fragments `on Query` work.
    let a = query(
        &app,
        "query { ...Root __schema { mutationType { name } subscriptionType { name } } } fragment Root on Query { __typename }",
    )
    .await;
    assert_eq!(a.body["data"]["__typename"], "Query", "{}", a.body);
    assert_eq!(
        a.body["data"]["__schema"]["mutationType"]["name"],
        "Mutation"
    );
    assert_eq!(
        a.body["data"]["__schema"]["subscriptionType"]["name"],
        "Subscription"
    );

    let a = query(&app, "{ __type(name: \"Tenant\") { name } }").await;
    assert_eq!(a.body["data"]["__type"]["name"], "Tenant", "{}", a.body);

    // Suggestions help developers while introspection is on.
    let a = query(&app, "{ plans { slugg } }").await;
    assert!(a.message().contains("did you mean"), "{}", a.body);

    let page = send(
        app.client
            .get(format!("{}/graphql", app.base))
            .header("accept", "text/html"),
    )
    .await;
    assert_eq!(page.status, 200);
    let html = page.body.as_str().expect("HTML").to_lowercase();
    assert!(html.contains("graphiql"), "{html}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn production_turns_introspection_and_graphiql_off() {
    let app = TestApp::spawn_with(|env| {
        env.insert("APP_ENV".into(), "production".into());
    })
    .await;

    // Nothing about the schema comes back (the coded refusal itself is checked below).
    for (q, field) in [
        ("{ __schema { queryType { name } } }", "__schema"),
        (
            "{ __type(name: \"Tenant\") { name fields { name } } }",
            "__type",
        ),
    ] {
        let a = query(&app, q).await;
        assert!(a.body["data"][field].is_null(), "{q}: {}", a.body);
        let text = a.body.to_string();
        assert!(
            !text.contains("\"Query\"") && !text.contains("slug"),
            "{q}: schema leaked: {text}"
        );
        if a.body.get("errors").is_some() {
            assert_coded(&a, q);
        }
    }

    let page = send(
        app.client
            .get(format!("{}/graphql", app.base))
            .header("accept", "text/html"),
    )
    .await;
    assert_eq!(page.status, 404, "{}", page.body);
    assert!(
        !page.body.to_string().to_lowercase().contains("<html"),
        "{}",
        page.body
    );

    // No suggestions either (they would reveal field names).
    let a = query(&app, "{ plans { slugg } }").await;
    assert!(a.body.get("errors").is_some(), "{}", a.body);
    assert!(
        !a.message().contains("did you mean"),
        "suggestions leak the schema: {}",
        a.body
    );

    // Ordinary queries still work.
    let a = query(&app, "{ plans { slug } }").await;
    assert!(a.body.get("errors").is_none(), "{}", a.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn production_refuses_introspection_with_a_coded_error() {
    let app = TestApp::spawn_with(|env| {
        env.insert("APP_ENV".into(), "production".into());
    })
    .await;
    for q in [
        "{ __schema { queryType { name } } }",
        "{ __type(name: \"Tenant\") { name } }",
    ] {
        let a = query(&app, q).await;
        assert_coded(&a, q);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_graphql_error_carries_the_request_id() {
    let app = TestApp::spawn().await;
    let t = app.tenant().create().await;

    let ghost = app.token(
        tenantry::auth::Role::TenantAdmin,
        Some(uuid::Uuid::new_v4()),
    );
    let body = |v: Value| v.to_string();
    let missing_var = json!({
        "query": "query($s: String!) { plan(slug: $s) { slug } }",
        "variables": {},
    });
    let eleven = Value::Array(vec![json!({ "query": "{ plans { slug } }" }); 11]);
    let huge = format!("#{}\n{{ plans {{ slug }} }}", "q".repeat(40 * 1024));
    let cases: Vec<(&str, reqwest::RequestBuilder)> = vec![
        (
            "unauthenticated",
            post(&app).body(json!({ "query": "{ me { role } }" }).to_string()),
        ),
        (
            "bad token",
            post(&app)
                .bearer_auth("garbage")
                .body(json!({ "query": "{ me { role } }" }).to_string()),
        ),
        (
            "forbidden",
            post(&app)
                .bearer_auth(&t.member)
                .body(json!({ "query": "{ tenants { totalCount } }" }).to_string()),
        ),
        (
            "validation",
            post(&app).body(json!({ "query": "{ nope }" }).to_string()),
        ),
        (
            "syntax",
            post(&app).body(json!({ "query": "{ plans { " }).to_string()),
        ),
        ("bad variable", post(&app).body(body(missing_var))),
        (
            "aliases",
            post(&app).body(json!({ "query": aliases(31) }).to_string()),
        ),
        (
            "depth",
            post(&app).body(json!({ "query": introspection_query(20) }).to_string()),
        ),
        ("batch", post(&app).body(body(eleven))),
        (
            "query size",
            post(&app).body(body(json!({ "query": huge }))),
        ),
        (
            "not found",
            post(&app)
                .bearer_auth(&ghost)
                .body(json!({ "query": "{ me { role } }" }).to_string()),
        ),
    ];
    let mut seen = std::collections::HashSet::new();
    for (why, req) in cases {
        let a = send(req).await;
        let rid = a
            .request_id()
            .unwrap_or_else(|| panic!("{why}: no x-request-id"));
        assert!(!rid.is_empty() && rid != "-", "{why}: {rid:?}");
        assert!(
            seen.insert(rid.to_owned()),
            "{why}: request id reused: {rid}"
        );
        let errors = a.body["errors"]
            .as_array()
            .unwrap_or_else(|| panic!("{why}: no errors: {}", a.body));
        for e in errors {
            assert_eq!(
                e["extensions"]["requestId"].as_str(),
                Some(rid),
                "{why}: {}",
                a.body
            );
            assert!(e["extensions"]["code"].is_string(), "{why}: {}", a.body);
        }
    }

    // A request id sent by the client is kept, echoed and put on the errors.
    let a = send(
        post(&app)
            .header("x-request-id", "client-chosen-42")
            .body(json!({ "query": "{ me { role } }" }).to_string()),
    )
    .await;
    assert_eq!(a.request_id(), Some("client-chosen-42"));
    assert_eq!(
        a.body["errors"][0]["extensions"]["requestId"],
        "client-chosen-42"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_are_4xx() {
    let app = TestApp::spawn().await;
    for body in [
        "{\"query\": ",
        "not json at all",
        "",
        "[]",
        "42",
        "{\"variables\": {}}",
        "{\"query\": 42}",
    ] {
        let a = post_body(&app, body).await;
        assert!(
            (400..500).contains(&a.status) || a.code().is_some(),
            "{body:?}: HTTP {} {}",
            a.status,
            a.body
        );
    }
    // Unreadable bodies: 400 with a coded GraphQL error, never the parser's debug text.
    for body in ["{\"query\": ", "not json at all"] {
        let a = post_body(&app, body).await;
        assert_eq!(a.status, 400, "{body:?}: {}", a.body);
        assert_eq!(a.code(), Some("BAD_USER_INPUT"), "{body:?}: {}", a.body);
        assert!(
            !a.body.to_string().contains("InvalidRequest("),
            "{}",
            a.body
        );
    }
    // Wrong content type.
    let a = send(
        app.client
            .post(format!("{}/graphql", app.base))
            .header("content-type", "text/plain")
            .body("{ plans { slug } }"),
    )
    .await;
    assert!(
        (400..500).contains(&a.status) || a.code().is_some(),
        "text/plain: HTTP {} {}",
        a.status,
        a.body
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_queries_work() {
    let app = TestApp::spawn().await;
    let a = send(
        app.client
            .get(format!("{}/graphql", app.base))
            .query(&[("query", "{plans{slug}}")]),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let plans = a.body["data"]["plans"].as_array().expect("plans");
    assert!(plans.iter().any(|p| p["slug"] == "free"), "{}", a.body);

    // With variables and an operation name.
    let a = send(app.client.get(format!("{}/graphql", app.base)).query(&[
        ("query", "query P($s: String!) { plan(slug: $s) { slug } }"),
        ("variables", "{\"s\":\"starter\"}"),
        ("operationName", "P"),
    ]))
    .await;
    assert_eq!(a.body["data"]["plan"]["slug"], "starter", "{}", a.body);

    // An authenticated GET sees the caller.
    let t = app.tenant().create().await;
    let a = send(
        app.client
            .get(format!("{}/graphql", app.base))
            .bearer_auth(&t.admin)
            .query(&[("query", "{ me { role } }")]),
    )
    .await;
    assert_eq!(a.body["data"]["me"]["role"], "TENANT_ADMIN", "{}", a.body);
}
