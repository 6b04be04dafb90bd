//! Every mutation leaves an audit row with the right actor, action and before/after, in the
//! same transaction as its effect; a mutation that fails leaves none. (`recordUsage` is the
//! exception by design: each increment is its own durable record in `usage_records`.)

use crate::common;

use crate::common::{count, TestApp};
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

#[derive(diesel::QueryableByName)]
struct Text {
    #[diesel(sql_type = diesel::sql_types::Text)]
    t: String,
}

const CREATE: &str = "mutation($input: CreateTenantInput!) { createTenant(input: $input) { id } }";

/// The request id stored in the audit row of the tenant created by `resp`.
async fn audited_request_id(app: &TestApp, resp: &common::Gql) -> String {
    use diesel_async::RunQueryDsl;
    let id = resp.ok()["createTenant"]["id"].as_str().unwrap().to_owned();
    let mut db = app.db.superuser().await;
    let row: Text = diesel::sql_query(
        "select metadata->>'requestId' as t from audit_logs where entity_type = 'tenant' and action = 'CREATE' and entity_id = $1",
    )
    .bind::<diesel::sql_types::Text, _>(id)
    .get_result(&mut db)
    .await
    .unwrap();
    row.t
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_request_id_is_kept_only_when_it_looks_like_an_id() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token();
    let huge = "a".repeat(10 * 1024);
    let cases = [
        ("10 KB", huge.as_str()),
        ("control character", "id\twith-tab"),
        ("bidi override", "evil\u{202e}gpj.exe"),
        ("log line", "x\" level=error msg=forged"),
        ("65 chars", &huge[..65]),
    ];
    for (what, rid) in cases {
        let slug = format!("rid-{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
        let resp = app
            .gql_with(
                Some(&admin),
                &[("x-request-id", rid)],
                CREATE,
                json!({ "input": { "name": "R", "slug": slug } }),
            )
            .await;
        let echoed = resp
            .header("x-request-id")
            .expect("x-request-id")
            .to_owned();
        assert!(
            uuid::Uuid::parse_str(&echoed).is_ok(),
            "{what}: the response carries {echoed:?}, not a fresh UUID"
        );
        assert_eq!(audited_request_id(&app, &resp).await, echoed, "{what}");
    }
    // A well-formed client id is kept end to end, errors included.
    let rid = "svc:checkout.v2_req-0042";
    let resp = app
        .gql_with(
            Some(&admin),
            &[("x-request-id", rid)],
            CREATE,
            json!({ "input": { "name": "R", "slug": "rid-kept" } }),
        )
        .await;
    assert_eq!(resp.header("x-request-id"), Some(rid));
    assert_eq!(audited_request_id(&app, &resp).await, rid);
    let resp = app
        .gql_with(
            None,
            &[("x-request-id", &huge)],
            "{ tenants { totalCount } }",
            json!({}),
        )
        .await;
    let echoed = resp.header("x-request-id").unwrap();
    assert!(uuid::Uuid::parse_str(echoed).is_ok());
    assert_eq!(resp.body["errors"][0]["extensions"]["requestId"], echoed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purged_tenants_audit_trail_outlives_it_until_retention() {
    use diesel_async::SimpleAsyncConnection;
    use tenantry::jobs::{run_once, Job, Outcome};
    let app = TestApp::spawn().await;
    let admin = app.admin_token();
    let t = app.tenant().plan("professional").create().await;
    let other = app.tenant().create().await;
    let tid = t.id;
    app.gql(
        Some(&t.admin),
        "mutation { setConfig(input: { category: \"notifications\", key: \"email_enabled\", value: false }) { key } }",
        json!({}),
    )
    .await
    .ok();
    app.delete_tenant(tid).await.ok();
    let mut db = app.db.superuser().await;
    let trail = format!("select count(*) as n from audit_logs where tenant_id = '{tid}'");
    let before = count(&mut db, &trail).await;
    assert!(before >= 3, "create, config, delete: {before}");
    db.batch_execute(&format!(
        "update tenants set deleted_at = now() - interval '31 days' where id = '{tid}'"
    ))
    .await
    .unwrap();
    assert_eq!(
        run_once(&app.app, Job::PurgeDeletedTenants).await.unwrap(),
        Outcome::Done(1)
    );
    let gone = format!("select count(*) as n from tenants where id = '{tid}'");
    assert_eq!(count(&mut db, &gone).await, 0);
    // Every row is still there, plus the purge's own entry.
    assert_eq!(count(&mut db, &trail).await, before + 1);
    let purge = format!(
        "select count(*) as n from audit_logs where tenant_id = '{tid}' and entity_id = '{tid}' and action = 'PURGE' and actor_type = 'SYSTEM'"
    );
    assert_eq!(count(&mut db, &purge).await, 1);

    // Platform admins read it through the API.
    let q = "query($t: ID) { auditLogs(first: 50, filter: { tenantId: $t }) { totalCount edges { node { action tenantId } } } }";
    let resp = app
        .gql(Some(&admin), q, json!({ "t": tid.to_string() }))
        .await;
    let logs = &resp.ok()["auditLogs"];
    assert_eq!(logs["totalCount"].as_i64(), Some(before + 1));
    let actions: Vec<&str> = logs["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"]["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions.first(), Some(&"PURGE"), "{actions:?}");
    assert!(
        actions.contains(&"CREATE") && actions.contains(&"DELETE"),
        "{actions:?}"
    );

    // RLS still holds on the orphaned rows: another tenant's scope sees none of them.
    db.batch_execute(&format!(
        "begin; set local role {}; select set_config('app.tenant_id', '{}', true)",
        common::APP_ROLE,
        other.id
    ))
    .await
    .unwrap();
    let seen = count(&mut db, &trail).await;
    db.batch_execute("rollback").await.unwrap();
    assert_eq!(seen, 0);

    // Retention still ends the trail after two years.
    db.batch_execute(&format!(
        "update audit_logs set created_at = now() - interval '2 years 1 day' where tenant_id = '{tid}'"
    ))
    .await
    .unwrap();
    assert!(matches!(
        run_once(&app.app, Job::AuditRetention).await.unwrap(),
        Outcome::Done(n) if n as i64 > before
    ));
    assert_eq!(count(&mut db, &trail).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_actor_type_the_code_can_write_is_accepted_by_the_table() {
    use scoped_futures::ScopedFutureExt;
    use tenantry::auth::{Actor, ActorType};
    use tenantry::db::Scope;
    let app = TestApp::spawn().await;
    let kinds = [
        ActorType::User,
        ActorType::Admin,
        ActorType::Webhook,
        ActorType::System,
        ActorType::Service,
        ActorType::Anonymous,
    ];
    for kind in kinds {
        let actor = Actor {
            kind,
            id: Some("actor-type-check".into()),
            role: None,
            tenant_id: None,
            request_id: None,
        };
        app.app
            .db
            .scoped(Scope::Platform("test"), |c| {
                async move {
                    let change = tenantry::audit::Change {
                        tenant_id: None,
                        entity_type: "test",
                        entity_id: "actor-type".into(),
                        action: "CHECK",
                        before: Value::Null,
                        after: Value::Null,
                        metadata: json!({}),
                    };
                    tenantry::audit::record(c, &actor, change).await?;
                    Ok(())
                }
                .scope_boxed()
            })
            .await
            .unwrap_or_else(|e| panic!("{kind:?}: {e}"));
    }
    let mut c = app.db.superuser().await;
    let n = count(
        &mut c,
        "select count(distinct actor_type) as n from audit_logs where entity_id = 'actor-type'",
    )
    .await;
    assert_eq!(n, kinds.len() as i64);
}
