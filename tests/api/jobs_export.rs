//! Background jobs (purge after the restore window, quota resets, idempotency expiry) and the
//! GDPR export, both driven by the database catalogue so no table can be forgotten.

use crate::common::{count, fill_every_table, TestApp};
use diesel_async::SimpleAsyncConnection;
use serde_json::json;
use tenantry::jobs::{run_once, Job, Outcome};

async fn tenant_tables(app: &TestApp) -> Vec<String> {
    let mut db = app.db.superuser().await;
    tenantry::tenants::export::tenant_tables(&mut db)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_deleted_31_days_ago_is_gone_from_every_table() {
    let app = TestApp::spawn().await;
    let old = app.tenant().create().await;
    let recent = app.tenant().create().await;
    let live = app.tenant().create().await;
    let mut db = app.db.superuser().await;
    for t in [old.id, recent.id, live.id] {
        fill_every_table(&mut db, t).await;
    }
    for t in [&old, &recent] {
        app.delete_tenant(t.id).await.ok();
    }
    db.batch_execute(&format!(
        "update tenants set deleted_at = now() - interval '31 days' where id = '{}'",
        old.id
    ))
    .await
    .unwrap();

    assert_eq!(
        run_once(&app.app, Job::PurgeDeletedTenants).await.unwrap(),
        Outcome::Done(1)
    );

    let tables = tenant_tables(&app).await;
    assert!(tables.len() >= 12, "{tables:?}");
    for table in &tables {
        if table == "audit_logs" {
            // The audit trail outlives the tenant (two years' retention; audit_trail.rs).
            continue;
        }
        let gone = format!(
            "select count(*) as n from {table} where tenant_id = '{}'",
            old.id
        );
        assert_eq!(
            count(&mut db, &gone).await,
            0,
            "{table} still holds the purged tenant's rows"
        );
        for kept in [recent.id, live.id] {
            let sql = format!("select count(*) as n from {table} where tenant_id = '{kept}'");
            assert!(
                count(&mut db, &sql).await > 0,
                "{table} lost rows of {kept}"
            );
        }
    }
    assert_eq!(
        count(
            &mut db,
            &format!("select count(*) as n from tenants where id = '{}'", old.id)
        )
        .await,
        0
    );
    // The purge writes its own audit entry, without personal data.
    let sql = format!(
        "select count(*) as n from audit_logs where action = 'PURGE' and entity_id = '{0}' and tenant_id = '{0}'
           and actor_type = 'SYSTEM' and changes = '{{\"before\": null, \"after\": null}}'",
        old.id
    );
    assert_eq!(count(&mut db, &sql).await, 1);
    // Nothing left to do: a second run changes nothing.
    assert_eq!(
        run_once(&app.app, Job::PurgeDeletedTenants).await.unwrap(),
        Outcome::Done(0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quota_resets_and_idempotency_expiry() {
    let app = TestApp::spawn().await;
    let t = app.tenant().plan("starter").create().await;
    app.gql(Some(&t.member), "mutation { recordUsage(resource: \"api_calls\", amount: 7, idempotencyKey: \"k1\") { used } }", json!({}))
        .await
        .ok();
    let mut db = app.db.superuser().await;
    let tid = t.id;
    db.batch_execute(&format!(
        "update quotas set period_start = period_start - interval '40 days' where tenant_id = '{tid}' and resource = 'api_calls';
         update usage_records set recorded_at = now() - interval '25 hours' where tenant_id = '{tid}'"
    ))
    .await
    .unwrap();
    assert_eq!(
        run_once(&app.app, Job::QuotaResets).await.unwrap(),
        Outcome::Done(1)
    );
    let sql = format!(
        "select used as n from quotas where tenant_id = '{tid}' and resource = 'api_calls'"
    );
    assert_eq!(count(&mut db, &sql).await, 0);
    assert_eq!(
        run_once(&app.app, Job::IdempotencyExpiry).await.unwrap(),
        Outcome::Done(1)
    );
    // The old key no longer deduplicates; history is kept.
    let resp = app
        .gql(Some(&t.member), "mutation { recordUsage(resource: \"api_calls\", amount: 7, idempotencyKey: \"k1\") { used duplicate } }", json!({}))
        .await;
    assert_eq!(
        resp.ok()["recordUsage"],
        json!({ "used": 7, "duplicate": false })
    );
    assert_eq!(
        count(
            &mut db,
            &format!("select count(*) as n from usage_records where tenant_id = '{tid}'")
        )
        .await,
        2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_held_by_another_instance_is_skipped() {
    let app = TestApp::spawn().await;
    let mut holder = app.db.superuser().await;
    // Hold the purge job's lock as another instance would mid-run.
    holder
        .batch_execute("begin; select pg_advisory_xact_lock(8257537)")
        .await
        .unwrap();
    assert_eq!(
        run_once(&app.app, Job::PurgeDeletedTenants).await.unwrap(),
        Outcome::Skipped
    );
    holder.batch_execute("rollback").await.unwrap();
    assert!(matches!(
        run_once(&app.app, Job::PurgeDeletedTenants).await.unwrap(),
        Outcome::Done(_)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_export_holds_every_table_of_the_tenant_and_nothing_else() {
    let app = TestApp::spawn().await;
    let a = app.tenant().plan("professional").create().await;
    let b = app.tenant().plan("professional").create().await;
    let mut db = app.db.superuser().await;
    fill_every_table(&mut db, a.id).await;
    fill_every_table(&mut db, b.id).await;
    app.gql(Some(&a.admin), "mutation { setConfig(input: { category: \"integrations\", key: \"token\", value: \"s3cr3t-value\", encrypted: true }) { key } }", json!({}))
        .await
        .ok();

    let q = "mutation($id: ID!) { exportTenantData(id: $id) }";
    let resp = app
        .gql(
            Some(&app.admin_token()),
            q,
            json!({ "id": a.id.to_string() }),
        )
        .await;
    let doc = resp.ok()["exportTenantData"].clone();
    assert_eq!(doc["tenant"]["id"], a.id.to_string());
    let tables = tenant_tables(&app).await;
    for table in &tables {
        let rows = doc["tables"][table]
            .as_array()
            .unwrap_or_else(|| panic!("{table} missing from the export"));
        assert!(!rows.is_empty(), "{table}: no rows exported");
        assert!(
            rows.iter().all(|r| r["tenant_id"] == a.id.to_string()),
            "{table}: another tenant's row exported"
        );
    }
    let text = doc.to_string();
    assert!(
        !text.contains(&b.id.to_string()),
        "B leaked into A's export"
    );
    assert!(
        text.contains("s3cr3t-value"),
        "platform admins get decrypted values"
    );

    // The tenant's own admin may export too, with secrets masked; members may not; B's admin
    // cannot export A.
    let resp = app
        .gql(Some(&a.admin), q, json!({ "id": a.id.to_string() }))
        .await;
    let own = resp.ok()["exportTenantData"].to_string();
    assert!(!own.contains("s3cr3t-value") && own.contains("********"));
    app.gql(Some(&a.member), q, json!({ "id": a.id.to_string() }))
        .await
        .err("FORBIDDEN");
    app.gql(Some(&b.admin), q, json!({ "id": a.id.to_string() }))
        .await
        .err("NOT_FOUND");
    let sql = format!(
        "select count(*) as n from audit_logs where tenant_id = '{}' and action = 'EXPORT'",
        a.id
    );
    assert_eq!(count(&mut db, &sql).await, 2);
}

const EXPORT: &str =
    "mutation($id: ID!, $tables: [String!]) { exportTenantData(id: $id, tables: $tables) }";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_admins_export_only_what_their_features_show() {
    let app = TestApp::spawn().await;
    let free = app.tenant().plan("free").create().await;
    let pro = app.tenant().plan("professional").create().await;
    let mut db = app.db.superuser().await;
    fill_every_table(&mut db, free.id).await;
    fill_every_table(&mut db, pro.id).await;
    let gated = ["audit_logs", "usage_hourly", "usage_records"];

    // Free plan: no audit log, no usage history for the tenant's admin.
    let resp = app
        .gql(
            Some(&free.admin),
            EXPORT,
            json!({ "id": free.id.to_string() }),
        )
        .await;
    let doc = &resp.ok()["exportTenantData"];
    for t in gated {
        assert!(
            doc["tables"].get(t).is_none(),
            "{t} exported to a free plan"
        );
        assert!(doc["omitted"][t].as_str().unwrap().contains("disabled"));
    }
    assert!(!doc["tables"]["quotas"].as_array().unwrap().is_empty());
    // A platform admin exporting for GDPR gets everything.
    let resp = app
        .gql(
            Some(&app.admin_token()),
            EXPORT,
            json!({ "id": free.id.to_string() }),
        )
        .await;
    let doc = &resp.ok()["exportTenantData"];
    for t in gated {
        assert!(!doc["tables"][t].as_array().unwrap().is_empty(), "{t}");
    }
    assert_eq!(doc["omitted"], json!({}));

    // Professional, with audit_logs switched off by the tenant: usage yes, audit log no.
    app.set_feature(&pro.admin, "audit_logs", false).await.ok();
    let resp = app
        .gql(
            Some(&pro.admin),
            EXPORT,
            json!({ "id": pro.id.to_string() }),
        )
        .await;
    let doc = &resp.ok()["exportTenantData"];
    assert!(doc["tables"].get("audit_logs").is_none());
    assert!(!doc["tables"]["usage_hourly"].as_array().unwrap().is_empty());
    assert!(!doc["tables"]["usage_records"]
        .as_array()
        .unwrap()
        .is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_over_the_row_cap_is_refused_and_can_be_narrowed() {
    let app = TestApp::spawn_with(|env| {
        env.insert("EXPORT_MAX_ROWS".into(), "20".into());
    })
    .await;
    let t = app.tenant().plan("professional").create().await;
    let mut db = app.db.superuser().await;
    db.batch_execute(&format!(
        "insert into usage_hourly (tenant_id, resource, hour_start, amount)
         select '{}', 'api_calls', date_trunc('hour', now()) - g * interval '1 hour', 1
           from generate_series(0, 29) g",
        t.id
    ))
    .await
    .unwrap();
    let resp = app
        .gql(
            Some(&app.admin_token()),
            EXPORT,
            json!({ "id": t.id.to_string() }),
        )
        .await;
    let err = resp.err("BAD_USER_INPUT");
    assert!(
        err["message"].as_str().unwrap().contains("usage_hourly"),
        "{err}"
    );
    let sql = format!(
        "select count(*) as n from audit_logs where tenant_id = '{}' and action = 'EXPORT'",
        t.id
    );
    assert_eq!(
        count(&mut db, &sql).await,
        0,
        "a refused export writes nothing"
    );

    // Narrowed to small tables it works.
    let resp = app
        .gql(
            Some(&app.admin_token()),
            EXPORT,
            json!({ "id": t.id.to_string(), "tables": ["billing_subscriptions"] }),
        )
        .await;
    let doc = &resp.ok()["exportTenantData"];
    assert_eq!(doc["tables"].as_object().unwrap().len(), 1);
    app.gql(
        Some(&app.admin_token()),
        EXPORT,
        json!({ "id": t.id.to_string(), "tables": ["tenants_secret"] }),
    )
    .await
    .err("BAD_USER_INPUT");
}

/// `GET /exports/tenants/{id}`: status and the body parsed as JSON.
async fn download(
    app: &TestApp,
    token: Option<&str>,
    id: impl std::fmt::Display,
) -> (u16, serde_json::Value) {
    let mut req = app.client.get(format!("{}/exports/tenants/{id}", app.base));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    let content_type = resp.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(
        content_type.starts_with("application/json"),
        "{content_type}"
    );
    let text = resp.text().await.expect("body");
    let doc = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    (status, doc)
}

/// An export without its timestamp, each table's rows in one order (neither export orders rows).
fn normalized(mut doc: serde_json::Value) -> serde_json::Value {
    doc.as_object_mut().unwrap().remove("exportedAt");
    for rows in doc["tables"].as_object_mut().unwrap().values_mut() {
        rows.as_array_mut().unwrap().sort_by_key(|r| r.to_string());
    }
    doc
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_download_is_the_graphql_export_streamed() {
    let app = TestApp::spawn().await;
    let t = app.tenant().plan("professional").create().await;
    let mut db = app.db.superuser().await;
    fill_every_table(&mut db, t.id).await;
    app.gql(Some(&t.admin), "mutation { setConfig(input: { category: \"integrations\", key: \"token\", value: \"s3cr3t-value\", encrypted: true }) { key } }", json!({}))
        .await
        .ok();

    // The download's audit entry is written before its snapshot, the GraphQL export's after
    // its reads: downloading first, both documents hold the same audit rows.
    let (status, streamed) = download(&app, Some(&t.admin), t.id).await;
    assert_eq!(status, 200, "{streamed}");
    let resp = app
        .gql(Some(&t.admin), EXPORT, json!({ "id": t.id.to_string() }))
        .await;
    let doc = resp.ok()["exportTenantData"].clone();
    assert!(streamed["exportedAt"].is_string());
    let text = streamed.to_string();
    assert!(!text.contains("s3cr3t-value") && text.contains("********"));
    assert_eq!(normalized(streamed), normalized(doc));
    let sql = format!(
        "select count(*) as n from audit_logs where tenant_id = '{}' and action = 'EXPORT'",
        t.id
    );
    assert_eq!(count(&mut db, &sql).await, 2, "one audit entry per export");

    // A platform admin's download reveals the secret, like the GraphQL export.
    let (status, streamed) = download(&app, Some(&app.admin_token()), t.id).await;
    assert_eq!(status, 200);
    assert!(streamed.to_string().contains("s3cr3t-value"));
    // `tables` narrows the download too.
    let resp = app
        .client
        .get(format!(
            "{}/exports/tenants/{}?tables=quotas,configs",
            app.base, t.id
        ))
        .bearer_auth(&t.admin)
        .send()
        .await
        .unwrap();
    let narrowed: serde_json::Value = resp.json().await.unwrap();
    let mut names: Vec<_> = narrowed["tables"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    names.sort();
    assert_eq!(names, ["configs", "quotas"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_download_honours_the_feature_gates() {
    let app = TestApp::spawn().await;
    let free = app.tenant().plan("free").create().await;
    let mut db = app.db.superuser().await;
    fill_every_table(&mut db, free.id).await;
    let gated = ["audit_logs", "usage_hourly", "usage_records"];

    let (status, doc) = download(&app, Some(&free.admin), free.id).await;
    assert_eq!(status, 200, "{doc}");
    for t in gated {
        assert!(
            doc["tables"].get(t).is_none(),
            "{t} downloaded on a free plan"
        );
        assert!(doc["omitted"][t].as_str().unwrap().contains("disabled"));
    }
    assert!(!doc["tables"]["quotas"].as_array().unwrap().is_empty());

    let (status, doc) = download(&app, Some(&app.admin_token()), free.id).await;
    assert_eq!(status, 200, "{doc}");
    for t in gated {
        assert!(!doc["tables"][t].as_array().unwrap().is_empty(), "{t}");
    }
    assert_eq!(doc["omitted"], json!({}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_download_has_no_row_cap_and_reads_page_after_page() {
    let app = TestApp::spawn_with(|env| {
        env.insert("EXPORT_MAX_ROWS".into(), "5".into());
    })
    .await;
    let t = app.tenant().plan("professional").create().await;
    let mut db = app.db.superuser().await;
    // More than EXPORT_MAX_ROWS, and more than two pages of the cursor.
    let rows = 2 * tenantry::tenants::export::PAGE_ROWS + 12;
    db.batch_execute(&format!(
        "insert into usage_records (tenant_id, resource, amount, period_start, used_after, limit_at)
         select '{}', 'api_calls', g, now(), g, 1000000 from generate_series(1, {rows}) g",
        t.id
    ))
    .await
    .unwrap();

    app.gql(Some(&t.admin), EXPORT, json!({ "id": t.id.to_string() }))
        .await
        .err("BAD_USER_INPUT");
    let (status, doc) = download(&app, Some(&t.admin), t.id).await;
    assert_eq!(status, 200, "{doc}");
    let records = doc["tables"]["usage_records"].as_array().unwrap();
    assert_eq!(records.len(), rows);
    let mut amounts: Vec<i64> = records
        .iter()
        .map(|r| r["amount"].as_i64().unwrap())
        .collect();
    amounts.sort();
    assert_eq!(
        amounts,
        (1..=rows as i64).collect::<Vec<_>>(),
        "every row once"
    );
    assert!(records.iter().all(|r| r["tenant_id"] == t.id.to_string()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_download_refuses_members_other_tenants_and_anonymous_callers() {
    let app = TestApp::spawn().await;
    let a = app.tenant().plan("professional").create().await;
    let b = app.tenant().plan("professional").create().await;
    let code = |doc: &serde_json::Value| doc["error"]["code"].as_str().unwrap_or("").to_owned();

    let (status, doc) = download(&app, Some(&a.member), a.id).await;
    assert_eq!((status, code(&doc).as_str()), (403, "FORBIDDEN"), "{doc}");
    let (status, doc) = download(&app, Some(&b.admin), a.id).await;
    assert_eq!((status, code(&doc).as_str()), (404, "NOT_FOUND"), "{doc}");
    let (status, doc) = download(&app, None, a.id).await;
    assert_eq!(
        (status, code(&doc).as_str()),
        (401, "UNAUTHENTICATED"),
        "{doc}"
    );
    let (status, doc) = download(&app, Some(&app.admin_token()), uuid::Uuid::new_v4()).await;
    assert_eq!((status, code(&doc).as_str()), (404, "NOT_FOUND"), "{doc}");
    let mut db = app.db.superuser().await;
    let sql = "select count(*) as n from audit_logs where action = 'EXPORT'";
    assert_eq!(
        count(&mut db, sql).await,
        0,
        "a refused download writes nothing"
    );
}
