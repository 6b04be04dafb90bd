//! `platformStats`: platform-wide figures for operators; nobody else may read them.

use crate::common::TestApp;
use diesel_async::SimpleAsyncConnection;
use serde_json::json;

const STATS: &str =
    "{ platformStats { totalTenants tenantsByStatus { key count } tenantsByPlan { key count }
  subscriptionsByStatus { key count } mrr { currency amount } alertsLast24h webhookFailures } }";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_see_tenants_subscriptions_revenue_and_alerts() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token();
    let free = app.tenant().plan("free").create().await;
    let pro = app.tenant().plan("professional").create().await; // trialing: no revenue yet
    let starter = app.tenant().plan("starter").create().await;
    let gone = app.tenant().plan("enterprise").create().await;
    app.delete_tenant(gone.id).await.ok();
    app.suspend_tenant(free.id, "r").await.ok();
    let mut db = app.db.superuser().await;
    // The starter tenant pays yearly (29,000 / 12 = 2,416 a month).
    db.batch_execute(&format!(
        "update billing_subscriptions set status = 'ACTIVE', billing_cycle = 'YEARLY' where tenant_id = '{}'",
        starter.id
    ))
    .await
    .unwrap();
    app.record_usage(&pro.member, "users", 80).await.ok();

    let resp = app.gql(Some(&admin), STATS, json!({})).await;
    let s = &resp.ok()["platformStats"];
    assert_eq!(s["totalTenants"], 4);
    assert_eq!(
        s["tenantsByStatus"],
        json!([{ "key": "ACTIVE", "count": 2 }, { "key": "DELETED", "count": 1 }, { "key": "SUSPENDED", "count": 1 }])
    );
    assert_eq!(
        s["tenantsByPlan"],
        json!([{ "key": "free", "count": 1 }, { "key": "professional", "count": 1 }, { "key": "starter", "count": 1 }])
    );
    assert_eq!(
        s["subscriptionsByStatus"],
        json!([{ "key": "ACTIVE", "count": 2 }, { "key": "TRIALING", "count": 1 }])
    );
    assert_eq!(s["mrr"], json!([{ "currency": "usd", "amount": 2416 }]));
    assert_eq!(s["alertsLast24h"], 1);
    assert_eq!(s["webhookFailures"], 0);

    app.gql(Some(&pro.admin), STATS, json!({}))
        .await
        .err("FORBIDDEN");
    app.gql(None, STATS, json!({})).await.err("UNAUTHENTICATED");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_logs_are_filtered_and_isolated() {
    let app = TestApp::spawn().await;
    let a = app.tenant().plan("professional").create().await;
    let b = app.tenant().plan("professional").create().await;
    let admin = app.admin_token();
    app.gql(
        Some(&a.admin),
        "mutation($id: ID!) { updateTenant(id: $id, input: { name: \"A2\" }) { id } }",
        json!({ "id": a.id.to_string() }),
    )
    .await
    .ok();
    let q = "query($f: AuditLogFilter) { auditLogs(first: 50, filter: $f) { edges { node { tenantId entityType action actorType actorId changes } } } }";
    let resp = app
        .gql(Some(&a.admin), q, json!({ "f": { "action": "UPDATE" } }))
        .await;
    let edges = resp.ok()["auditLogs"]["edges"].as_array().unwrap().clone();
    assert_eq!(edges.len(), 1, "{edges:?}");
    let node = &edges[0]["node"];
    assert_eq!(
        (node["entityType"].as_str(), node["actorType"].as_str()),
        (Some("tenant"), Some("USER"))
    );
    assert_eq!(node["changes"]["after"]["name"], "A2");
    // A never sees B's entries, even when asking for them.
    let resp = app.gql(Some(&a.admin), q, json!({})).await;
    assert!(resp.ok()["auditLogs"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["node"]["tenantId"] == a.id.to_string()));
    app.gql(
        Some(&a.admin),
        q,
        json!({ "f": { "tenantId": b.id.to_string() } }),
    )
    .await
    .err("NOT_FOUND");
    // Time window: nothing in the future.
    let future = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let resp = app
        .gql(Some(&admin), q, json!({ "f": { "from": future } }))
        .await;
    assert_eq!(resp.ok()["auditLogs"]["edges"], json!([]));
    let resp = app
        .gql(
            Some(&admin),
            q,
            json!({ "f": { "tenantId": b.id.to_string(), "action": "CREATE" } }),
        )
        .await;
    assert_eq!(resp.ok()["auditLogs"]["edges"].as_array().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn growing_lists_count_their_total_for_the_callers_tenant_only() {
    let app = TestApp::spawn().await;
    let a = app.tenant().plan("professional").create().await;
    let b = app.tenant().plan("professional").create().await;
    for t in [&a, &b] {
        app.set_feature(&t.admin, "custom_branding", false)
            .await
            .ok();
    }
    app.gql(
        Some(&a.admin),
        "mutation { clearFeatureOverride(key: \"custom_branding\") { key } }",
        json!({}),
    )
    .await
    .ok();
    // A: CREATE + feature set + feature cleared; B: CREATE + feature set.
    let q =
        "{ auditLogs(first: 1) { totalCount pageInfo { hasNextPage } edges { node { action } } }
               tenant { quotaAlerts(first: 1) { totalCount } invoices(first: 1) { totalCount } } }";
    let resp = app.gql(Some(&a.admin), q, json!({})).await;
    assert_eq!(resp.ok()["auditLogs"]["totalCount"], 3);
    assert_eq!(resp.ok()["auditLogs"]["pageInfo"]["hasNextPage"], true);
    assert_eq!(resp.ok()["tenant"]["quotaAlerts"]["totalCount"], 0);
    assert_eq!(resp.ok()["tenant"]["invoices"]["totalCount"], 0);
    let resp = app.gql(Some(&b.admin), q, json!({})).await;
    assert_eq!(resp.ok()["auditLogs"]["totalCount"], 2);
}
