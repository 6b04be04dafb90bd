//! The tenant lifecycle and input validation, as operators and tenant users see them.

use crate::common::{count, TestApp};
use serde_json::json;

const UPDATE: &str =
    "mutation($id: ID!, $name: String) { updateTenant(id: $id, input: { name: $name }) { name } }";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_suspend_reactivate_delete_restore() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token();
    let t = app.tenant().plan("starter").create().await;
    let id = t.id.to_string();
    let mut db = app.db.superuser().await;

    // Provisioned in the same transaction: the plan's quotas plus the defaults it does not name.
    let resp = app
        .gql(
            Some(&t.member),
            "{ tenant { status plan { slug } quotas { resource limit } } }",
            json!({}),
        )
        .await;
    let tenant = &resp.ok()["tenant"];
    assert_eq!(tenant["status"], "ACTIVE");
    assert_eq!(tenant["plan"]["slug"], "starter");
    let quotas: Vec<(&str, i64)> = tenant["quotas"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| {
            (
                q["resource"].as_str().unwrap(),
                q["limit"].as_i64().unwrap(),
            )
        })
        .collect();
    assert!(quotas.contains(&("users", 10)), "{quotas:?}");
    assert!(quotas.contains(&("api_calls", 10_000)), "{quotas:?}");
    assert!(
        quotas.contains(&("bandwidth", 100 * 1024 * 1024 * 1024)),
        "{quotas:?}"
    );

    // Tenant admins may update their own tenant while it is active.
    let resp = app
        .gql(
            Some(&t.admin),
            UPDATE,
            json!({ "id": id, "name": "Renamed" }),
        )
        .await;
    assert_eq!(resp.ok()["updateTenant"]["name"], "Renamed");

    // Suspend: the reason is kept; reads work, mutations are refused.
    let resp = app
        .gql(
            Some(&admin),
            "mutation($id: ID!) { suspendTenant(id: $id, reason: \"unpaid invoice\") { status suspendReason suspendedAt } }",
            json!({ "id": id }),
        )
        .await;
    let s = &resp.ok()["suspendTenant"];
    assert_eq!(s["status"], "SUSPENDED");
    assert_eq!(s["suspendReason"], "unpaid invoice");
    assert!(s["suspendedAt"].is_string());
    let resp = app
        .gql(
            Some(&t.member),
            "{ tenant { status suspendReason } }",
            json!({}),
        )
        .await;
    assert_eq!(resp.ok()["tenant"]["status"], "SUSPENDED");
    app.gql(
        Some(&t.admin),
        UPDATE,
        json!({ "id": id, "name": "Sneaky" }),
    )
    .await
    .err("TENANT_SUSPENDED");
    let sql = format!("select count(*) as n from tenants where id = '{id}' and name = 'Sneaky'");
    assert_eq!(count(&mut db, &sql).await, 0);
    // Suspending twice is a conflict, not a silent success.
    app.suspend_tenant(&id, "again").await.err("CONFLICT");

    // Reactivate: writes work again.
    let resp = app
        .gql(
            Some(&admin),
            "mutation($id: ID!) { reactivateTenant(id: $id) { status suspendReason } }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(resp.ok()["reactivateTenant"]["status"], "ACTIVE");
    app.gql(Some(&t.admin), UPDATE, json!({ "id": id, "name": "Back" }))
        .await
        .ok();

    // Soft delete: the tenant's users get NOT_FOUND; the row stays, restorable.
    let resp = app
        .gql(
            Some(&admin),
            "mutation($id: ID!) { deleteTenant(id: $id) { status deletedAt } }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(resp.ok()["deleteTenant"]["status"], "DELETED");
    app.gql(Some(&t.member), "{ me { role } }", json!({}))
        .await
        .err("NOT_FOUND");
    app.gql(Some(&t.admin), UPDATE, json!({ "id": id, "name": "Ghost" }))
        .await
        .err("NOT_FOUND");
    let resp = app
        .gql(
            Some(&admin),
            "{ tenants(first: 50) { edges { node { id } } } }",
            json!({}),
        )
        .await;
    assert!(
        !resp.ok().to_string().contains(&id),
        "deleted tenants are not listed by default"
    );
    let resp = app
        .gql(Some(&admin), "{ tenants(first: 50, filter: { status: [DELETED] }) { totalCount edges { node { id } } } }", json!({}))
        .await;
    assert!(resp.ok().to_string().contains(&id));
    assert_eq!(
        count(
            &mut db,
            &format!("select count(*) as n from tenants where id = '{id}'")
        )
        .await,
        1
    );

    // Restore.
    let resp = app
        .gql(
            Some(&admin),
            "mutation($id: ID!) { restoreTenant(id: $id) { status deletedAt } }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(resp.ok()["restoreTenant"]["status"], "ACTIVE");
    assert!(resp.ok()["restoreTenant"]["deletedAt"].is_null());
    let resp = app
        .gql(
            Some(&t.member),
            "{ me { tenant { name status } } }",
            json!({}),
        )
        .await;
    assert_eq!(resp.ok()["me"]["tenant"]["name"], "Back");

    // Every step is in the audit log, with the actor.
    let sql = format!(
        "select count(*) as n from audit_logs where tenant_id = '{id}' and action in
         ('CREATE','UPDATE','SUSPEND','REACTIVATE','DELETE','RESTORE')"
    );
    assert_eq!(count(&mut db, &sql).await, 7);
    let sql = format!(
        "select count(*) as n from audit_logs where tenant_id = '{id}' and action = 'SUSPEND'
         and actor_type = 'ADMIN' and metadata->>'reason' = 'unpaid invoice' and metadata ? 'requestId'"
    );
    assert_eq!(count(&mut db, &sql).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_tenant_older_than_the_window_cannot_be_restored() {
    let app = TestApp::spawn().await;
    let t = app.tenant().create().await;
    let id = t.id.to_string();
    app.delete_tenant(&id).await.ok();
    let mut db = app.db.superuser().await;
    use diesel_async::SimpleAsyncConnection;
    db.batch_execute(&format!(
        "update tenants set deleted_at = now() - interval '31 days' where id = '{id}'"
    ))
    .await
    .unwrap();
    app.restore_tenant(&id).await.err("CONFLICT");
    // Restoring a tenant that is not deleted is a conflict too.
    let other = app.tenant().create().await;
    app.restore_tenant(other.id).await.err("CONFLICT");
}

const CREATE: &str = "mutation($input: CreateTenantInput!) { createTenant(input: $input) { id } }";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_with_a_field_hint_and_nothing_written() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token();
    app.tenant()
        .slug("taken")
        .domain("taken.example.com")
        .create()
        .await;
    let mut db = app.db.superuser().await;
    let before = count(&mut db, "select count(*) as n from tenants").await;
    let audits = count(&mut db, "select count(*) as n from audit_logs").await;

    let cases = [
        (
            json!({ "name": "Ok", "slug": "Not Valid!" }),
            "BAD_USER_INPUT",
            "slug",
        ),
        (
            json!({ "name": "Ok", "slug": "-leading" }),
            "BAD_USER_INPUT",
            "slug",
        ),
        (
            json!({ "name": "Ok", "slug": "x".repeat(51) }),
            "BAD_USER_INPUT",
            "slug",
        ),
        (json!({ "name": "Ok", "slug": "taken" }), "CONFLICT", "slug"),
        (
            json!({ "name": "Ok", "slug": "fresh-1", "domain": "TAKEN.example.com" }),
            "CONFLICT",
            "domain",
        ),
        (
            json!({ "name": "n".repeat(101), "slug": "fresh-2" }),
            "BAD_USER_INPUT",
            "name",
        ),
        (
            json!({ "name": "   ", "slug": "fresh-3" }),
            "BAD_USER_INPUT",
            "name",
        ),
        (
            json!({ "name": "Ok", "slug": "fresh-4", "planSlug": "platinum" }),
            "BAD_USER_INPUT",
            "planSlug",
        ),
        (
            json!({ "name": "Ok", "slug": "fresh-5", "domain": "not a domain" }),
            "BAD_USER_INPUT",
            "domain",
        ),
        (
            json!({ "name": "Ok", "slug": "fresh-6", "region": "MARS" }),
            "BAD_USER_INPUT",
            "region",
        ),
    ];
    for (input, code, field) in cases {
        let resp = app
            .gql(Some(&admin), CREATE, json!({ "input": input }))
            .await;
        let err = resp.err(code);
        assert_eq!(err["extensions"]["field"], field, "{input}: {err}");
        assert!(resp.body["data"].is_null(), "{}", resp.body);
    }
    assert_eq!(
        count(&mut db, "select count(*) as n from tenants").await,
        before
    );
    assert_eq!(
        count(&mut db, "select count(*) as n from audit_logs").await,
        audits
    );
    assert_eq!(
        count(
            &mut db,
            "select count(*) as n from quotas where tenant_id not in (select id from tenants)"
        )
        .await,
        0
    );

    // Updates validate too, and a bad id is a clear error.
    let t = app.tenant().create().await;
    let resp = app
        .gql(
            Some(&t.admin),
            "mutation($id: ID!) { updateTenant(id: $id, input: { settings: [1] }) { id } }",
            json!({ "id": t.id.to_string() }),
        )
        .await;
    assert_eq!(
        resp.err("BAD_USER_INPUT")["extensions"]["field"],
        "settings"
    );
    app.gql(
        Some(&admin),
        "mutation { suspendTenant(id: \"nope\", reason: \"x\") { id } }",
        json!({}),
    )
    .await
    .err("BAD_USER_INPUT");
    app.gql(
        Some(&admin),
        "mutation($id: ID!) { suspendTenant(id: $id, reason: \"  \") { id } }",
        json!({ "id": t.id.to_string() }),
    )
    .await
    .err("BAD_USER_INPUT");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_are_a_relay_connection() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token();
    let mut made = Vec::new();
    for i in 0..5 {
        made.push(
            app.tenant()
                .slug(&format!("page-{i}"))
                .plan(if i % 2 == 0 { "free" } else { "starter" })
                .create()
                .await
                .id,
        );
    }
    let q =
        "query($after: String, $f: TenantFilter) { tenants(first: 2, after: $after, filter: $f) {
        totalCount edges { cursor node { id slug } } pageInfo { hasNextPage endCursor } } }";
    let mut after = serde_json::Value::Null;
    let mut seen = Vec::new();
    loop {
        let resp = app
            .gql(
                Some(&admin),
                q,
                json!({ "after": after, "f": { "search": "page-" } }),
            )
            .await;
        let conn = &resp.ok()["tenants"];
        assert_eq!(conn["totalCount"], 5);
        for e in conn["edges"].as_array().unwrap() {
            seen.push(e["node"]["id"].as_str().unwrap().to_owned());
        }
        if !conn["pageInfo"]["hasNextPage"].as_bool().unwrap() {
            break;
        }
        after = conn["pageInfo"]["endCursor"].clone();
    }
    let expected: Vec<String> = made.iter().map(|u| u.to_string()).collect();
    assert_eq!(seen, expected, "every tenant once, in creation order");

    let resp = app
        .gql(
            Some(&admin),
            q,
            json!({ "f": { "planSlug": "starter", "search": "page-" } }),
        )
        .await;
    assert_eq!(resp.ok()["tenants"]["totalCount"], 2);
    // The count is asked for through a fragment (and an inline fragment): still counted.
    let frag = "query($f: TenantFilter) { tenants(first: 1, filter: $f) { ...C } }
        fragment C on TenantConnection { ... on TenantConnection { totalCount } }";
    let resp = app
        .gql(Some(&admin), frag, json!({ "f": { "search": "page-" } }))
        .await;
    assert_eq!(resp.ok()["tenants"]["totalCount"], 5);
    app.gql(
        Some(&admin),
        "{ tenants(first: 1000) { totalCount } }",
        json!({}),
    )
    .await
    .err("BAD_USER_INPUT");
    app.gql(
        Some(&admin),
        "{ tenants(first: 1, after: \"garbage\") { totalCount } }",
        json!({}),
    )
    .await
    .err("BAD_USER_INPUT");
}
