//! Billing in LOCAL mode (no STRIPE_SECRET_KEY): trials, plan changes through intents applied
//! at once (plan, quotas and features switch together), previews, cancel/resume, isolation.

use crate::common::{count, TestApp};
use chrono::{DateTime, Utc};
use serde_json::json;

const CHANGE: &str = "mutation($p: String!) { changePlan(planSlug: $p, billingCycle: MONTHLY) {
  id status version billingCycle expiresAt fromPlan { slug } toPlan { slug } } }";
const SUB: &str = "{ billingMode tenant { plan { slug } subscription { status trialEnd cancelAtPeriodEnd billingCycle plan { slug } } } }";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trials_and_plan_changes_apply_at_once_in_local_mode() {
    let app = TestApp::spawn().await;
    let t = app.tenant().plan("starter").create().await;
    let resp = app.gql(Some(&t.member), SUB, json!({})).await;
    let d = resp.ok();
    assert_eq!(d["billingMode"], "LOCAL");
    assert_eq!(d["tenant"]["subscription"]["status"], "TRIALING");
    let trial_end: DateTime<Utc> = d["tenant"]["subscription"]["trialEnd"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let days = (trial_end - Utc::now()).num_hours() as f64 / 24.0;
    assert!((13.9..=14.0).contains(&days), "{days}");
    let free = app.tenant().plan("free").create().await;
    let resp = app.gql(Some(&free.member), SUB, json!({})).await;
    assert_eq!(resp.ok()["tenant"]["subscription"]["status"], "ACTIVE");
    assert!(resp.ok()["tenant"]["subscription"]["trialEnd"].is_null());

    // Usage is kept across the switch.
    app.record_usage(&t.member, "users", 3).await.ok();

    app.gql(
        Some(&t.member),
        "{ previewPlanChange(planSlug: \"professional\") { currency } }",
        json!({}),
    )
    .await
    .err("FORBIDDEN");
    let resp = app
        .gql(Some(&t.admin), "{ previewPlanChange(planSlug: \"professional\") { fromPlan { slug } toPlan { slug } prorationAmount currency featuresAdded featuresRemoved quotaChanges { resource from to } } }", json!({}))
        .await;
    let p = &resp.ok()["previewPlanChange"];
    assert_eq!(p["toPlan"]["slug"], "professional");
    assert_eq!(p["currency"], "usd");
    assert!(p["prorationAmount"].as_i64().unwrap() > 0);
    assert_eq!(
        p["featuresAdded"],
        json!(["advanced_analytics", "audit_logs", "custom_branding"])
    );
    assert_eq!(p["featuresRemoved"], json!([]));
    assert!(p["quotaChanges"]
        .as_array()
        .unwrap()
        .contains(&json!({ "resource": "users", "from": 10, "to": 100 })));

    let resp = app
        .gql(Some(&t.admin), CHANGE, json!({ "p": "professional" }))
        .await;
    let i = &resp.ok()["changePlan"];
    assert_eq!(
        (i["status"].as_str(), i["version"].as_i64()),
        (Some("COMPLETED"), Some(2))
    );
    assert_eq!(
        (i["fromPlan"]["slug"].as_str(), i["toPlan"]["slug"].as_str()),
        (Some("starter"), Some("professional"))
    );
    let resp = app.gql(Some(&t.member), "{ tenant { plan { slug } quota(resource: \"users\") { limit used } feature(key: \"advanced_analytics\") { enabled source } } }", json!({})).await;
    assert_eq!(
        resp.ok()["tenant"],
        json!({ "plan": { "slug": "professional" }, "quota": { "limit": 100, "used": 3 }, "feature": { "enabled": true, "source": "PLAN" } })
    );

    app.gql(Some(&t.admin), CHANGE, json!({ "p": "professional" }))
        .await
        .err("CONFLICT");
    app.gql(Some(&t.admin), CHANGE, json!({ "p": "platinum" }))
        .await
        .err("BAD_USER_INPUT");
    app.gql(Some(&t.member), CHANGE, json!({ "p": "free" }))
        .await
        .err("FORBIDDEN");

    // Downgrade: the gated field closes again.
    app.gql(Some(&t.admin), CHANGE, json!({ "p": "free" }))
        .await
        .ok();
    let q = "query($f: DateTime!, $t: DateTime!) { tenant { usage(resource: \"users\", from: $f, to: $t) { amount } } }";
    let range = json!({ "f": (Utc::now() - chrono::Duration::days(1)).to_rfc3339(), "t": Utc::now().to_rfc3339() });
    app.gql(Some(&t.member), q, range)
        .await
        .err("FEATURE_DISABLED");

    let mut db = app.db.superuser().await;
    let tid = t.id;
    assert_eq!(count(&mut db, &format!("select count(*) as n from audit_logs where tenant_id = '{tid}' and action = 'PLAN_CHANGE'")).await, 2);
    assert_eq!(count(&mut db, &format!("select count(*) as n from plan_change_intents where tenant_id = '{tid}' and status = 'COMPLETED'")).await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_resume_checkout_and_suspension() {
    let app = TestApp::spawn().await;
    let t = app.tenant().plan("free").create().await;
    let cancel = "mutation($e: Boolean) { cancelSubscription(atPeriodEnd: $e) { status cancelAtPeriodEnd } }";
    let resp = app.gql(Some(&t.admin), cancel, json!({})).await;
    assert_eq!(
        resp.ok()["cancelSubscription"],
        json!({ "status": "ACTIVE", "cancelAtPeriodEnd": true })
    );
    let resp = app
        .gql(
            Some(&t.admin),
            "mutation { resumeSubscription { cancelAtPeriodEnd } }",
            json!({}),
        )
        .await;
    assert_eq!(resp.ok()["resumeSubscription"]["cancelAtPeriodEnd"], false);
    app.gql(
        Some(&t.admin),
        "mutation { resumeSubscription { cancelAtPeriodEnd } }",
        json!({}),
    )
    .await
    .err("CONFLICT");

    // Checkout in LOCAL mode: applied at once, back to the success URL.
    let resp = app
        .gql(Some(&t.admin), "mutation { createCheckoutSession(planSlug: \"starter\", billingCycle: YEARLY, successUrl: \"https://app.test/ok\", cancelUrl: \"https://app.test/no\") { id url } }", json!({}))
        .await;
    assert_eq!(
        resp.ok()["createCheckoutSession"]["url"],
        "https://app.test/ok"
    );
    let resp = app.gql(Some(&t.member), SUB, json!({})).await;
    assert_eq!(
        resp.ok()["tenant"]["subscription"]["billingCycle"],
        "YEARLY"
    );
    assert_eq!(resp.ok()["tenant"]["plan"]["slug"], "starter");
    app.gql(Some(&t.admin), "mutation { createCheckoutSession(planSlug: \"free\", successUrl: \"javascript:x\", cancelUrl: \"https://a.b\") { id } }", json!({}))
        .await
        .err("BAD_USER_INPUT");

    // Suspended: billing recovery works, other writes do not.
    app.suspend_tenant(t.id, "unpaid").await.ok();
    app.gql(Some(&t.admin), CHANGE, json!({ "p": "professional" }))
        .await
        .ok();
    app.gql(
        Some(&t.admin),
        "mutation($id: ID!) { updateTenant(id: $id, input: { name: \"x\" }) { id } }",
        json!({ "id": t.id.to_string() }),
    )
    .await
    .err("TENANT_SUSPENDED");

    let resp = app.gql(Some(&t.admin), cancel, json!({ "e": false })).await;
    assert_eq!(resp.ok()["cancelSubscription"]["status"], "CANCELED");
    app.gql(Some(&t.admin), cancel, json!({ "e": false }))
        .await
        .err("CONFLICT");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_tenants_billing_is_unreachable() {
    let app = TestApp::spawn().await;
    let a = app.tenant().create().await;
    let b = app.tenant().plan("starter").create().await;
    let q = "query($t: ID) { tenant(id: $t) { subscription { status } invoices(first: 5) { edges { node { id } } } } }";
    let resp = app
        .gql(Some(&a.admin), q, json!({ "t": b.id.to_string() }))
        .await;
    resp.err("NOT_FOUND");
    assert!(!resp.body.to_string().contains("TRIALING"));
    // Billing mutations act on the caller's own tenant only.
    let resp = app
        .gql_with(
            Some(&a.admin),
            &[("x-tenant-id", &b.slug)],
            CHANGE,
            json!({ "p": "enterprise" }),
        )
        .await;
    resp.err("FORBIDDEN");
    let resp = app
        .gql(
            Some(&b.member),
            "{ tenant { plan { slug } invoices(first: 5) { edges { node { id } } } } }",
            json!({}),
        )
        .await;
    assert_eq!(resp.ok()["tenant"]["plan"]["slug"], "starter");
    assert_eq!(resp.ok()["tenant"]["invoices"]["edges"], json!([]));
}

const OVERRIDE: &str = "mutation($t: ID!, $r: String!, $k: String!) {
  overrideSubscription(tenantId: $t, status: PAST_DUE, reason: $r, ticketId: $k) { status } }";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maintenance_override_needs_the_flag_a_reason_and_a_ticket() {
    let off = TestApp::spawn().await;
    let t = off.tenant().create().await;
    let vars = json!({ "t": t.id.to_string(), "r": "card fraud review", "k": "OPS-42" });
    let resp = off
        .gql(Some(&off.admin_token()), OVERRIDE, vars.clone())
        .await;
    assert!(resp.err("FORBIDDEN")["message"]
        .as_str()
        .unwrap()
        .contains("ADMIN_MAINTENANCE_MODE"));

    let on = TestApp::spawn_with(|env| {
        env.insert("ADMIN_MAINTENANCE_MODE".into(), "true".into());
    })
    .await;
    let t = on.tenant().create().await;
    let admin = on.admin_token();
    let id = t.id.to_string();
    on.gql(
        Some(&admin),
        OVERRIDE,
        json!({ "t": id, "r": "", "k": "OPS-42" }),
    )
    .await
    .err("BAD_USER_INPUT");
    on.gql(
        Some(&admin),
        OVERRIDE,
        json!({ "t": id, "r": "why", "k": " " }),
    )
    .await
    .err("BAD_USER_INPUT");
    on.gql(
        Some(&t.admin),
        OVERRIDE,
        json!({ "t": id, "r": "why", "k": "OPS-1" }),
    )
    .await
    .err("FORBIDDEN");
    let mut db = on.db.superuser().await;
    let audited = format!(
        "select count(*) as n from audit_logs where tenant_id = '{id}' and action = 'OVERRIDE'"
    );
    assert_eq!(count(&mut db, &audited).await, 0);

    let resp = on
        .gql(
            Some(&admin),
            OVERRIDE,
            json!({ "t": id, "r": "card fraud review", "k": "OPS-42" }),
        )
        .await;
    assert_eq!(resp.ok()["overrideSubscription"]["status"], "PAST_DUE");
    let sql = format!(
        "select count(*) as n from audit_logs where tenant_id = '{id}' and action = 'OVERRIDE' and actor_type = 'ADMIN'
           and metadata->>'reason' = 'card fraud review' and metadata->>'ticketId' = 'OPS-42'
           and changes->'before'->>'status' = 'ACTIVE' and changes->'after'->>'status' = 'PAST_DUE'"
    );
    assert_eq!(count(&mut db, &sql).await, 1);
}
