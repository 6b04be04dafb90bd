//! Entitlements follow the plan: an override enabling a feature the new plan lacks is removed
//! on every plan change path (LOCAL changePlan, trial expiry, maintenance cancellation; the
//! Stripe webhook path is in billing_stripe.rs), audited, and seen at once on every instance.
//! And override provenance: a tenant admin never undoes what a platform admin set.

use crate::common::{count, TestApp, TestTenant};
use serde_json::json;
use tenantry::jobs::{self, Job};

const SET: &str = "mutation($t: ID, $k: String!, $on: Boolean!) {
  setFeature(tenantId: $t, key: $k, enabled: $on) { key enabled source } }";
const CLEAR: &str = "mutation($t: ID, $k: String!) { clearFeatureOverride(tenantId: $t, key: $k) { key enabled source } }";
const FEATURE: &str =
    "query($k: String!) { tenant { plan { slug } feature(key: $k) { enabled source } } }";
const AUDIT_LOGS: &str = "{ auditLogs(first: 1) { totalCount } }";

/// A professional tenant whose admin keeps `audit_logs` on through an OVERRIDE (and switches
/// `advanced_analytics` off, which must survive every downgrade).
async fn with_overrides(app: &TestApp) -> TestTenant {
    let t = app.tenant().plan("professional").create().await;
    let resp = app
        .gql(
            Some(&t.admin),
            SET,
            json!({ "k": "audit_logs", "on": true }),
        )
        .await;
    assert_eq!(
        resp.ok()["setFeature"],
        json!({ "key": "audit_logs", "enabled": true, "source": "OVERRIDE" })
    );
    app.gql(
        Some(&t.admin),
        SET,
        json!({ "k": "advanced_analytics", "on": false }),
    )
    .await
    .ok();
    app.gql(Some(&t.admin), AUDIT_LOGS, json!({})).await.ok();
    t
}

/// What a user sees after the downgrade, and what the database holds.
async fn assert_entitlements_follow_free(app: &TestApp, t: &TestTenant) {
    let resp = app
        .gql(Some(&t.admin), FEATURE, json!({ "k": "audit_logs" }))
        .await;
    assert_eq!(
        resp.ok()["tenant"],
        json!({ "plan": { "slug": "free" }, "feature": { "enabled": false, "source": "DEFAULT" } })
    );
    app.gql(Some(&t.admin), AUDIT_LOGS, json!({}))
        .await
        .err("FEATURE_DISABLED");
    // And it cannot be switched back on.
    app.gql(
        Some(&t.admin),
        SET,
        json!({ "k": "audit_logs", "on": true }),
    )
    .await
    .err("FEATURE_NOT_IN_PLAN");
    let mut c = app.db.superuser().await;
    let id = t.id;
    assert_eq!(
        count(&mut c, &format!("select count(*) as n from tenant_features where tenant_id = '{id}' and feature_key = 'audit_logs'")).await,
        0
    );
    // A disabling override only restricts: it stays.
    assert_eq!(
        count(&mut c, &format!("select count(*) as n from tenant_features where tenant_id = '{id}' and feature_key = 'advanced_analytics' and not enabled")).await,
        1
    );
    assert_eq!(
        count(
            &mut c,
            &format!(
                "select count(*) as n from audit_logs where tenant_id = '{id}' and entity_type = 'tenant'
                   and action = 'UPDATE' and metadata->'removedOverrides' = '[\"audit_logs\"]'::jsonb
                   and changes->'before'->'featureOverrides'->0->>'key' = 'audit_logs'"
            )
        )
        .await,
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_downgrade_ends_overrides_of_features_outside_the_plan_on_every_instance() {
    let app = TestApp::spawn().await;
    let other = app.second_instance().await;
    let t = with_overrides(&app).await;
    // The other instance has the override cached.
    let resp = other
        .gql(Some(&t.admin), FEATURE, json!({ "k": "audit_logs" }))
        .await;
    assert_eq!(resp.ok()["tenant"]["feature"]["source"], "OVERRIDE");
    other.gql(Some(&t.admin), AUDIT_LOGS, json!({})).await.ok();

    let resp = app
        .gql(
            Some(&t.admin),
            "mutation { changePlan(planSlug: \"free\") { status toPlan { slug } } }",
            json!({}),
        )
        .await;
    assert_eq!(resp.ok()["changePlan"]["status"], "COMPLETED");
    assert_entitlements_follow_free(&app, &t).await;
    // Pub/sub reaches the other instance shortly after the commit.
    let mut seen = None;
    for _ in 0..50 {
        let resp = other
            .gql(Some(&t.admin), FEATURE, json!({ "k": "audit_logs" }))
            .await;
        seen = Some(resp.ok()["tenant"]["feature"].clone());
        if seen == Some(json!({ "enabled": false, "source": "DEFAULT" })) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(seen, Some(json!({ "enabled": false, "source": "DEFAULT" })));
    other
        .gql(Some(&t.admin), AUDIT_LOGS, json!({}))
        .await
        .err("FEATURE_DISABLED");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trial_expiry_ends_overrides_of_features_outside_the_plan() {
    let app = TestApp::spawn().await;
    let t = with_overrides(&app).await;
    let mut c = app.db.superuser().await;
    diesel_async::SimpleAsyncConnection::batch_execute(
        &mut c,
        &format!(
            "update billing_subscriptions set trial_end = now() - interval '1 hour' where tenant_id = '{}'",
            t.id
        ),
    )
    .await
    .unwrap();
    jobs::run_once(&app.app, Job::TrialExpiry).await.unwrap();
    assert_entitlements_follow_free(&app, &t).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_maintenance_cancellation_ends_the_plan_and_its_overrides() {
    let app = TestApp::spawn_with(|env| {
        env.insert("ADMIN_MAINTENANCE_MODE".into(), "true".into());
    })
    .await;
    let t = with_overrides(&app).await;
    let resp = app
        .gql(
            Some(&app.admin_token()),
            "mutation($t: ID!) { overrideSubscription(tenantId: $t, status: CANCELED, reason: \"fraud\", ticketId: \"T-9\") { status plan { slug } } }",
            json!({ "t": t.id }),
        )
        .await;
    assert_eq!(
        resp.ok()["overrideSubscription"],
        json!({ "status": "CANCELED", "plan": { "slug": "free" } })
    );
    assert_entitlements_follow_free(&app, &t).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_admin_never_undoes_a_platform_override() {
    let app = TestApp::spawn().await;
    let t = app.tenant().plan("professional").create().await;
    let root = app.admin_token();
    // The platform switches a plan feature off for this tenant.
    let resp = app
        .gql(
            Some(&root),
            SET,
            json!({ "t": t.id, "k": "audit_logs", "on": false }),
        )
        .await;
    assert_eq!(resp.ok()["setFeature"]["enabled"], false);
    let mut c = app.db.superuser().await;
    let id = t.id;
    let audits = format!(
        "select count(*) as n from audit_logs where tenant_id = '{id}' and entity_type = 'feature'"
    );
    let before = count(&mut c, &audits).await;

    // The tenant admin can neither switch it back on nor clear it.
    app.gql(
        Some(&t.admin),
        SET,
        json!({ "k": "audit_logs", "on": true }),
    )
    .await
    .err("FORBIDDEN");
    app.gql(
        Some(&t.admin),
        SET,
        json!({ "k": "audit_logs", "on": false }),
    )
    .await
    .err("FORBIDDEN");
    app.gql(Some(&t.admin), CLEAR, json!({ "k": "audit_logs" }))
        .await
        .err("FORBIDDEN");
    let resp = app
        .gql(Some(&t.admin), FEATURE, json!({ "k": "audit_logs" }))
        .await;
    assert_eq!(
        resp.ok()["tenant"]["feature"],
        json!({ "enabled": false, "source": "OVERRIDE" })
    );
    app.gql(Some(&t.admin), AUDIT_LOGS, json!({}))
        .await
        .err("FEATURE_DISABLED");
    assert_eq!(
        count(&mut c, &format!("select count(*) as n from tenant_features where tenant_id = '{id}' and feature_key = 'audit_logs' and not enabled and set_by_type = 'ADMIN'")).await,
        1
    );
    assert_eq!(count(&mut c, &audits).await, before);

    // The tenant's own overrides stay its own; a platform admin may take any over.
    app.gql(
        Some(&t.admin),
        SET,
        json!({ "k": "advanced_analytics", "on": false }),
    )
    .await
    .ok();
    app.gql(Some(&t.admin), CLEAR, json!({ "k": "advanced_analytics" }))
        .await
        .ok();
    app.gql(
        Some(&t.admin),
        SET,
        json!({ "k": "custom_branding", "on": false }),
    )
    .await
    .ok();
    app.gql(
        Some(&root),
        SET,
        json!({ "t": t.id, "k": "custom_branding", "on": false }),
    )
    .await
    .ok();
    app.gql(Some(&t.admin), CLEAR, json!({ "k": "custom_branding" }))
        .await
        .err("FORBIDDEN");
    // Platform admins still change anything.
    let resp = app
        .gql(Some(&root), CLEAR, json!({ "t": t.id, "k": "audit_logs" }))
        .await;
    assert_eq!(
        resp.ok()["clearFeatureOverride"],
        json!({ "key": "audit_logs", "enabled": true, "source": "PLAN" })
    );
    app.gql(
        Some(&t.admin),
        SET,
        json!({ "k": "audit_logs", "on": false }),
    )
    .await
    .ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_billing_cycle_change_on_the_same_plan_keeps_every_override() {
    let app = TestApp::spawn().await;
    let t = app.tenant().plan("professional").create().await;
    // An operator's grant beyond the plan, and the tenant's own switch.
    app.gql(
        Some(&app.admin_token()),
        SET,
        json!({ "t": t.id, "k": "sso_integration", "on": true }),
    )
    .await
    .ok();
    let resp = app
        .gql(
            Some(&t.admin),
            "mutation { changePlan(planSlug: \"professional\", billingCycle: YEARLY) { status } }",
            json!({}),
        )
        .await;
    assert_eq!(resp.ok()["changePlan"]["status"], "COMPLETED");
    let resp = app
        .gql(Some(&t.admin), FEATURE, json!({ "k": "sso_integration" }))
        .await;
    assert_eq!(
        resp.ok()["tenant"]["feature"],
        json!({ "enabled": true, "source": "OVERRIDE" })
    );
}
