//! The in-process caches of hot reads (issue 12): each is invalidated on every instance by the
//! write that makes it stale, and only for what that write changed; and the metering batch that
//! spans tenants keeps every tenant's HARD limit and alerts exact.

use std::sync::Arc;

use crate::common::{count, statements, within_a_second, TestApp};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_change_announced_on_one_instance_empties_every_instances_plan_cache() {
    let a = TestApp::spawn().await;
    let b = a.second_instance().await;
    let t = a.tenant().plan("starter").create().await;
    let query = "{ tenant { plan { slug name } } }";
    for _ in 0..2 {
        let resp = b.gql(Some(&t.member), query, json!({})).await;
        assert_eq!(resp.ok()["tenant"]["plan"]["name"], "Starter");
    }
    let mut db = a.db.superuser().await;
    count(
        &mut db,
        "with u as (update plans set name = 'Starter 2027' where slug = 'starter' returning 1) select count(*) as n from u",
    )
    .await;
    // Written behind the service's back: B still answers from its cache...
    let resp = b.gql(Some(&t.member), query, json!({})).await;
    assert_eq!(resp.ok()["tenant"]["plan"]["name"], "Starter");
    // ...until the change is announced (on A).
    a.app.plans_changed().await;
    within_a_second("the renamed plan on B", || async {
        let resp = b.gql(Some(&t.member), query, json!({})).await;
        match resp.body["data"]["tenant"]["plan"]["name"].as_str() {
            Some("Starter 2027") => Ok(()),
            _ => Err(resp.body.to_string()),
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_to_one_tenant_keeps_every_other_tenants_cache_entries_on_every_instance() {
    let a = TestApp::spawn().await;
    let b = a.second_instance().await;
    let x = a.tenant().plan("starter").create().await;
    let y = a.tenant().plan("starter").create().await;
    let query = r#"{ tenant { slug name status plan { slug } features { key enabled }
        configs(category: "notifications") { key value } } }"#;

    // Y read on B: cold, then warm (tenant, plan, features and configuration from memory).
    let cold = statements(&b.gql(Some(&y.member), query, json!({})).await);
    let warm = statements(&b.gql(Some(&y.member), query, json!({})).await);
    assert!(warm < cold, "warm {warm} vs cold {cold}");
    b.gql(Some(&x.member), query, json!({})).await.ok();

    // Every kind of per-tenant write, to X, through A.
    let admin = a.admin_token();
    let xid = x.id.to_string();
    a.gql(
        Some(&admin),
        "mutation($id: ID!) { updateTenant(id: $id, input: { name: \"X renamed\" }) { name } }",
        json!({ "id": xid }),
    )
    .await
    .ok();
    a.gql(
        Some(&admin),
        "mutation($t: ID) { setFeature(tenantId: $t, key: \"advanced_analytics\", enabled: true) { enabled } }",
        json!({ "t": xid }),
    )
    .await
    .ok();
    a.gql(
        Some(&x.admin),
        "mutation { setConfig(input: { category: \"notifications\", key: \"email_enabled\", value: false }) { key } }",
        json!({}),
    )
    .await
    .ok();
    within_a_second("X's new name on B", || async {
        let resp = b.gql(Some(&x.member), query, json!({})).await;
        match resp.body["data"]["tenant"]["name"].as_str() {
            Some("X renamed") => Ok(()),
            _ => Err(resp.body.to_string()),
        }
    })
    .await;

    // Y's entries on B survived all of it: still served from memory.
    let resp = b.gql(Some(&y.member), query, json!({})).await;
    assert_eq!(resp.ok()["tenant"]["slug"], y.slug.as_str());
    assert_eq!(statements(&resp), warm, "Y's read after X's writes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_batch_across_tenants_keeps_each_hard_limit_and_alert_exact() {
    const TOKEN: &str = "caches-test-service-token";
    let app = Arc::new(
        TestApp::spawn_with(|env| {
            env.insert("SERVICE_TOKEN".into(), TOKEN.into());
        })
        .await,
    );
    let admin = app.admin_token();
    let mut tenants = Vec::new();
    for _ in 0..8 {
        let t = app.tenant().plan("enterprise").create().await;
        app.gql(
            Some(&admin),
            "mutation($t: ID!, $i: SetQuotaInput!) { setQuota(tenantId: $t, input: $i) { limit } }",
            json!({ "t": t.id.to_string(), "i": { "resource": "api_calls", "limit": 10, "enforcement": "HARD", "resetPeriod": "MONTHLY" } }),
        )
        .await
        .ok();
        tenants.push(t.id);
    }
    // 16 increments per tenant, interleaved across tenants and sent at once, so the writers'
    // batches mix tenants.
    let token = TOKEN.to_owned();
    let mut tasks = tokio::task::JoinSet::new();
    for round in 0..16 {
        for (i, id) in tenants.iter().enumerate() {
            let (app, token, id) = (app.clone(), token.clone(), *id);
            tasks.spawn(async move {
                let resp = app
                    .client
                    .post(format!("{}/internal/tenants/{id}/usage", app.base))
                    .header("x-service-token", token)
                    .json(&json!({ "resource": "api_calls", "amount": 1, "idempotencyKey": format!("k-{round}-{i}") }))
                    .send()
                    .await
                    .unwrap();
                (id, resp.status().as_u16())
            });
        }
    }
    let mut accepted: std::collections::HashMap<uuid::Uuid, u32> = Default::default();
    while let Some(r) = tasks.join_next().await {
        let (id, status) = r.unwrap();
        match status {
            200 => *accepted.entry(id).or_default() += 1,
            429 => {}
            other => panic!("unexpected status {other}"),
        }
    }
    let mut db = app.db.superuser().await;
    for id in &tenants {
        assert_eq!(
            accepted.get(id).copied().unwrap_or(0),
            10,
            "accepted for {id}"
        );
        let used = format!(
            "select used as n from quotas where tenant_id = '{id}' and resource = 'api_calls'"
        );
        assert_eq!(count(&mut db, &used).await, 10);
        let records = format!("select count(*) as n from usage_records where tenant_id = '{id}'");
        assert_eq!(count(&mut db, &records).await, 10);
        let hourly = format!("select coalesce(sum(amount), 0)::bigint as n from usage_hourly where tenant_id = '{id}'");
        assert_eq!(count(&mut db, &hourly).await, 10);
        for threshold in [75, 90, 95, 100] {
            let sql = format!("select count(*) as n from quota_alerts where tenant_id = '{id}' and threshold = {threshold}");
            assert_eq!(count(&mut db, &sql).await, 1, "{id}: threshold {threshold}");
        }
    }
}
