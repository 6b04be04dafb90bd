//! Nested fields are batched: the SQL statements of a request follow the query's shape, not
//! the number of rows (SPEC §6). Counted by the server (diesel instrumentation) and reported
//! in the `x-sql-statements` response header.

mod common;

use common::TestApp;
use serde_json::json;

const NESTED: &str = "query($n: Int) { tenants(first: $n) { totalCount edges { node {
    slug plan { slug features prices { amount } } quotas { resource limit } features { key enabled } } } } }";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statements_do_not_grow_with_the_number_of_tenants() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token();
    let plans = ["free", "starter", "professional", "enterprise"];
    for i in 0..50 {
        app.tenant().plan(plans[i % 4]).create().await;
    }
    let statements = |n: i64| {
        let (app, admin) = (&app, &admin);
        async move {
            let resp = app.gql(Some(admin), NESTED, json!({ "n": n })).await;
            let edges = resp.ok()["tenants"]["edges"].as_array().unwrap().len() as i64;
            assert_eq!(edges, n);
            resp.header("x-sql-statements")
                .unwrap()
                .parse::<u64>()
                .unwrap()
        }
    };
    let for_50 = statements(50).await;
    let for_2 = statements(2).await;
    assert_eq!(
        for_50, for_2,
        "50 tenants cost {for_50} statements, 2 cost {for_2}"
    );
    // list + count + plan + plan features + plan prices + quotas + features (3 queries):
    // each a transaction of BEGIN, scope, query..., COMMIT.
    assert!(for_50 <= 40, "{for_50} statements");
}
