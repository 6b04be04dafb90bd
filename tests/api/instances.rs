//! Two server instances on one PostgreSQL and Redis: a change made through one is seen by the
//! other at once, although the other had the old state cached.

use crate::common;

use std::time::{Duration, Instant};

use crate::common::{within_a_second, TestApp};
use serde_json::json;

const UPDATE: &str =
    "mutation($id: ID!) { updateTenant(id: $id, input: { name: \"x\" }) { name } }";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suspension_through_one_instance_applies_on_the_other_within_a_second() {
    let a = TestApp::spawn().await;
    let b = a.second_instance().await;
    let t = a.tenant().create().await;
    let id = t.id.to_string();

    // Warm B's resolution cache: its view says ACTIVE.
    b.gql(Some(&t.admin), UPDATE, json!({ "id": id }))
        .await
        .ok();
    b.gql(Some(&t.member), "{ me { tenant { status } } }", json!({}))
        .await
        .ok();

    a.suspend_tenant(&id, "r").await.ok();

    let started = Instant::now();
    loop {
        let resp = b.gql(Some(&t.admin), UPDATE, json!({ "id": id })).await;
        if resp.code() == Some("TENANT_SUSPENDED") {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "B still accepts writes: {}",
            resp.body
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Deletion reaches B's cached resolution too: the tenant's users get NOT_FOUND there.
    a.delete_tenant(&id).await.ok();
    let started = Instant::now();
    loop {
        let resp = b.gql(Some(&t.member), "{ me { role } }", json!({})).await;
        if resp.code() == Some("NOT_FOUND") {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "B still serves a deleted tenant: {}",
            resp.body
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feature_and_config_writes_on_one_process_reach_the_other_within_a_second() {
    let setup = TestApp::spawn().await;
    let t = setup.tenant().plan("free").create().await;
    let admin = setup.admin_token();
    let a = common::ServerProcess::start(&setup.env).await;
    let b = common::ServerProcess::start(&setup.env).await;

    let flag = "{ tenant { feature(key: \"advanced_analytics\") { enabled } } }";
    let cfg = "{ tenant { configs(category: \"notifications\") { key value } } }";
    // Warm B's caches with the old state.
    for _ in 0..2 {
        let resp = b.gql(&t.member, flag, json!({})).await;
        assert_eq!(resp.ok()["tenant"]["feature"]["enabled"], false);
        let resp = b.gql(&t.member, cfg, json!({})).await;
        assert!(resp.ok().to_string().contains("\"value\":true"));
    }

    a.gql(
        &admin,
        "mutation($t: ID) { setFeature(tenantId: $t, key: \"advanced_analytics\", enabled: true) { enabled } }",
        json!({ "t": t.id.to_string() }),
    )
    .await
    .ok();
    within_a_second("setFeature", || async {
        let resp = b.gql(&t.member, flag, json!({})).await;
        match resp.body["data"]["tenant"]["feature"]["enabled"].as_bool() {
            Some(true) => Ok(()),
            _ => Err(resp.body.to_string()),
        }
    })
    .await;

    a.gql(
        &t.admin,
        "mutation { setConfig(input: { category: \"notifications\", key: \"email_enabled\", value: false }) { key } }",
        json!({}),
    )
    .await
    .ok();
    within_a_second("setConfig", || async {
        let resp = b.gql(&t.member, cfg, json!({})).await;
        let entries = resp.body["data"]["tenant"]["configs"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        match entries.iter().find(|e| e["key"] == "email_enabled") {
            Some(e) if e["value"] == false => Ok(()),
            _ => Err(resp.body.to_string()),
        }
    })
    .await;
}
