//! Every mutation leaves an audit row with the right actor, action and before/after, in the
//! same transaction as its effect; a mutation that fails leaves none. (`recordUsage` is the
//! exception by design: each increment is its own durable record in `usage_records`.)

mod common;

use common::{count, TestApp};
use serde_json::{json, Value};

#[derive(diesel::QueryableByName, Debug)]
struct Entry {
    #[diesel(sql_type = diesel::sql_types::Text)]
    action: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    actor_type: String,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
    actor_id: Option<String>,
    #[diesel(sql_type = diesel::sql_types::Jsonb)]
    changes: Value,
}

async fn last_entry(app: &TestApp, entity_type: &str) -> Entry {
    use diesel_async::RunQueryDsl;
    let mut db = app.db.superuser().await;
    diesel::sql_query(
        "select action, actor_type, actor_id, changes from audit_logs where entity_type = $1 order by created_at desc, id desc limit 1",
    )
    .bind::<diesel::sql_types::Text, _>(entity_type)
    .get_result(&mut db)
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_mutation_is_audited_and_failures_are_not() {
    let app = TestApp::spawn_with(|env| {
        env.insert("ADMIN_MAINTENANCE_MODE".into(), "true".into());
    })
    .await;
    let admin = app.admin_token();
    let t = app.tenant().plan("professional").create().await;
    let id = t.id.to_string();

    // (token, mutation, variables, entity type, action, actor type, a check on `changes`)
    type Check = fn(&Value) -> bool;
    let cases: Vec<(&str, &str, Value, &str, &str, &str, Check)> = vec![
        (&admin, "mutation { createTenant(input: { name: \"Audited\", slug: \"audited\" }) { id } }", json!({}), "tenant", "CREATE", "ADMIN", |c| c["after"]["slug"] == "audited" && c["before"].is_null()),
        (&t.admin, "mutation($id: ID!) { updateTenant(id: $id, input: { name: \"Renamed\" }) { id } }", json!({ "id": id }), "tenant", "UPDATE", "USER", |c| c["after"]["name"] == "Renamed" && c["before"]["name"] != "Renamed"),
        (&t.admin, "mutation { setConfig(input: { category: \"notifications\", key: \"email_enabled\", value: false }) { key } }", json!({}), "config", "CREATE", "USER", |c| c["after"] == false),
        (&t.admin, "mutation { deleteConfig(category: \"notifications\", key: \"email_enabled\") }", json!({}), "config", "DELETE", "USER", |c| c["before"] == false),
        (&t.admin, "mutation { setFeature(key: \"custom_branding\", enabled: false) { key } }", json!({}), "feature", "CREATE", "USER", |c| c["after"]["enabled"] == false),
        (&t.admin, "mutation { clearFeatureOverride(key: \"custom_branding\") { key } }", json!({}), "feature", "DELETE", "USER", |c| c["before"]["enabled"] == false),
        (&admin, "mutation($id: ID!) { setQuota(tenantId: $id, input: { resource: \"users\", limit: 7 }) { limit } }", json!({ "id": id }), "quota", "UPDATE", "ADMIN", |c| c["after"]["limit"] == 7 && c["before"]["limit"] == 100),
        (&t.admin, "mutation { changePlan(planSlug: \"enterprise\") { id } }", json!({}), "tenant", "PLAN_CHANGE", "USER", |c| c["after"]["plan"] == "enterprise"),
        (&t.admin, "mutation { cancelSubscription { status } }", json!({}), "subscription", "CANCEL", "USER", |c| c["after"]["cancelAtPeriodEnd"] == true),
        (&t.admin, "mutation { resumeSubscription { status } }", json!({}), "subscription", "RESUME", "USER", |c| c["after"]["cancelAtPeriodEnd"] == false),
        (&admin, "mutation($id: ID!) { overrideSubscription(tenantId: $id, status: UNPAID, reason: \"r\", ticketId: \"T-1\") { status } }", json!({ "id": id }), "subscription", "OVERRIDE", "ADMIN", |c| c["after"]["status"] == "UNPAID"),
        (&admin, "mutation($id: ID!) { exportTenantData(id: $id) }", json!({ "id": id }), "tenant", "EXPORT", "ADMIN", |c| c["after"].is_null()),
        (&admin, "mutation($id: ID!) { suspendTenant(id: $id, reason: \"audit\") { id } }", json!({ "id": id }), "tenant", "SUSPEND", "ADMIN", |c| c["after"]["status"] == "SUSPENDED" && c["before"]["status"] == "ACTIVE"),
        (&admin, "mutation($id: ID!) { reactivateTenant(id: $id) { id } }", json!({ "id": id }), "tenant", "REACTIVATE", "ADMIN", |c| c["after"]["status"] == "ACTIVE"),
        (&admin, "mutation($id: ID!) { deleteTenant(id: $id) { id } }", json!({ "id": id }), "tenant", "DELETE", "ADMIN", |c| c["after"]["status"] == "DELETED"),
        (&admin, "mutation($id: ID!) { restoreTenant(id: $id) { id } }", json!({ "id": id }), "tenant", "RESTORE", "ADMIN", |c| c["after"]["status"] == "ACTIVE"),
    ];
    for (token, query, vars, entity, action, actor_type, check) in cases {
        let resp = app.gql(Some(token), query, vars).await;
        resp.ok();
        let e = last_entry(&app, entity).await;
        assert_eq!(
            (e.action.as_str(), e.actor_type.as_str()),
            (action, actor_type),
            "{query}"
        );
        assert!(e.actor_id.is_some(), "{query}: actor id");
        assert!(check(&e.changes), "{query}: changes {}", e.changes);
    }

    // Failures write nothing.
    let mut db = app.db.superuser().await;
    let before = count(&mut db, "select count(*) as n from audit_logs").await;
    let failing = [
        (&admin, "mutation { createTenant(input: { name: \"X\", slug: \"audited\" }) { id } }", json!({})),
        (&t.member, "mutation($id: ID!) { updateTenant(id: $id, input: { name: \"no\" }) { id } }", json!({ "id": id })),
        (&t.admin, "mutation { setConfig(input: { category: \"security\", key: \"mfa_required\", value: \"yes\" }) { key } }", json!({})),
        (&t.admin, "mutation { changePlan(planSlug: \"enterprise\") { id } }", json!({})),
        (&admin, "mutation($id: ID!) { suspendTenant(id: $id, reason: \"\") { id } }", json!({ "id": id })),
        (&admin, "mutation($id: ID!) { restoreTenant(id: $id) { id } }", json!({ "id": id })),
    ];
    for (token, query, vars) in failing {
        let resp = app.gql(Some(token), query, vars).await;
        assert!(resp.code().is_some(), "{query} should fail: {}", resp.body);
    }
    assert_eq!(
        count(&mut db, "select count(*) as n from audit_logs").await,
        before,
        "a failed mutation wrote an audit row"
    );
}
