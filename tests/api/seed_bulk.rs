//! `tenantry seed --tenants N`: set-based, one transaction per chunk, and the same rows a
//! tenant created through `createTenant` gets (quotas, subscription, audit entry).

use serde_json::json;
use tenantry::auth::Role;

use crate::common::{count, text, TestApp};

const QUOTAS: &str = "{ tenant { plan { slug } subscription { status billingCycle } quotas { resource limit used unit resetPeriod enforcement alertThresholds } } }";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_tenants_get_what_create_tenant_gives_and_a_rerun_adds_only_what_is_missing() {
    let app = TestApp::spawn().await;
    // 1,500 crosses a chunk boundary (1,000 per transaction).
    tenantry::seed::seed_many(&app.app, 1_500).await.unwrap();
    let mut c = app.db.superuser().await;
    let bulk = "select count(*) as n from tenants where slug like 'tenant-%'";
    assert_eq!(count(&mut c, bulk).await, 1_500);
    let each = |table: &str| {
        format!("select count(distinct x.tenant_id) as n from {table} x join tenants t on t.id = x.tenant_id where t.slug like 'tenant-%'")
    };
    assert_eq!(count(&mut c, &each("quotas")).await, 1_500);
    assert_eq!(count(&mut c, &each("billing_subscriptions")).await, 1_500);
    let created = "select count(*) as n from audit_logs where action = 'CREATE' and entity_type = 'tenant' and metadata->>'bulk' = 'true'";
    assert_eq!(count(&mut c, created).await, 1_500);

    // tenant-000002 is on `starter` (plans rotate free, starter, professional, enterprise):
    // it answers like a starter tenant made through the API.
    let id = text(
        &mut c,
        "select id::text as v from tenants where slug = 'tenant-000002'",
    )
    .await
    .unwrap();
    let bulk_view = app
        .gql(
            Some(&app.token(Role::TenantAdmin, Some(id.parse().unwrap()))),
            QUOTAS,
            json!({}),
        )
        .await;
    let made = app.tenant().plan("starter").owner("someone").create().await;
    let api_view = app.gql(Some(&made.admin), QUOTAS, json!({})).await;
    assert_eq!(bulk_view.ok()["tenant"]["plan"]["slug"], "starter");
    assert_eq!(bulk_view.ok()["tenant"], api_view.ok()["tenant"]);

    // A rerun skips what exists; a larger N adds the rest.
    tenantry::seed::seed_many(&app.app, 1_500).await.unwrap();
    assert_eq!(count(&mut c, bulk).await, 1_500);
    tenantry::seed::seed_many(&app.app, 1_600).await.unwrap();
    assert_eq!(count(&mut c, bulk).await, 1_600);
    assert_eq!(count(&mut c, created).await, 1_600);
}
