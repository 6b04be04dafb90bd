//! Isolation is the product: tenant A can never read or change tenant B, through any argument,
//! header or nested field — and PostgreSQL itself refuses, under the app role, when no scope or
//! another tenant's scope is set.

use crate::common;

use crate::common::{count, TestApp, APP_ROLE};
use diesel_async::{AsyncConnection, SimpleAsyncConnection};
use serde_json::json;
use uuid::Uuid;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_user_cannot_reach_another_tenant_through_the_api() {
    let app = TestApp::spawn().await;
    let a = app.tenant().plan("starter").create().await;
    let b = app.tenant().plan("professional").create().await;
    let b_id = b.id.to_string();

    // Every way of naming B, with A's admin and member tokens: no data, the contract code.
    let reads = [
        (
            "query($id: ID!) { tenant(id: $id) { id name quotas { used } } }",
            json!({ "id": b_id }),
        ),
        (
            "query($s: String!) { tenant(slug: $s) { id name } }",
            json!({ "s": b.slug }),
        ),
    ];
    for token in [&a.admin, &a.member] {
        for (query, vars) in &reads {
            let resp = app.gql(Some(token), query, vars.clone()).await;
            resp.err("NOT_FOUND");
            assert!(
                resp.body["data"]["tenant"].is_null(),
                "leaked: {}",
                resp.body
            );
            assert!(
                !resp.body.to_string().contains(&b.slug),
                "B's slug leaked: {}",
                resp.body
            );
        }
        for header in [b_id.as_str(), b.slug.as_str()] {
            let resp = app
                .gql_with(
                    Some(token),
                    &[("x-tenant-id", header)],
                    "{ tenant { id slug } }",
                    json!({}),
                )
                .await;
            resp.err("FORBIDDEN");
            assert!(resp.body["data"].is_null());
        }
        app.gql(
            Some(token),
            "{ tenants(first: 5) { edges { node { id } } } }",
            json!({}),
        )
        .await
        .err("FORBIDDEN");
    }

    // Writes: nothing changes in B.
    let resp = app
        .gql(
            Some(&a.admin),
            "mutation($id: ID!) { updateTenant(id: $id, input: { name: \"pwned\" }) { id } }",
            json!({ "id": b_id }),
        )
        .await;
    resp.err("NOT_FOUND");
    let mut conn = app.db.superuser().await;
    let sql = format!(
        "select count(*) as n from tenants where id = '{}' and name = 'pwned'",
        b.id
    );
    assert_eq!(count(&mut conn, &sql).await, 0);

    // A's own header (id or slug) is fine, and nested fields only ever show A's rows.
    let resp = app
        .gql_with(
            Some(&a.member),
            &[("x-tenant-id", &a.slug)],
            "{ tenant { id quotas { resource } } }",
            json!({}),
        )
        .await;
    let data = resp.ok();
    assert_eq!(data["tenant"]["id"], a.id.to_string());
    let own_quotas = count(
        &mut conn,
        &format!(
            "select count(*) as n from quotas where tenant_id = '{}'",
            a.id
        ),
    )
    .await;
    assert_eq!(
        data["tenant"]["quotas"].as_array().unwrap().len() as i64,
        own_quotas
    );

    // The attempts are counted.
    let (status, metrics) = app.get("/metrics").await;
    assert_eq!(status, 200);
    assert!(
        metrics.contains("tenantry_cross_tenant_attempts_total"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn platform_admins_choose_a_tenant_explicitly() {
    let app = TestApp::spawn().await;
    let b = app.tenant().create().await;
    let admin = app.admin_token();
    let resp = app
        .gql_with(
            Some(&admin),
            &[("x-tenant-id", &b.slug)],
            "{ me { role tenant { id } } }",
            json!({}),
        )
        .await;
    assert_eq!(resp.ok()["me"]["tenant"]["id"], b.id.to_string());
    assert_eq!(resp.ok()["me"]["role"], "PLATFORM_ADMIN");
    let resp = app
        .gql(Some(&admin), "{ me { tenant { id } } }", json!({}))
        .await;
    assert!(resp.ok()["me"]["tenant"].is_null());
    let unknown = Uuid::new_v4().to_string();
    app.gql_with(
        Some(&admin),
        &[("x-tenant-id", &unknown)],
        "{ me { role } }",
        json!({}),
    )
    .await
    .err("NOT_FOUND");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_host_header_names_a_tenant_for_public_lookups_only() {
    let app = TestApp::spawn().await;
    let a = app
        .tenant()
        .domain("portal.acme-example.com")
        .create()
        .await;
    let host = format!("{}.tenantry.test", a.slug);
    let q = "{ publicTenant { slug } }";
    let resp = app.gql_with(None, &[("host", &host)], q, json!({})).await;
    assert_eq!(resp.ok()["publicTenant"]["slug"], a.slug);
    let resp = app
        .gql_with(None, &[("host", "portal.acme-example.com")], q, json!({}))
        .await;
    assert_eq!(resp.ok()["publicTenant"]["slug"], a.slug);
    let resp = app
        .gql_with(None, &[("host", "nobody.tenantry.test")], q, json!({}))
        .await;
    assert!(resp.ok()["publicTenant"].is_null());
    // The host grants nothing else.
    app.gql_with(None, &[("host", &host)], "{ tenant { id } }", json!({}))
        .await
        .err("UNAUTHENTICATED");
}

#[derive(diesel::QueryableByName, Debug)]
struct TableInfo {
    #[diesel(sql_type = diesel::sql_types::Text)]
    name: String,
    #[diesel(sql_type = diesel::sql_types::Bool)]
    rls: bool,
    #[diesel(sql_type = diesel::sql_types::Bool)]
    forced: bool,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_level_security_guards_every_tenant_owned_table() {
    use diesel_async::RunQueryDsl;
    let app = TestApp::spawn().await;
    let a = app.tenant().create().await.id;
    let b = app.tenant().create().await.id;
    let mut su = app.db.superuser().await;
    common::fill_every_table(&mut su, a).await;
    common::fill_every_table(&mut su, b).await;

    // Tenant-owned = every table with a tenant_id column, plus tenants itself; read from the
    // catalogue so that a new table cannot be forgotten.
    let tables: Vec<TableInfo> = diesel::sql_query(
        "select c.relname::text as name, c.relrowsecurity as rls, c.relforcerowsecurity as forced
           from pg_class c join pg_namespace n on n.oid = c.relnamespace
          where n.nspname = 'public' and c.relkind = 'r'
            and (c.relname = 'tenants' or exists (select 1 from pg_attribute a
                   where a.attrelid = c.oid and a.attname = 'tenant_id' and not a.attisdropped))
          order by 1",
    )
    .load(&mut su)
    .await
    .unwrap();
    assert!(
        tables.len() >= 13,
        "expected the whole data model, got {tables:?}"
    );

    let col = |t: &str| if t == "tenants" { "id" } else { "tenant_id" };
    for t in &tables {
        assert!(
            t.rls && t.forced,
            "{} must ENABLE and FORCE row level security",
            t.name
        );
        for tenant in [a, b] {
            let sql = format!(
                "select count(*) as n from {} where {} = '{tenant}'",
                t.name,
                col(&t.name)
            );
            assert!(
                count(&mut su, &sql).await > 0,
                "fixture missing: no row of {tenant} in {}",
                t.name
            );
        }
    }

    // Now as the application role, the way the server queries.
    let mut conn = diesel_async::AsyncPgConnection::establish(&app.db.url)
        .await
        .unwrap();
    conn.batch_execute(&format!("set role {APP_ROLE}"))
        .await
        .unwrap();
    for t in &tables {
        let (name, c) = (&t.name, col(&t.name));
        let total = format!("select count(*) as n from {name}");
        assert_eq!(
            count(&mut conn, &total).await,
            0,
            "{name}: rows visible with no scope"
        );

        conn.batch_execute(&format!(
            "begin; select set_config('app.tenant_id', '{a}', true)"
        ))
        .await
        .unwrap();
        let own = count(
            &mut conn,
            &format!("select count(*) as n from {name} where {c} = '{a}'"),
        )
        .await;
        let other = count(
            &mut conn,
            &format!("select count(*) as n from {name} where {c} <> '{a}'"),
        )
        .await;
        let b_rows = count(
            &mut conn,
            &format!("select count(*) as n from {name} where {c} = '{b}'"),
        )
        .await;
        conn.batch_execute("commit").await.unwrap();
        assert!(own > 0, "{name}: scope A sees none of A's rows");
        assert_eq!(
            (other, b_rows),
            (0, 0),
            "{name}: scope A sees other tenants' rows"
        );

        // The scope is transaction-local: gone after commit on the same connection.
        assert_eq!(
            count(&mut conn, &total).await,
            0,
            "{name}: scope leaked past the transaction"
        );
    }

    // Writes into another tenant are refused by the policy, not just filtered.
    conn.batch_execute(&format!(
        "begin; select set_config('app.tenant_id', '{a}', true)"
    ))
    .await
    .unwrap();
    let updated = diesel::sql_query(format!(
        "update quotas set used = used + 1 where tenant_id = '{b}'"
    ))
    .execute(&mut conn)
    .await
    .unwrap();
    assert_eq!(updated, 0);
    let insert = conn
        .batch_execute(&format!(
            "insert into quota_alerts (tenant_id, id, resource, threshold, used, \"limit\", period_start)
             values ('{b}', gen_random_uuid(), 'users', 90, 9, 10, now())"
        ))
        .await;
    assert!(
        insert.is_err(),
        "inserting a row for B under scope A must fail"
    );
    conn.batch_execute("rollback").await.unwrap();

    // The explicit platform bypass sees both.
    conn.batch_execute("begin; select set_config('app.bypass_rls', 'on', true)")
        .await
        .unwrap();
    let both = count(
        &mut conn,
        &format!("select count(*) as n from quotas where tenant_id in ('{a}', '{b}')"),
    )
    .await;
    conn.batch_execute("commit").await.unwrap();
    assert!(both > 0);
    let sql = format!("select count(*) as n from quotas where tenant_id in ('{a}', '{b}')");
    assert_eq!(count(&mut su, &sql).await, both);
}
