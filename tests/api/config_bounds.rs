//! Per-tenant configuration caps: `CONFIG_MAX_ENTRIES` entries and `CONFIG_MAX_BYTES` of stored
//! values. Past either, setConfig answers BAD_USER_INPUT naming the limit and writes nothing;
//! an update counts its new size once; concurrent writers cannot overshoot.

use std::sync::Arc;

use crate::common::{count, TestApp, TestTenant};
use serde_json::{json, Value};

const SET: &str = "mutation($k: String!, $v: JSON!) {
  setConfig(input: { category: \"app\", key: $k, value: $v }) { key value } }";

async fn stored(app: &TestApp, t: &TestTenant) -> (i64, i64) {
    let mut c = app.db.superuser().await;
    let id = t.id;
    (
        count(
            &mut c,
            &format!("select count(*) as n from configs where tenant_id = '{id}'"),
        )
        .await,
        count(&mut c, &format!("select count(*) as n from audit_logs where tenant_id = '{id}' and entity_type = 'config'")).await,
    )
}

/// 20 writers at once, each with its own key: `(accepted, refusal messages)`.
async fn race(app: &Arc<TestApp>, t: &Arc<TestTenant>, value: Value) -> (usize, Vec<String>) {
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..20 {
        let (app, t, value) = (app.clone(), t.clone(), value.clone());
        tasks.spawn(async move {
            let resp = app
                .gql(
                    Some(&t.admin),
                    SET,
                    json!({ "k": format!("k{i}"), "v": value }),
                )
                .await;
            match resp.code() {
                None => None,
                Some("BAD_USER_INPUT") => Some(
                    resp.body["errors"][0]["message"]
                        .as_str()
                        .unwrap()
                        .to_owned(),
                ),
                other => panic!("unexpected {other:?}: {}", resp.body),
            }
        });
    }
    let (mut ok, mut refused) = (0, Vec::new());
    while let Some(r) = tasks.join_next().await {
        match r.unwrap() {
            None => ok += 1,
            Some(m) => refused.push(m),
        }
    }
    (ok, refused)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_concurrent_writers_store_exactly_config_max_entries() {
    let app = Arc::new(
        TestApp::spawn_with(|env| {
            env.insert("CONFIG_MAX_ENTRIES".into(), "5".into());
        })
        .await,
    );
    let t = Arc::new(app.tenant().plan("starter").create().await);
    let (ok, refused) = race(&app, &t, json!(1)).await;
    assert_eq!((ok, refused.len()), (5, 15));
    assert!(
        refused.iter().all(|m| m.contains("CONFIG_MAX_ENTRIES")),
        "{refused:?}"
    );
    assert_eq!(stored(&app, &t).await, (5, 5));

    // Updating an existing key is not a new entry; a deleted one frees its place.
    let resp = app
        .gql(
            Some(&t.admin),
            "{ tenant { configs(category: \"app\") { key } } }",
            json!({}),
        )
        .await;
    let keys: Vec<String> = resp.ok()["tenant"]["configs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["key"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(keys.len(), 5);
    app.gql(Some(&t.admin), SET, json!({ "k": keys[0], "v": 2 }))
        .await
        .ok();
    app.gql(Some(&t.admin), SET, json!({ "k": "one-more", "v": 2 }))
        .await
        .err("BAD_USER_INPUT");
    app.gql(
        Some(&t.admin),
        "mutation($k: String!) { deleteConfig(category: \"app\", key: $k) }",
        json!({ "k": keys[1] }),
    )
    .await
    .ok();
    app.gql(Some(&t.admin), SET, json!({ "k": "one-more", "v": 2 }))
        .await
        .ok();
    assert_eq!(stored(&app, &t).await.0, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_bytes_stay_within_config_max_bytes() {
    let app = Arc::new(
        TestApp::spawn_with(|env| {
            env.insert("CONFIG_MAX_BYTES".into(), "100".into());
        })
        .await,
    );
    // A 40-character string is stored as 42 bytes of JSON.
    let forty = "x".repeat(40);
    let t = Arc::new(app.tenant().plan("starter").create().await);
    let (ok, refused) = race(&app, &t, json!(forty)).await;
    assert_eq!((ok, refused.len()), (2, 18));
    assert!(
        refused.iter().all(|m| m.contains("CONFIG_MAX_BYTES")),
        "{refused:?}"
    );
    assert_eq!(stored(&app, &t).await, (2, 2));

    let u = app.tenant().plan("starter").create().await;
    let set = |k: &str, v: Value| app.gql(Some(&u.admin), SET, json!({ "k": k, "v": v }));
    set("a", json!(forty)).await.ok();
    set("b", json!(forty)).await.ok();
    let resp = set("c", json!(forty)).await;
    assert!(resp.err("BAD_USER_INPUT")["message"]
        .as_str()
        .unwrap()
        .contains("CONFIG_MAX_BYTES"));
    // An update counts its new size, not both: shrinking `a` makes room for `c`.
    set("a", json!("short")).await.ok();
    set("c", json!(forty)).await.ok();
    // Growing `c` past the cap is refused and leaves its value as it was.
    set("c", json!("y".repeat(60))).await.err("BAD_USER_INPUT");
    let resp = app
        .gql(
            Some(&u.admin),
            "{ tenant { configs(category: \"app\") { key value } } }",
            json!({}),
        )
        .await;
    let c = resp.ok()["tenant"]["configs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["key"] == "c")
        .cloned()
        .unwrap();
    assert_eq!(c["value"], json!(forty));
}
