//! Resource types are catalogue data (issue 14, SPEC §13): the nine of the design are listed,
//! platform admins add more, and an unknown resource is BAD_USER_INPUT naming the known ones
//! on every way in (GraphQL and the internal REST API). A type created on one instance is
//! accepted by another within a second (its cache is dropped through the bus).

use crate::common::{count, within_a_second, TestApp};
use serde_json::{json, Value};

const LIST: &str = "{ resourceTypes { key unit defaultEnforcement description } }";
const CREATE: &str = "mutation($i: CreateResourceTypeInput!) { createResourceType(input: $i) { key unit defaultEnforcement description } }";
const SET_QUOTA: &str = "mutation($t: ID!, $i: SetQuotaInput!) { setQuota(tenantId: $t, input: $i) { resource limit unit enforcement } }";
const RECORD: &str =
    "mutation($r: String!, $a: BigInt!) { recordUsage(resource: $r, amount: $a) { used limit } }";
const SERVICE_TOKEN: &str = "svc-token-for-resource-types";

const NINE: [(&str, &str, &str); 9] = [
    ("ai_interactions", "interactions", "SOFT"),
    ("api_calls", "calls", "SOFT"),
    ("bandwidth", "bytes", "SOFT"),
    ("compute_hours", "hours", "HARD"),
    ("databases", "databases", "HARD"),
    ("email_sends", "emails", "HARD"),
    ("file_uploads", "files", "HARD"),
    ("storage", "bytes", "HARD"),
    ("users", "users", "HARD"),
];

fn gpu_minutes() -> Value {
    json!({ "key": "gpu_minutes", "unit": "minutes", "defaultEnforcement": "SOFT", "description": "GPU time" })
}

/// The message must name every known resource.
fn names_the_known(message: &str, extra: &[&str]) {
    for key in NINE.iter().map(|(k, _, _)| *k).chain(extra.iter().copied()) {
        assert!(message.contains(key), "{key} missing from: {message}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_nine_resource_types_of_the_design_are_listed() {
    let app = TestApp::spawn().await;
    let t = app.tenant().plan("free").create().await;
    // Public like the plans: anonymous callers, tenant users and platform admins see the same.
    for token in [None, Some(&t.member[..]), Some(&app.admin_token()[..])] {
        let resp = app.gql(token, LIST, json!({})).await;
        let listed: Vec<(String, String, String)> = resp.ok()["resourceTypes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                assert!(!r["description"].as_str().unwrap().is_empty(), "{r}");
                (
                    r["key"].as_str().unwrap().to_owned(),
                    r["unit"].as_str().unwrap().to_owned(),
                    r["defaultEnforcement"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        let expected: Vec<_> = NINE
            .iter()
            .map(|(k, u, e)| (k.to_string(), u.to_string(), e.to_string()))
            .collect();
        assert_eq!(listed, expected);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_platform_admin_creates_a_type_that_quotas_and_usage_then_accept() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token();
    let t = app.tenant().plan("starter").create().await;
    // Unknown before it is created.
    app.gql(
        Some(&admin),
        SET_QUOTA,
        json!({ "t": t.id.to_string(), "i": { "resource": "gpu_minutes", "limit": 10 } }),
    )
    .await
    .err("BAD_USER_INPUT");

    let created = app
        .gql(Some(&admin), CREATE, json!({ "i": gpu_minutes() }))
        .await;
    assert_eq!(created.ok()["createResourceType"], gpu_minutes());
    let listed = app.gql(None, LIST, json!({})).await;
    assert!(listed.ok()["resourceTypes"]
        .as_array()
        .unwrap()
        .contains(&gpu_minutes()));

    // A new quota takes the type's unit and default enforcement.
    let quota = app
        .gql(
            Some(&admin),
            SET_QUOTA,
            json!({ "t": t.id.to_string(), "i": { "resource": "gpu_minutes", "limit": 10 } }),
        )
        .await;
    assert_eq!(
        quota.ok()["setQuota"],
        json!({ "resource": "gpu_minutes", "limit": 10, "unit": "minutes", "enforcement": "SOFT" })
    );
    let used = app
        .gql(
            Some(&t.admin),
            RECORD,
            json!({ "r": "gpu_minutes", "a": 4 }),
        )
        .await;
    assert_eq!(used.ok()["recordUsage"], json!({ "used": 4, "limit": 10 }));

    // The same key again: CONFLICT, the first row kept.
    let again = json!({ "key": "gpu_minutes", "unit": "seconds" });
    let e = app.gql(Some(&admin), CREATE, json!({ "i": again })).await;
    assert_eq!(e.err("CONFLICT")["extensions"]["field"], "key");
    let mut db = app.db.superuser().await;
    assert_eq!(count(&mut db, "select count(*) as n from resource_types where key = 'gpu_minutes' and unit = 'minutes'").await, 1);

    // Keys are validated like resources; units and descriptions are bounded.
    for bad in [
        json!({ "key": "GPU", "unit": "minutes" }),
        json!({ "key": "2gpu", "unit": "minutes" }),
        json!({ "key": "gpu-minutes", "unit": "minutes" }),
        json!({ "key": "a".repeat(65), "unit": "minutes" }),
        json!({ "key": "", "unit": "minutes" }),
        json!({ "key": "gpu_seconds", "unit": "" }),
        json!({ "key": "gpu_seconds", "unit": "u".repeat(33) }),
        json!({ "key": "gpu_seconds", "unit": "s", "description": "d".repeat(501) }),
    ] {
        app.gql(Some(&admin), CREATE, json!({ "i": bad }))
            .await
            .err("BAD_USER_INPUT");
    }
    assert_eq!(
        count(&mut db, "select count(*) as n from resource_types").await,
        10
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_users_may_not_create_types_and_nothing_is_written() {
    let app = TestApp::spawn().await;
    let t = app.tenant().plan("enterprise").create().await;
    for token in [&t.admin, &t.member] {
        app.gql(Some(token), CREATE, json!({ "i": gpu_minutes() }))
            .await
            .err("FORBIDDEN");
    }
    app.gql(None, CREATE, json!({ "i": gpu_minutes() }))
        .await
        .err("UNAUTHENTICATED");
    let mut db = app.db.superuser().await;
    assert_eq!(
        count(
            &mut db,
            "select count(*) as n from resource_types where key = 'gpu_minutes'"
        )
        .await,
        0
    );
    assert_eq!(
        count(&mut db, "select count(*) as n from resource_types").await,
        9
    );
    assert_eq!(
        count(
            &mut db,
            "select count(*) as n from audit_logs where entity_type = 'resource_type'"
        )
        .await,
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creating_a_type_is_audited() {
    let app = TestApp::spawn().await;
    app.gql(
        Some(&app.admin_token()),
        CREATE,
        json!({ "i": gpu_minutes() }),
    )
    .await
    .ok();
    let mut db = app.db.superuser().await;
    assert_eq!(
        count(
            &mut db,
            "select count(*) as n from audit_logs where entity_type = 'resource_type' \
             and entity_id = 'gpu_minutes' and action = 'CREATE' and actor_type = 'ADMIN' \
             and tenant_id is null and changes->'after'->>'unit' = 'minutes' \
             and changes->'after'->>'defaultEnforcement' = 'SOFT'"
        )
        .await,
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_resource_is_bad_input_naming_the_known_ones_everywhere() {
    let app = TestApp::spawn_with(|env| {
        env.insert("SERVICE_TOKEN".into(), SERVICE_TOKEN.into());
    })
    .await;
    let admin = app.admin_token();
    let t = app.tenant().plan("professional").create().await;
    app.gql(Some(&admin), CREATE, json!({ "i": gpu_minutes() }))
        .await
        .ok();
    let known = ["gpu_minutes"];

    let e = app
        .gql(
            Some(&admin),
            SET_QUOTA,
            json!({ "t": t.id.to_string(), "i": { "resource": "widgets", "limit": 10 } }),
        )
        .await;
    let e = e.err("BAD_USER_INPUT");
    assert_eq!(e["extensions"]["field"], "resource");
    names_the_known(e["message"].as_str().unwrap(), &known);

    for token in [&t.admin, &t.member] {
        let e = app
            .gql(Some(token), RECORD, json!({ "r": "widgets", "a": 1 }))
            .await;
        names_the_known(e.err("BAD_USER_INPUT")["message"].as_str().unwrap(), &known);
    }

    let resp = app
        .client
        .post(format!("{}/internal/tenants/{}/usage", app.base, t.id))
        .header("x-service-token", SERVICE_TOKEN)
        .json(&json!({ "resource": "widgets", "amount": 1 }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "BAD_USER_INPUT", "{body}");
    names_the_known(body["error"]["message"].as_str().unwrap(), &known);

    // Reads that filter by resource refuse an unknown one the same way.
    for query in [
        "{ checkQuota(resource: \"widgets\") { allowed } }",
        "{ tenant { quota(resource: \"widgets\") { limit } } }",
        "{ tenant { usage(resource: \"widgets\", from: \"2026-01-01T00:00:00Z\", to: \"2026-01-02T00:00:00Z\") { amount } } }",
    ] {
        app.gql(Some(&t.admin), query, json!({}))
            .await
            .err("BAD_USER_INPUT");
    }
    // So does a subscription filtered on one, over the WebSocket.
    let mut ws = crate::common::ws::open(&app, &t.member).await;
    let answer = crate::common::ws::execute(
        &mut ws,
        "alerts",
        "subscription { quotaAlerts(resource: \"widgets\") { threshold } }",
        json!({}),
    )
    .await;
    let error = if answer.is_array() {
        &answer[0]
    } else {
        &answer["errors"][0]
    };
    assert_eq!(error["extensions"]["code"], "BAD_USER_INPUT", "{answer}");
    names_the_known(error["message"].as_str().unwrap(), &known);

    // A known resource without a quota row for the tenant keeps its answers.
    app.gql(
        Some(&t.admin),
        "{ checkQuota(resource: \"databases\") { allowed } }",
        json!({}),
    )
    .await
    .err("NOT_FOUND");
    app.gql(Some(&t.admin), RECORD, json!({ "r": "databases", "a": 1 }))
        .await
        .err("NOT_FOUND");
    let none = app
        .gql(
            Some(&t.admin),
            "{ tenant { quota(resource: \"databases\") { limit } } }",
            json!({}),
        )
        .await;
    assert_eq!(none.ok()["tenant"]["quota"], Value::Null);

    // Nothing was recorded for the unknown name.
    let mut db = app.db.superuser().await;
    assert_eq!(
        count(
            &mut db,
            "select count(*) as n from usage_records where resource = 'widgets'"
        )
        .await,
        0
    );
    assert_eq!(
        count(
            &mut db,
            "select count(*) as n from quotas where resource = 'widgets'"
        )
        .await,
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_type_created_on_one_instance_is_accepted_on_another_within_a_second() {
    let a = TestApp::spawn().await;
    let b = a.second_instance().await;
    let admin = a.admin_token();
    let t = a.tenant().plan("starter").create().await;
    // B has the catalogue in memory, without the new type.
    b.gql(
        Some(&t.admin),
        RECORD,
        json!({ "r": "gpu_minutes", "a": 1 }),
    )
    .await
    .err("BAD_USER_INPUT");

    a.gql(Some(&admin), CREATE, json!({ "i": gpu_minutes() }))
        .await
        .ok();
    let vars = json!({ "t": t.id.to_string(), "i": { "resource": "gpu_minutes", "limit": 100 } });
    within_a_second("the new resource type on instance B", || {
        let (b, admin, vars) = (&b, &admin, vars.clone());
        async move {
            let resp = b.gql(Some(admin), SET_QUOTA, vars).await;
            match resp.code() {
                None => Ok(()),
                Some(code) => Err(code.to_owned()),
            }
        }
    })
    .await;
    let used = b
        .gql(
            Some(&t.admin),
            RECORD,
            json!({ "r": "gpu_minutes", "a": 3 }),
        )
        .await;
    assert_eq!(used.ok()["recordUsage"], json!({ "used": 3, "limit": 100 }));
}
