//! One admission path for every way in: the per-plan rate limit is charged per operation and
//! per mutation root field on POST, batches, GET, APQ and the WebSocket alike; the socket has
//! its own caps (init timeout, message size, operations per socket, sockets per tenant); NUL
//! bytes are bad input everywhere; metrics labels come from a closed set.

use crate::common;

use std::time::Duration;

use crate::common::ws::{self, next_json};
use crate::common::{count, get_query, sha256_hex, TestApp, TestTenant};
use futures_util::SinkExt;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

const ME: &str = "{ me { role } }";

async fn limited() -> TestApp {
    TestApp::spawn_with(|env| {
        env.insert("RATE_LIMITS_ENABLED".into(), "true".into());
        env.insert("SERVICE_TOKEN".into(), "svc-token-for-tests".into());
    })
    .await
}

/// `n` aliased `recordUsage` calls in one mutation.
fn record_many(n: usize) -> String {
    let fields: Vec<String> = (0..n)
        .map(|i| format!("r{i}: recordUsage(resource: \"api_calls\", amount: 1) {{ used }}"))
        .collect();
    format!("mutation {{ {} }}", fields.join(" "))
}

async fn used(app: &TestApp, t: &TestTenant, resource: &str) -> i64 {
    let mut db = app.db.superuser().await;
    count(
        &mut db,
        &format!(
            "select coalesce(sum(used), 0)::bigint as n from quotas where tenant_id = '{}' and resource = '{resource}'",
            t.id
        ),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_socket_shares_the_plans_rate_limit_with_http() {
    let app = limited().await;
    let t = app.tenant().plan("free").create().await;
    let mut sock = ws::open(&app, &t.admin).await;
    for i in 0..10 {
        let answer = ws::execute(&mut sock, &i.to_string(), ME, json!({})).await;
        assert_eq!(answer["data"]["me"]["role"], "TENANT_ADMIN", "{answer}");
    }
    let answer = ws::execute(&mut sock, "10", ME, json!({})).await;
    assert_eq!(
        answer["errors"][0]["extensions"]["code"], "RATE_LIMITED",
        "{answer}"
    );
    assert!(answer["errors"][0]["extensions"]["retryAfter"].as_u64() > Some(0));
    // Mutations on the socket are charged too, and refused without effect.
    let answer = ws::execute(&mut sock, "11", &record_many(1), json!({})).await;
    assert_eq!(answer["errors"][0]["extensions"]["code"], "RATE_LIMITED");
    assert_eq!(used(&app, &t, "api_calls").await, 0);
    // The same window on HTTP.
    let resp = app.gql(Some(&t.member), ME, json!({})).await;
    assert_eq!(resp.status, 429);
    resp.err("RATE_LIMITED");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mutation_costs_one_unit_per_root_field_and_batches_per_operation() {
    let app = limited().await;
    let t = app.tenant().plan("free").create().await;

    // Eleven root fields on a plan of ten a minute: refused whole, nothing recorded.
    let resp = app.gql(Some(&t.admin), &record_many(11), json!({})).await;
    assert_eq!(resp.status, 429, "{}", resp.body);
    resp.err("RATE_LIMITED");
    assert_eq!(used(&app, &t, "api_calls").await, 0);

    // Five root fields cost five.
    let resp = app.gql(Some(&t.admin), &record_many(5), json!({})).await;
    resp.ok();
    assert_eq!(resp.header("x-ratelimit-remaining"), Some("5"));
    assert_eq!(used(&app, &t, "api_calls").await, 5);

    // A batch of ten operations: five fit, five are refused; the request itself is answered.
    let batch: Vec<Value> = (0..10).map(|_| json!({ "query": ME })).collect();
    let resp = app
        .post_json("/graphql", Some(&t.member), &[], &json!(batch))
        .await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    let answers = resp.body.as_array().expect("a batch answer");
    let refused = answers
        .iter()
        .filter(|a| a["errors"][0]["extensions"]["code"] == "RATE_LIMITED")
        .count();
    let ok = answers.iter().filter(|a| a.get("errors").is_none()).count();
    assert_eq!((ok, refused), (5, 5), "{}", resp.body);
    assert_eq!(resp.header("x-ratelimit-remaining"), Some("0"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_and_persisted_queries_are_charged_and_get_cannot_mutate() {
    let app = limited().await;
    let t = app.tenant().plan("free").create().await;

    let resp = get_query(&app, &t.admin, &record_many(1)).await;
    resp.err("BAD_USER_INPUT");
    assert!(resp.body["errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("POST"));
    assert_eq!(used(&app, &t, "api_calls").await, 0);

    // APQ: register the query once, then send only its hash.
    let hash = sha256_hex(ME);
    let apq = json!({ "persistedQuery": { "version": 1, "sha256Hash": hash } });
    let resp = app
        .post_json(
            "/graphql",
            Some(&t.admin),
            &[],
            &json!({ "query": ME, "extensions": apq }),
        )
        .await;
    resp.ok();
    // Used so far: the registration (the refused GET mutation was charged nothing).
    for _ in 0..9 {
        let resp = app
            .post_json(
                "/graphql",
                Some(&t.admin),
                &[],
                &json!({ "extensions": apq }),
            )
            .await;
        assert_eq!(resp.ok()["me"]["role"], "TENANT_ADMIN");
    }
    let resp = app
        .post_json(
            "/graphql",
            Some(&t.admin),
            &[],
            &json!({ "extensions": apq }),
        )
        .await;
    assert_eq!(resp.status, 429, "{}", resp.body);
    resp.err("RATE_LIMITED");
    let resp = get_query(&app, &t.admin, ME).await;
    assert_eq!(resp.status, 429, "{}", resp.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_socket_caps_operations_sockets_messages_and_idle_handshakes() {
    let app = TestApp::spawn_with(|env| {
        env.insert("WS_MAX_OPERATIONS".into(), "2".into());
        env.insert("WS_MAX_SOCKETS_PER_TENANT".into(), "2".into());
        env.insert("WS_INIT_TIMEOUT_SECS".into(), "1".into());
    })
    .await;
    let t = app.tenant().plan("professional").create().await;
    let sub = |id: &str| json!({ "id": id, "type": "subscribe", "payload": { "query": "subscription { quotaAlerts { threshold } }" } });

    // Two operations at once, then a third is refused for its id only.
    let mut a = ws::open(&app, &t.admin).await;
    ws::send(&mut a, sub("s1")).await;
    ws::send(&mut a, sub("s2")).await;
    // The third comes as a binary frame: the library reads those too, so the cap does.
    a.send(Message::binary(sub("s3").to_string().into_bytes()))
        .await
        .unwrap();
    let refused = next_json(&mut a).await.expect("a refusal");
    assert_eq!(refused["id"], "s3", "{refused}");
    assert_eq!(
        refused["payload"]["errors"][0]["extensions"]["code"],
        "RATE_LIMITED"
    );
    assert_eq!(next_json(&mut a).await.unwrap()["type"], "complete");
    // A reused id is refused too; completing one frees a place.
    ws::send(&mut a, sub("s1")).await;
    let dup = next_json(&mut a).await.unwrap();
    assert_eq!(
        dup["payload"]["errors"][0]["extensions"]["code"],
        "BAD_USER_INPUT"
    );
    next_json(&mut a).await.unwrap();
    ws::send(&mut a, json!({ "id": "s1", "type": "complete" })).await;
    assert_eq!(next_json(&mut a).await.unwrap()["id"], "s1");
    let answer = ws::execute(&mut a, "q1", ME, json!({})).await;
    assert_eq!(answer["data"]["me"]["role"], "TENANT_ADMIN", "{answer}");

    // Two sockets per tenant: the third handshake is refused with 4429.
    let _b = ws::open(&app, &t.member).await;
    let mut c = ws::connect(&app, "graphql-transport-ws").await;
    ws::send(
        &mut c,
        json!({ "type": "connection_init", "payload": { "Authorization": format!("Bearer {}", t.member) } }),
    )
    .await;
    assert_eq!(next_json(&mut c).await.unwrap()["closed"], 4429);
    // Another tenant is not affected; a closed socket frees its place.
    let other = app.tenant().plan("free").create().await;
    let _d = ws::open(&app, &other.admin).await;
    drop(a);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _e = ws::open(&app, &t.member).await;

    // A socket that never initialises is closed with 4408.
    let mut idle = ws::connect(&app, "graphql-transport-ws").await;
    let started = std::time::Instant::now();
    assert_eq!(next_json(&mut idle).await.unwrap()["closed"], 4408);
    assert!(started.elapsed() < Duration::from_secs(4));

    // A message over the body limit closes the socket; a query over the query limit is
    // refused like on HTTP.
    let mut big = ws::open(&app, &other.member).await;
    let long = format!("{{ me {{ role }} }} #{}", "x".repeat(40 * 1024));
    let answer = ws::execute(&mut big, "long", &long, json!({})).await;
    assert_eq!(
        answer["errors"][0]["extensions"]["code"], "BAD_USER_INPUT",
        "{answer}"
    );
    let huge = "x".repeat(300 * 1024);
    let _ = big.send(Message::text(huge)).await;
    let closed = next_json(&mut big).await;
    assert!(
        closed.as_ref().is_none_or(|m| m.get("closed").is_some()),
        "{closed:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nul_bytes_are_bad_input_on_every_way_in() {
    let app = limited().await;
    let t = app.tenant().plan("professional").create().await;

    let resp = app
        .gql(
            Some(&t.admin),
            r#"{ plan(slug: "a\u0000b") { slug } }"#,
            json!({}),
        )
        .await;
    resp.err("BAD_USER_INPUT");
    let resp = app
        .gql(
            Some(&t.admin),
            "mutation($k: String) { recordUsage(resource: \"api_calls\", amount: 1, idempotencyKey: $k) { used } }",
            json!({ "k": "a\u{0}b" }),
        )
        .await;
    resp.err("BAD_USER_INPUT");
    let mut sock = ws::open(&app, &t.admin).await;
    let answer = ws::execute(
        &mut sock,
        "1",
        r#"{ plan(slug: "a\u0000b") { slug } }"#,
        json!({}),
    )
    .await;
    assert_eq!(answer["errors"][0]["extensions"]["code"], "BAD_USER_INPUT");

    // The internal REST API: the database refuses NUL, the client sees its own mistake.
    let resp = app
        .post_json(
            &format!("/internal/tenants/{}/usage", t.id),
            None,
            &[("x-service-token", "svc-token-for-tests")],
            &json!({ "resource": "api_calls", "amount": 1, "idempotencyKey": "k\u{0}" }),
        )
        .await;
    assert_eq!(resp.status, 400, "{}", resp.body);
    assert_eq!(resp.body["error"]["code"], "BAD_USER_INPUT");
    assert_eq!(used(&app, &t, "api_calls").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aliases_are_counted_once_per_fragment_spread() {
    let app = TestApp::spawn().await;
    let fields: Vec<String> = (0..11).map(|i| format!("a{i}: slug")).collect();
    let query = format!(
        "{{ plans {{ ...F }} more: plans {{ ...F }} again: plans {{ ...F }} }} fragment F on Plan {{ {} }}",
        fields.join(" ")
    );
    let resp = app.gql(None, &query, json!({})).await;
    resp.err("BAD_USER_INPUT");
    assert!(resp.body["errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("aliases"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_callers_cannot_grow_the_metrics() {
    // Reads counters every test of a process adds to.
    if !common::in_own_process("admission::anonymous_callers_cannot_grow_the_metrics") {
        return;
    }
    let app = TestApp::spawn().await;
    let lines = || async {
        let (status, body) = app.get("/metrics").await;
        assert_eq!(status, 200);
        body.lines().filter(|l| !l.starts_with('#')).count()
    };
    // Warm up every series a plain request creates.
    for method in ["GET", "POST"] {
        let _ = app
            .client
            .request(method.parse().unwrap(), format!("{}/graphql", app.base))
            .json(&json!({ "query": "query Warm { plans { slug } }" }))
            .send()
            .await;
    }
    let before = lines().await;
    for i in 0..200 {
        let name = format!("Op{}x{i}", uuid::Uuid::new_v4().simple());
        let query = format!("query {name} {{ plans {{ slug }} }}");
        app.post_json(
            "/graphql",
            None,
            &[],
            &json!({ "query": query, "operationName": name }),
        )
        .await
        .ok();
        let method = format!("M{i}");
        let _ = app
            .client
            .request(
                reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
                format!("{}/graphql", app.base),
            )
            .send()
            .await;
    }
    let after = lines().await;
    assert!(
        after <= before + 40,
        "{before} metric lines grew to {after} after 400 requests with fresh names"
    );
    let (_, body) = app.get("/metrics").await;
    assert!(body.contains("operation=\"query.plans\""), "{body}");
    assert!(!body.contains("x199"), "client names never become labels");
}

/// graphql-js's `getIntrospectionQuery()`, printed by the stock `graphql` package.
fn standard_introspection_query() -> String {
    let out = std::process::Command::new("node")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/node/introspection.mjs"
        ))
        .output()
        .expect("node is installed (scripts/test.sh installs tests/node)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_standard_introspection_query_answers_on_every_way_in() {
    let app = TestApp::spawn().await;
    let t = app.tenant().plan("free").create().await;
    let query = standard_introspection_query();
    let resp = app.gql(Some(&t.member), &query, json!({})).await;
    let schema = &resp.ok()["__schema"];
    assert!(schema["types"].as_array().unwrap().len() > 20);
    let mut sock = ws::open(&app, &t.member).await;
    let answer = ws::execute(&mut sock, "i", &query, json!({})).await;
    assert!(answer.get("errors").is_none(), "{answer}");
    // Deeper `ofType` chains than any real type needs are still refused.
    let mut chain = String::from("name");
    for _ in 0..14 {
        chain = format!("ofType {{ {chain} }}");
    }
    let deep = format!("{{ __schema {{ types {{ fields {{ type {{ {chain} }} }} }} }} }}");
    app.gql(Some(&t.member), &deep, json!({}))
        .await
        .err("BAD_USER_INPUT");
}

/// A query registered on one instance answers its hash alone on another (shared through Redis).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_persisted_query_registered_on_one_instance_answers_on_another() {
    let a = TestApp::spawn().await;
    let b = a.second_instance().await;
    let t = a.tenant().plan("free").create().await;
    let query = "{ me { role } tenant { slug } }";
    let ext = json!({ "persistedQuery": { "version": 1, "sha256Hash": sha256_hex(query) } });
    let hash_only = json!({ "extensions": ext });

    let resp = b
        .post_json("/graphql", Some(&t.member), &[], &hash_only)
        .await;
    assert_eq!(
        resp.err("BAD_USER_INPUT")["message"],
        "PersistedQueryNotFound"
    );
    let resp = a
        .post_json(
            "/graphql",
            Some(&t.member),
            &[],
            &json!({ "query": query, "extensions": ext }),
        )
        .await;
    assert_eq!(resp.ok()["tenant"]["slug"], t.slug.as_str());
    let resp = b
        .post_json("/graphql", Some(&t.member), &[], &hash_only)
        .await;
    assert_eq!(resp.ok()["me"]["role"], "TENANT_MEMBER", "{}", resp.body);
    assert_eq!(resp.ok()["tenant"]["slug"], t.slug.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persisted_queries_pass_the_same_limits_as_text() {
    let app = TestApp::spawn().await;
    let t = app.tenant().plan("free").create().await;
    let sha = sha256_hex;
    let apq = |hash: &str| json!({ "persistedQuery": { "version": 1, "sha256Hash": hash } });

    // An unknown hash asks the client for the text (Apollo's protocol).
    let resp = app
        .post_json(
            "/graphql",
            Some(&t.member),
            &[],
            &json!({ "extensions": apq(&sha(ME)) }),
        )
        .await;
    assert_eq!(
        resp.err("BAD_USER_INPUT")["message"],
        "PersistedQueryNotFound"
    );

    // A registration over the query size limit is refused and not stored, on the socket too.
    let long = format!("{{ me {{ role }} }} #{}", "x".repeat(40 * 1024));
    let mut sock = ws::open(&app, &t.member).await;
    ws::send(
        &mut sock,
        json!({ "id": "big", "type": "subscribe", "payload": { "query": long, "extensions": apq(&sha(&long)) } }),
    )
    .await;
    let answer = next_json(&mut sock).await.unwrap();
    assert_eq!(
        answer["payload"]["errors"][0]["extensions"]["code"], "BAD_USER_INPUT",
        "{answer}"
    );
    next_json(&mut sock).await.unwrap();
    let resp = app
        .post_json(
            "/graphql",
            Some(&t.member),
            &[],
            &json!({ "extensions": apq(&sha(&long)) }),
        )
        .await;
    assert_eq!(
        resp.err("BAD_USER_INPUT")["message"],
        "PersistedQueryNotFound"
    );

    // A stored query resolves to its text, so the document limits apply to the hash too.
    let deep_fields: Vec<String> = (0..31).map(|i| format!("a{i}: me {{ role }}")).collect();
    let aliased = format!("{{ {} }}", deep_fields.join(" "));
    let resp = app
        .post_json(
            "/graphql",
            Some(&t.member),
            &[],
            &json!({ "query": aliased, "extensions": apq(&sha(&aliased)) }),
        )
        .await;
    resp.err("BAD_USER_INPUT");
    let resp = app
        .post_json(
            "/graphql",
            Some(&t.member),
            &[],
            &json!({ "extensions": apq(&sha(&aliased)) }),
        )
        .await;
    assert!(
        resp.body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("aliases"),
        "{}",
        resp.body
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_export_download_is_charged_like_an_operation() {
    let app = limited().await;
    let t = app.tenant().plan("free").create().await;
    for _ in 0..9 {
        app.gql(Some(&t.admin), ME, json!({})).await.ok();
    }
    let download = || async {
        app.client
            .get(format!("{}/exports/tenants/{}", app.base, t.id))
            .bearer_auth(&t.admin)
            .send()
            .await
            .unwrap()
    };
    let resp = download().await;
    assert_eq!(resp.status(), 200);
    let _ = resp.bytes().await;
    let resp = download().await;
    assert_eq!(resp.status(), 429);
    assert!(resp.headers().contains_key("retry-after"));
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "RATE_LIMITED");
}

/// The complexity limit on every way in (POST, batch, GET, APQ, WebSocket): refused with the
/// query's cost in the message; a tenth of the page runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_costly_query_is_refused_with_its_cost_on_every_way_in() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token();
    let page = |n: u32| {
        format!(
            "{{ tenants(first: {n}) {{ edges {{ node {{ id slug name status region createdAt updatedAt \
             domain ownerId suspendReason plan {{ slug name }} quotas {{ resource limit used unit }} \
             features {{ key enabled }} }} }} }} }}"
        )
    };
    let costly = page(100);
    let check = |way: &str, error: &Value| {
        assert_eq!(
            error["extensions"]["code"], "BAD_USER_INPUT",
            "{way}: {error}"
        );
        let message = error["message"].as_str().unwrap_or_default();
        let cost: usize = message
            .strip_prefix("query costs ")
            .and_then(|m| m.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{way}: no cost in {message:?}"));
        assert!(
            cost > 2000 && message.contains("at most 2000"),
            "{way}: {message}"
        );
    };

    let resp = app.gql(Some(&admin), &costly, json!({})).await;
    assert!(resp.body["data"].is_null(), "{}", resp.body);
    check("POST", &resp.body["errors"][0]);
    let batch = json!([{ "query": costly }, { "query": page(10) }]);
    let resp = app.post_json("/graphql", Some(&admin), &[], &batch).await;
    check("batch", &resp.body[0]["errors"][0]);
    assert!(resp.body[1]["errors"].is_null(), "{}", resp.body);
    let resp = get_query(&app, &admin, &costly).await;
    check("GET", &resp.body["errors"][0]);
    let apq = json!({ "query": costly, "extensions": { "persistedQuery": { "version": 1, "sha256Hash": sha256_hex(&costly) } } });
    let resp = app.post_json("/graphql", Some(&admin), &[], &apq).await;
    check("APQ", &resp.body["errors"][0]);
    let mut sock = ws::open(&app, &admin).await;
    let payload = ws::execute(&mut sock, "c", &costly, json!({})).await;
    check("WebSocket", &payload["errors"][0]);

    app.gql(Some(&admin), &page(10), json!({})).await.ok();
}
