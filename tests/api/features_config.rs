//! Feature flags and layered configuration: plan entitlements, overrides with expiry, guards
//! on real fields, typed and encrypted values, defaults, audit, and isolation.

use crate::common::{count, TestApp};
use chrono::{Duration, Utc};
use serde_json::json;

const USAGE: &str = "query($from: DateTime!, $to: DateTime!) {
  tenant { usage(resource: \"api_calls\", from: $from, to: $to) { periodStart amount } } }";
const SET_FEATURE: &str = "mutation($t: ID, $k: String!, $on: Boolean!, $exp: DateTime) {
  setFeature(tenantId: $t, key: $k, enabled: $on, expiresAt: $exp) { key enabled source expiresAt } }";

fn range() -> serde_json::Value {
    json!({ "from": (Utc::now() - Duration::days(7)).to_rfc3339(), "to": Utc::now().to_rfc3339() })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guarded_fields_follow_plan_and_overrides() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token();
    let t = app.tenant().plan("free").create().await;
    let tid = t.id.to_string();

    // free lacks advanced_analytics: the guarded field refuses, naming the feature.
    let resp = app.gql(Some(&t.member), USAGE, range()).await;
    assert_eq!(
        resp.err("FEATURE_DISABLED")["extensions"]["feature"],
        "advanced_analytics"
    );

    // A tenant admin cannot enable what the plan lacks.
    let resp = app
        .gql(
            Some(&t.admin),
            SET_FEATURE,
            json!({ "k": "advanced_analytics", "on": true }),
        )
        .await;
    assert_eq!(
        resp.err("FEATURE_NOT_IN_PLAN")["extensions"]["feature"],
        "advanced_analytics"
    );
    // Members cannot override at all.
    app.gql(
        Some(&t.member),
        SET_FEATURE,
        json!({ "k": "file_storage", "on": false }),
    )
    .await
    .err("FORBIDDEN");

    // A platform admin's override enables it: the same query now answers.
    let resp = app
        .gql(
            Some(&admin),
            SET_FEATURE,
            json!({ "t": tid, "k": "advanced_analytics", "on": true }),
        )
        .await;
    assert_eq!(
        resp.ok()["setFeature"],
        json!({ "key": "advanced_analytics", "enabled": true, "source": "OVERRIDE", "expiresAt": null })
    );
    let resp = app.gql(Some(&t.member), USAGE, range()).await;
    assert_eq!(resp.ok()["tenant"]["usage"], json!([]));

    // An override that has expired stops counting at once, with no job involved.
    let past = (Utc::now() - Duration::minutes(1)).to_rfc3339();
    app.gql(
        Some(&admin),
        SET_FEATURE,
        json!({ "t": tid, "k": "advanced_analytics", "on": true, "exp": past }),
    )
    .await
    .ok();
    app.gql(Some(&t.member), USAGE, range())
        .await
        .err("FEATURE_DISABLED");
    let resp = app
        .gql(
            Some(&t.member),
            "{ tenant { feature(key: \"advanced_analytics\") { enabled source } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        resp.ok()["tenant"]["feature"],
        json!({ "enabled": false, "source": "DEFAULT" })
    );

    // Tenant admins may switch off, and back on, what the plan includes.
    let resp = app
        .gql(
            Some(&t.admin),
            SET_FEATURE,
            json!({ "k": "file_storage", "on": false }),
        )
        .await;
    assert_eq!(resp.ok()["setFeature"]["enabled"], false);
    let resp = app
        .gql(
            Some(&t.admin),
            SET_FEATURE,
            json!({ "k": "file_storage", "on": true }),
        )
        .await;
    assert_eq!(resp.ok()["setFeature"]["enabled"], true);
    let resp = app
        .gql(
            Some(&t.admin),
            "mutation { clearFeatureOverride(key: \"file_storage\") { enabled source } }",
            json!({}),
        )
        .await;
    assert_eq!(
        resp.ok()["clearFeatureOverride"],
        json!({ "enabled": true, "source": "PLAN" })
    );
    app.gql(
        Some(&admin),
        SET_FEATURE,
        json!({ "t": tid, "k": "no_such_flag", "on": true }),
    )
    .await
    .err("BAD_USER_INPUT");

    // auditLogs is behind audit_logs (not in free); branding writes behind custom_branding.
    app.gql(
        Some(&t.admin),
        "{ auditLogs(first: 5) { edges { node { action } } } }",
        json!({}),
    )
    .await
    .err("FEATURE_DISABLED");
    let set_brand = "mutation { setConfig(input: { category: \"branding\", key: \"primary_color\", value: \"#ff0000\" }) { value } }";
    app.gql(Some(&t.admin), set_brand, json!({}))
        .await
        .err("FEATURE_DISABLED");
    // Also when a platform admin names the tenant explicitly: the service checks the rule.
    let resp = app
        .gql(Some(&admin), "mutation($t: ID) { setConfig(input: { tenantId: $t, category: \"branding\", key: \"logo_url\", value: \"x\" }) { value } }", json!({ "t": tid }))
        .await;
    resp.err("FEATURE_DISABLED");

    // Every flag write is audited in the same transaction (and failed writes are not).
    let mut db = app.db.superuser().await;
    let sql = format!("select count(*) as n from audit_logs where tenant_id = '{tid}' and entity_type = 'feature'");
    assert_eq!(
        count(&mut db, &sql).await,
        5,
        "2 admin overrides, 2 tenant-admin toggles, 1 clear"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configuration_is_typed_encrypted_masked_and_resettable() {
    let app = TestApp::spawn().await;
    let t = app.tenant().plan("professional").create().await;
    let tid = t.id.to_string();
    let set = "mutation($i: SetConfigInput!) { setConfig(input: $i) { category key value dataType encrypted layer } }";
    let mut db = app.db.superuser().await;

    // A NUMBER key given a string: refused, nothing stored.
    let resp = app
        .gql(Some(&t.admin), set, json!({ "i": { "category": "security", "key": "session_timeout_minutes", "value": "sixty" } }))
        .await;
    assert_eq!(resp.err("BAD_USER_INPUT")["extensions"]["field"], "value");
    let resp = app
        .gql(Some(&t.admin), set, json!({ "i": { "category": "limits", "key": "max", "value": "x", "dataType": "NUMBER" } }))
        .await;
    resp.err("BAD_USER_INPUT");
    let stored = format!("select count(*) as n from configs where tenant_id = '{tid}'");
    assert_eq!(count(&mut db, &stored).await, 0);
    let audited = format!(
        "select count(*) as n from audit_logs where tenant_id = '{tid}' and entity_type = 'config'"
    );
    assert_eq!(count(&mut db, &audited).await, 0);
    // Read-only layers cannot be written.
    app.gql(
        Some(&t.admin),
        set,
        json!({ "i": { "category": "system", "key": "version", "value": "9" } }),
    )
    .await
    .err("BAD_USER_INPUT");

    // Typed values are stored and read back.
    let resp = app
        .gql(Some(&t.admin), set, json!({ "i": { "category": "security", "key": "session_timeout_minutes", "value": 15 } }))
        .await;
    assert_eq!(resp.ok()["setConfig"]["dataType"], "NUMBER");
    assert_eq!(resp.ok()["setConfig"]["value"], 15);

    // Encrypted: never in plain text in PostgreSQL, masked for members, plain for admins.
    let secret = "sk_live_do_not_leak_123";
    let resp = app
        .gql(Some(&t.admin), set, json!({ "i": { "category": "integrations", "key": "api_key", "value": secret, "encrypted": true } }))
        .await;
    assert_eq!(resp.ok()["setConfig"]["value"], secret);
    let sql = format!(
        "select count(*) as n from configs where tenant_id = '{tid}' and key = 'api_key' and encrypted
           and value is null and position(convert_to('{secret}', 'UTF8') in encrypted_value) = 0"
    );
    assert_eq!(count(&mut db, &sql).await, 1, "ciphertext only");
    let audit_leak =
        format!("select count(*) as n from audit_logs where changes::text like '%{secret}%'");
    assert_eq!(
        count(&mut db, &audit_leak).await,
        0,
        "the audit log does not keep the secret either"
    );
    let read = "{ tenant { configs(category: \"integrations\") { key value encrypted } } }";
    let member_view = app.gql(Some(&t.member), read, json!({})).await;
    let entry = member_view.ok()["tenant"]["configs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["key"] == "api_key")
        .unwrap()
        .clone();
    assert_eq!(entry["value"], "********");
    assert!(!member_view.body.to_string().contains(secret));
    let admin_view = app.gql(Some(&t.admin), read, json!({})).await;
    assert!(admin_view.body.to_string().contains(secret));

    // Branding (professional has custom_branding), then reset to the documented defaults.
    app.gql(
        Some(&t.admin),
        set,
        json!({ "i": { "category": "branding", "key": "primary_color", "value": "#ff0000" } }),
    )
    .await
    .ok();
    let resp = app
        .gql(Some(&t.member), "{ tenant { effectiveConfig } }", json!({}))
        .await;
    let eff = &resp.ok()["tenant"]["effectiveConfig"];
    assert_eq!(
        eff["branding"]["primary_color"],
        json!({ "value": "#ff0000", "layer": "TENANT" })
    );
    assert_eq!(eff["system"]["billingMode"]["value"], "LOCAL");
    assert_eq!(eff["plan"]["slug"]["value"], "professional");
    assert_eq!(eff["integrations"]["api_key"]["value"], "********");
    let resp = app
        .gql(
            Some(&t.admin),
            "mutation { resetConfig(category: \"branding\") { key value layer } }",
            json!({}),
        )
        .await;
    let after = resp.ok()["resetConfig"].as_array().unwrap().clone();
    let color = after.iter().find(|e| e["key"] == "primary_color").unwrap();
    assert_eq!(color["value"], "#4f46e5");
    assert_eq!(color["layer"], "DEFAULT");
    // Other categories are untouched by a category reset.
    assert_eq!(count(&mut db, &format!("select count(*) as n from configs where tenant_id = '{tid}' and category = 'integrations'")).await, 1);

    let resp = app
        .gql(
            Some(&t.admin),
            "mutation { deleteConfig(category: \"security\", key: \"session_timeout_minutes\") }",
            json!({}),
        )
        .await;
    assert_eq!(resp.ok()["deleteConfig"], true);

    // Members cannot write; every write above is in the audit log.
    app.gql(
        Some(&t.member),
        set,
        json!({ "i": { "category": "notifications", "key": "email_enabled", "value": false } }),
    )
    .await
    .err("FORBIDDEN");
    assert_eq!(
        count(&mut db, &audited).await,
        5,
        "number, secret, branding, branding reset, delete"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encrypted_writes_fail_clearly_without_a_key() {
    let app = TestApp::spawn_with(|env| {
        env.remove("CONFIG_ENCRYPTION_KEY");
    })
    .await;
    let t = app.tenant().create().await;
    let resp = app
        .gql(
            Some(&t.admin),
            "mutation { setConfig(input: { category: \"integrations\", key: \"k\", value: \"v\", encrypted: true }) { key } }",
            json!({}),
        )
        .await;
    let err = resp.err("BAD_USER_INPUT");
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .contains("CONFIG_ENCRYPTION_KEY"),
        "{err}"
    );
    let mut db = app.db.superuser().await;
    assert_eq!(count(&mut db, "select count(*) as n from configs").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_tenants_configs_and_features_are_unreachable() {
    let app = TestApp::spawn().await;
    let a = app.tenant().plan("enterprise").create().await;
    let b = app.tenant().plan("enterprise").create().await;
    let b_id = b.id.to_string();
    let admin = app.admin_token();
    app.gql(Some(&admin), "mutation($t: ID) { setConfig(input: { tenantId: $t, category: \"integrations\", key: \"k\", value: \"b-secret\" }) { key } }", json!({ "t": b_id }))
        .await
        .ok();

    let attempts = [
        ("mutation($t: ID) { setConfig(input: { tenantId: $t, category: \"integrations\", key: \"k\", value: \"pwned\" }) { key } }", "setConfig"),
        ("mutation($t: ID) { deleteConfig(tenantId: $t, category: \"integrations\", key: \"k\") }", "deleteConfig"),
        ("mutation($t: ID) { resetConfig(tenantId: $t) { key } }", "resetConfig"),
        ("mutation($t: ID) { setFeature(tenantId: $t, key: \"sso_integration\", enabled: false) { key } }", "setFeature"),
        ("mutation($t: ID) { clearFeatureOverride(tenantId: $t, key: \"sso_integration\") { key } }", "clearFeatureOverride"),
        ("query($t: ID) { tenant(id: $t) { configs { value } features { key } effectiveConfig } }", "tenant"),
    ];
    for (query, field) in attempts {
        let resp = app.gql(Some(&a.admin), query, json!({ "t": b_id })).await;
        resp.err("NOT_FOUND");
        assert!(
            resp.body["data"].is_null() || resp.body["data"][field].is_null(),
            "{field}: {}",
            resp.body
        );
        assert!(
            !resp.body.to_string().contains("b-secret"),
            "{field} leaked B's value"
        );
    }
    let mut db = app.db.superuser().await;
    let sql = format!(
        "select count(*) as n from configs where tenant_id = '{b_id}' and value = '\"b-secret\"'"
    );
    assert_eq!(count(&mut db, &sql).await, 1, "B's entry untouched");
    let sql = format!("select count(*) as n from tenant_features where tenant_id = '{b_id}'");
    assert_eq!(count(&mut db, &sql).await, 0);
}
