//! Two server instances on one PostgreSQL and Redis: a change made through one is seen by the
//! other at once, although the other had the old state cached.

mod common;

use std::time::{Duration, Instant};

use common::TestApp;
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

    a.gql(
        Some(&a.admin_token()),
        "mutation($id: ID!) { suspendTenant(id: $id, reason: \"r\") { id } }",
        json!({ "id": id }),
    )
    .await
    .ok();

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
    a.gql(
        Some(&a.admin_token()),
        "mutation($id: ID!) { deleteTenant(id: $id) { id } }",
        json!({ "id": id }),
    )
    .await
    .ok();
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
