//! A new deployment: `tenantry serve` on an empty database migrates, installs the default
//! catalogue (once, whatever the number of starts) and takes tenants with no other command.

use std::time::Duration;

use crate::common::{count, settings_from, test_env, ServerProcess, TestDb};
use serde_json::json;
use tenantry::auth::{jwt, Role};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_on_an_empty_database_takes_tenants_at_once() {
    let db = TestDb::empty().await;
    let env = test_env(&db);
    let admin = jwt::issue(
        &settings_from(&env),
        Role::PlatformAdmin,
        None,
        "operator",
        Duration::from_secs(600),
    )
    .unwrap();
    let create = "mutation($input: CreateTenantInput!) { createTenant(input: $input) { slug plan { slug } quotas { resource limit } } }";

    let server = ServerProcess::start(&env).await;
    let resp = server
        .gql(
            &admin,
            create,
            json!({ "input": { "name": "First", "slug": "first", "planSlug": "starter" } }),
        )
        .await;
    let t = &resp.ok()["createTenant"];
    assert_eq!(t["plan"]["slug"], "starter");
    assert!(
        t["quotas"].as_array().is_some_and(|q| !q.is_empty()),
        "quotas provisioned from the installed plan: {t}"
    );
    let resp = server.gql(&admin, "{ plans { slug } }", json!({})).await;
    let slugs: Vec<&str> = resp.ok()["plans"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["slug"].as_str())
        .collect();
    assert_eq!(slugs, ["free", "starter", "professional", "enterprise"]);
    drop(server);

    // A second start (and a second instance) installs nothing more.
    let a = ServerProcess::start(&env).await;
    let b = ServerProcess::start(&env).await;
    let mut c = db.superuser().await;
    assert_eq!(count(&mut c, "select count(*) as n from plans").await, 4);
    let prices = count(&mut c, "select count(*) as n from plan_prices").await;
    let resp = b
        .gql(
            &admin,
            create,
            json!({ "input": { "name": "Second", "slug": "second", "planSlug": "free" } }),
        )
        .await;
    assert_eq!(resp.ok()["createTenant"]["plan"]["slug"], "free");
    drop((a, b));
    let a = ServerProcess::start(&env).await;
    assert_eq!(
        count(&mut c, "select count(*) as n from plan_prices").await,
        prices
    );
    drop(a);
}
