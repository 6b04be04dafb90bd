//! Cost-based limits (issue 13): every answer carries `extensions.cost`; a tenant's bucket is
//! charged the requested cost, given back what was not returned, refuses with `RATE_LIMITED`
//! and `retryAfter` when empty and refills at its restore rate; instances share it through
//! Redis; `Tenant.apiUsage` shows it.

use std::time::Duration;

use serde_json::{json, Value};

use crate::common::ws;
use crate::common::{get_query, sha256_hex, TestApp};

/// `{ me { role } tenant { slug name } }`: five fields, no list, so it returns what it asks.
const FIVE: &str = "{ me { role } tenant { slug name } }";

/// Rate limits on, the free plan's bucket `shape` (`COST_LIMIT_FREE`), a wide request window.
async fn limited(shape: &str, redis: bool) -> TestApp {
    let shape = shape.to_owned();
    TestApp::spawn_with(move |env| {
        env.insert("RATE_LIMITS_ENABLED".into(), "true".into());
        env.insert("RATE_LIMIT_FREE".into(), "1000".into());
        env.insert("COST_LIMIT_FREE".into(), shape);
        if !redis {
            env.remove("REDIS_URL");
        }
    })
    .await
}

fn cost(body: &Value) -> &Value {
    &body["extensions"]["cost"]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answer_carries_its_cost_on_every_way_in() {
    let app = limited("1000/10", true).await;
    let t = app.tenant().plan("free").create().await;
    let check = |way: &str, body: &Value| {
        let c = cost(body);
        assert_eq!(c["requestedQueryCost"], 5, "{way}: {body}");
        assert_eq!(c["actualQueryCost"], 5, "{way}: {body}");
        let status = &c["throttleStatus"];
        assert_eq!(status["maximumAvailable"], 1000, "{way}: {body}");
        assert_eq!(status["restoreRate"], 10.0, "{way}: {body}");
        let now = status["currentlyAvailable"].as_u64().unwrap();
        assert!((900..=995).contains(&now), "{way}: {body}");
    };
    let resp = app.gql(Some(&t.member), FIVE, json!({})).await;
    resp.ok();
    check("POST", &resp.body);
    let batch = json!([{ "query": FIVE }, { "query": FIVE }]);
    let resp = app
        .post_json("/graphql", Some(&t.member), &[], &batch)
        .await;
    check("batch 0", &resp.body[0]);
    check("batch 1", &resp.body[1]);
    check("GET", &get_query(&app, &t.member, FIVE).await.body);
    let apq = json!({ "query": FIVE, "extensions": { "persistedQuery": { "version": 1, "sha256Hash": sha256_hex(FIVE) } } });
    check(
        "APQ",
        &app.post_json("/graphql", Some(&t.member), &[], &apq)
            .await
            .body,
    );
    let mut sock = ws::open(&app, &t.member).await;
    check(
        "WebSocket",
        &ws::execute(&mut sock, "c", FIVE, json!({})).await,
    );

    // Platform admins are not limited by a plan: the cost, and no bucket.
    let resp = app.gql(Some(&app.admin_token()), FIVE, json!({})).await;
    assert_eq!(cost(&resp.body)["requestedQueryCost"], 5, "{}", resp.body);
    assert!(
        cost(&resp.body)["throttleStatus"].is_null(),
        "{}",
        resp.body
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_a_list_did_not_return_is_given_back() {
    let app = limited("1000/0.001", true).await;
    let t = app.tenant().plan("free").create().await;
    let page = "{ tenant { invoices(first: 50) { edges { node { id status } } } } }";
    let resp = app.gql(Some(&t.admin), page, json!({})).await;
    resp.ok();
    let c = cost(&resp.body);
    // tenant + invoices + 50 × (edges + node + id + status) + 1 for the connection itself.
    let requested = c["requestedQueryCost"].as_u64().unwrap();
    assert!(requested >= 200, "{c}");
    // A new tenant has no invoices: tenant, invoices, edges (empty).
    assert_eq!(c["actualQueryCost"], 3, "{c}");
    assert_eq!(c["throttleStatus"]["currentlyAvailable"], 997, "{c}");

    let usage = app
        .gql(
            Some(&t.admin),
            "{ tenant { apiUsage { requestsPerMinute costConsumedToday throttleStatus { maximumAvailable currentlyAvailable restoreRate } } } }",
            json!({}),
        )
        .await;
    let u = &usage.ok()["tenant"]["apiUsage"];
    assert_eq!(u["requestsPerMinute"], 1000, "{u}");
    // 3 returned by the page, and the look itself (tenant + apiUsage + 2 + throttleStatus + 3),
    // charged before it looked.
    let consumed = u["costConsumedToday"].as_i64().unwrap();
    assert_eq!(consumed, 3 + 8, "{u}");
    assert_eq!(u["throttleStatus"]["maximumAvailable"], 1000, "{u}");
    let now = u["throttleStatus"]["currentlyAvailable"].as_i64().unwrap();
    assert_eq!(now, 1000 - consumed, "{u}");

    // Another tenant's bucket is untouched.
    let other = app.tenant().plan("free").create().await;
    let resp = app.gql(Some(&other.member), FIVE, json!({})).await;
    assert_eq!(
        cost(&resp.body)["throttleStatus"]["currentlyAvailable"],
        995
    );
}

/// Drains a bucket of 10 points refilled at 1 a second with operations of 5 (the third is
/// refused if it comes within 5 s of the first), then waits as told and is admitted again.
async fn exhaust_then_recover(first: &TestApp, second: &TestApp) {
    let t = first.tenant().plan("free").create().await;
    for app in [first, second] {
        let resp = app.gql(Some(&t.member), FIVE, json!({})).await;
        resp.ok();
    }
    // The second instance charged the same bucket: empty now (less what refilled meanwhile).
    let resp = first.gql(Some(&t.member), FIVE, json!({})).await;
    assert_eq!(resp.status, 429, "{}", resp.body);
    let err = resp.err("RATE_LIMITED");
    let retry = err["extensions"]["retryAfter"].as_u64().unwrap();
    assert!((1..=5).contains(&retry), "{err}");
    assert_eq!(resp.header("retry-after"), Some(retry.to_string().as_str()));
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .starts_with("query costs 5 "),
        "{err}"
    );
    let c = cost(&resp.body);
    assert!(c["actualQueryCost"].is_null(), "not run: {c}");
    assert!(c["throttleStatus"]["currentlyAvailable"].as_u64().unwrap() < 5);
    assert_eq!(c["throttleStatus"]["restoreRate"], 1.0);
    assert!(resp.body["data"].is_null(), "{}", resp.body);

    tokio::time::sleep(Duration::from_secs(retry)).await;
    let resp = second.gql(Some(&t.member), FIVE, json!({})).await;
    resp.ok();
    // Another tenant was never refused.
    let other = first.tenant().plan("free").create().await;
    first.gql(Some(&other.member), FIVE, json!({})).await.ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_free_bucket_shared_by_two_instances_refuses_when_empty_and_refills() {
    let a = limited("10/1", true).await;
    let b = a.second_instance().await;
    exhaust_then_recover(&a, &b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_redis_the_bucket_is_in_process() {
    let app = limited("10/1", false).await;
    exhaust_then_recover(&app, &app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_bigger_than_the_bucket_is_refused_at_once_and_charges_nothing() {
    let app = limited("100/0.001", true).await;
    let t = app.tenant().plan("free").create().await;
    let page = "{ tenant { invoices(first: 50) { edges { node { id status } } } } }";
    let resp = app.gql(Some(&t.admin), page, json!({})).await;
    let err = resp.err("BAD_USER_INPUT");
    let msg = err["message"].as_str().unwrap();
    assert!(
        msg.contains("bucket holds at most 100 points"),
        "waiting cannot help, and the message says so: {msg}"
    );
    let resp = app.gql(Some(&t.member), FIVE, json!({})).await;
    assert_eq!(cost(&resp.body)["throttleStatus"]["currentlyAvailable"], 95);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn introspection_alone_costs_nothing() {
    let app = limited("10/0.001", true).await;
    let t = app.tenant().plan("free").create().await;
    let q = "{ __schema { types { name fields { name type { name ofType { name } } } } } }";
    let resp = app.gql(Some(&t.member), q, json!({})).await;
    resp.ok();
    assert_eq!(cost(&resp.body)["requestedQueryCost"], 0, "{}", resp.body);
    let resp = app.gql(Some(&t.member), FIVE, json!({})).await;
    assert_eq!(cost(&resp.body)["throttleStatus"]["currentlyAvailable"], 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_is_refused_per_operation_and_is_a_429_only_when_all_are() {
    let app = limited("10/0.001", true).await;
    let t = app.tenant().plan("free").create().await;
    let three = json!([{ "query": FIVE }, { "query": FIVE }, { "query": FIVE }]);
    let resp = app
        .post_json("/graphql", Some(&t.member), &[], &three)
        .await;
    assert_eq!(resp.status, 200, "two of three ran: {}", resp.body);
    // The operations of a batch run concurrently: any one of them may be the one refused.
    let answers = resp.body.as_array().unwrap();
    let (ran, refused): (Vec<_>, Vec<_>) = answers.iter().partition(|a| a["errors"].is_null());
    assert_eq!((ran.len(), refused.len()), (2, 1), "{}", resp.body);
    assert_eq!(
        refused[0]["errors"][0]["extensions"]["code"],
        "RATE_LIMITED"
    );
    assert!(cost(refused[0])["actualQueryCost"].is_null());
    assert!(ran.iter().all(|a| cost(a)["actualQueryCost"] == 5));
    let resp = app
        .post_json("/graphql", Some(&t.member), &[], &three)
        .await;
    assert_eq!(resp.status, 429, "none ran: {}", resp.body);
    assert!(resp.header("retry-after").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_after_measuring_carry_the_cost_too() {
    let app = limited("1000/10", true).await;
    let t = app.tenant().plan("free").create().await;
    // Over the complexity cap: measured, refused, not run, nothing charged.
    let list = "invoices(first: 100) { edges { node { id status stripeInvoiceId amountDue \
                amountPaid currency periodStart periodEnd hostedInvoiceUrl createdAt } } }";
    let page = format!("{{ tenant {{ a: {list} b: {list} }} }}");
    let page = page.as_str();
    let resp = app.gql(Some(&t.admin), page, json!({})).await;
    let err = resp.err("BAD_USER_INPUT");
    assert!(
        err["message"].as_str().unwrap().contains("at most 2000"),
        "{err}"
    );
    let c = cost(&resp.body);
    assert!(c["requestedQueryCost"].as_u64().unwrap() > 2000, "{c}");
    assert!(c["actualQueryCost"].is_null(), "{c}");
    let resp = app.gql(Some(&t.member), FIVE, json!({})).await;
    assert_eq!(
        cost(&resp.body)["throttleStatus"]["currentlyAvailable"],
        995
    );
}
