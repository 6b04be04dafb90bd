//! Nested fields are batched: the SQL statements of a request follow the query's shape, not
//! the number of rows (SPEC §6). Counted by the server (diesel instrumentation) and reported
//! in the `x-sql-statements` response header.

use crate::common::TestApp;
use serde_json::json;

const NESTED: &str = "query($n: Int, $search: String) {
  tenants(first: $n, filter: { search: $search }) { totalCount edges { node {
    slug plan { slug features prices { amount } quotas { resource } }
    quotas { resource limit } features { key enabled } configs { key value } } } } }";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statements_do_not_grow_with_the_number_of_tenants() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token();
    let plans = ["free", "starter", "professional", "enterprise"];
    for i in 0..2 {
        app.tenant()
            .slug(&format!("small-{i}"))
            .plan(plans[i % 4])
            .create()
            .await;
    }
    for i in 0..50 {
        app.tenant()
            .slug(&format!("big-{i}"))
            .plan(plans[i % 4])
            .create()
            .await;
    }
    // Both sets are read for the first time (cold caches), so both pay full price.
    let statements = |n: i64, search: &'static str| {
        let (app, admin) = (&app, &admin);
        async move {
            let resp = app
                .gql(Some(admin), NESTED, json!({ "n": n, "search": search }))
                .await;
            let edges = resp.ok()["tenants"]["edges"].as_array().unwrap().len() as i64;
            assert_eq!(edges, n);
            resp.header("x-sql-statements")
                .unwrap()
                .parse::<u64>()
                .unwrap()
        }
    };
    let for_2 = statements(2, "small-").await;
    let for_50 = statements(50, "big-").await;
    assert_eq!(
        for_50, for_2,
        "50 tenants cost {for_50} statements, 2 cost {for_2}"
    );
    // Each batch is one transaction: BEGIN, scope, its queries, COMMIT.
    assert!(for_50 <= 48, "{for_50} statements");

    // Warm caches: features and configuration are served from memory.
    let warm = statements(50, "big-").await;
    assert!(warm < for_50, "warm {warm} vs cold {for_50}");

    // Pending domain claims are one batch for the page too: the same count for 2 tenants as
    // for 50 (one per tenant would be 4 × 50 with each one's transaction).
    let pending = |search: &'static str| {
        let (app, admin) = (&app, &admin);
        async move {
            let resp = app
                .gql(
                    Some(admin),
                    "query($s: String) { tenants(first: 50, filter: { search: $s }) { edges { node { slug pendingDomain { domain } } } } }",
                    json!({ "s": search }),
                )
                .await;
            resp.ok();
            resp.header("x-sql-statements")
                .unwrap()
                .parse::<u64>()
                .unwrap()
        }
    };
    assert_eq!(pending("big-").await, pending("small-").await);
}
