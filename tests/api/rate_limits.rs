//! Per-plan rate limits on /graphql: headers on allowed requests, 429 + RATE_LIMITED +
//! Retry-After on the 11th request of a minute on `free`, per tenant, in Redis and in-process.

use crate::common::TestApp;
use serde_json::json;

async fn eleven_requests(app: &TestApp) {
    let t = app.tenant().plan("free").create().await;
    for i in 1..=10 {
        let resp = app.gql(Some(&t.member), "{ me { role } }", json!({})).await;
        resp.ok();
        assert_eq!(resp.status, 200);
        assert_eq!(resp.header("x-ratelimit-limit"), Some("10"));
        assert_eq!(
            resp.header("x-ratelimit-remaining"),
            Some((10 - i).to_string().as_str())
        );
        let reset: u64 = resp.header("x-ratelimit-reset").unwrap().parse().unwrap();
        assert!((1..=60).contains(&reset));
    }
    let resp = app.gql(Some(&t.member), "{ me { role } }", json!({})).await;
    assert_eq!(resp.status, 429);
    let err = resp.err("RATE_LIMITED");
    let retry: u64 = resp
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry));
    assert_eq!(err["extensions"]["retryAfter"], retry);
    assert_eq!(resp.header("x-ratelimit-remaining"), Some("0"));

    // Another tenant has its own window; platform admins are not throttled by a plan.
    let other = app.tenant().plan("free").create().await;
    app.gql(Some(&other.member), "{ me { role } }", json!({}))
        .await
        .ok();
    for _ in 0..12 {
        app.gql(Some(&app.admin_token()), "{ plans { slug } }", json!({}))
            .await
            .ok();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_eleventh_request_on_free_is_refused_with_redis() {
    let app = TestApp::spawn_with(|env| {
        env.insert("RATE_LIMITS_ENABLED".into(), "true".into());
    })
    .await;
    eleven_requests(&app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_eleventh_request_on_free_is_refused_without_redis() {
    let app = TestApp::spawn_with(|env| {
        env.insert("RATE_LIMITS_ENABLED".into(), "true".into());
        env.remove("REDIS_URL");
    })
    .await;
    eleven_requests(&app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_are_configurable_and_shared_across_instances() {
    let a = TestApp::spawn_with(|env| {
        env.insert("RATE_LIMITS_ENABLED".into(), "true".into());
        env.insert("RATE_LIMIT_STARTER".into(), "4".into());
    })
    .await;
    let b = a.second_instance().await;
    let t = a.tenant().plan("starter").create().await;
    for app in [&a, &b, &a, &b] {
        app.gql(Some(&t.member), "{ me { role } }", json!({}))
            .await
            .ok();
    }
    b.gql(Some(&t.member), "{ me { role } }", json!({}))
        .await
        .err("RATE_LIMITED");
    a.gql(Some(&t.member), "{ me { role } }", json!({}))
        .await
        .err("RATE_LIMITED");
}
