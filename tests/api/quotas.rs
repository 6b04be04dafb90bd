//! Quotas and the metering hot path: exact totals under races, idempotency, alerts once per
//! threshold, periods, and isolation.

use std::sync::Arc;

use crate::common::{count, TestApp};
use serde_json::json;

const RECORD: &str = "mutation($r: String!, $a: BigInt!, $k: String) {
  recordUsage(resource: $r, amount: $a, idempotencyKey: $k) { allowed used limit remaining overage duplicate } }";
const SET_QUOTA: &str = "mutation($t: ID!, $i: SetQuotaInput!) { setQuota(tenantId: $t, input: $i) { resource limit used enforcement alertThresholds } }";

async fn set_quota(app: &TestApp, tenant: uuid::Uuid, input: serde_json::Value) {
    app.gql(
        Some(&app.admin_token()),
        SET_QUOTA,
        json!({ "t": tenant.to_string(), "i": input }),
    )
    .await
    .ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hard_limit_admits_exactly_its_limit_under_64_concurrent_writers() {
    let app = Arc::new(TestApp::spawn().await);
    let t = app.tenant().plan("enterprise").create().await;
    set_quota(&app, t.id, json!({ "resource": "api_calls", "limit": 1000, "enforcement": "HARD", "resetPeriod": "MONTHLY" })).await;

    let token = Arc::new(t.member.clone());
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..64 {
        let (app, token) = (app.clone(), token.clone());
        tasks.spawn(async move {
            let (mut ok, mut refused) = (0u32, 0u32);
            // 3,000 attempts in all: 64 writers × ~47.
            for _ in 0..47 {
                let resp = app
                    .gql(Some(&token), RECORD, json!({ "r": "api_calls", "a": 1 }))
                    .await;
                match resp.code() {
                    None => ok += 1,
                    Some("QUOTA_EXCEEDED") => {
                        let ext = &resp.body["errors"][0]["extensions"];
                        assert_eq!(ext["limit"], 1000);
                        assert!(ext["used"].as_i64().unwrap() <= 1000);
                        refused += 1
                    }
                    other => panic!("unexpected {other:?}: {}", resp.body),
                }
            }
            (ok, refused)
        });
    }
    let (mut ok, mut refused) = (0, 0);
    while let Some(r) = tasks.join_next().await {
        let (a, b) = r.unwrap();
        ok += a;
        refused += b;
    }
    assert_eq!(ok + refused, 64 * 47);
    assert_eq!(ok, 1000, "accepted");
    assert_eq!(refused, 64 * 47 - 1000, "QUOTA_EXCEEDED");
    let mut db = app.db.superuser().await;
    let tid = t.id;
    assert_eq!(
        count(
            &mut db,
            &format!(
                "select used as n from quotas where tenant_id = '{tid}' and resource = 'api_calls'"
            )
        )
        .await,
        1000
    );
    assert_eq!(
        count(
            &mut db,
            &format!("select count(*) as n from usage_records where tenant_id = '{tid}'")
        )
        .await,
        1000
    );
    assert_eq!(count(&mut db, &format!("select coalesce(sum(amount), 0)::bigint as n from usage_hourly where tenant_id = '{tid}'")).await, 1000);
    // Each threshold fired exactly once.
    for threshold in [75, 90, 95, 100] {
        let sql = format!("select count(*) as n from quota_alerts where tenant_id = '{tid}' and threshold = {threshold}");
        assert_eq!(count(&mut db, &sql).await, 1, "threshold {threshold}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_idempotency_key_counts_once_and_answers_the_same() {
    let app = Arc::new(TestApp::spawn().await);
    let t = app.tenant().plan("starter").create().await;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let (app, token) = (app.clone(), t.member.clone());
        tasks.spawn(async move {
            let resp = app
                .gql(
                    Some(&token),
                    RECORD,
                    json!({ "r": "api_calls", "a": 5, "k": "evt-42" }),
                )
                .await;
            let mut d = resp.ok()["recordUsage"].clone();
            d.as_object_mut().unwrap().remove("duplicate");
            d
        });
    }
    let mut answers = Vec::new();
    while let Some(r) = tasks.join_next().await {
        answers.push(r.unwrap());
    }
    assert!(answers.iter().all(|a| *a == answers[0]), "{answers:?}");
    assert_eq!(answers[0]["used"], 5);
    let mut db = app.db.superuser().await;
    let tid = t.id;
    assert_eq!(
        count(
            &mut db,
            &format!(
                "select used as n from quotas where tenant_id = '{tid}' and resource = 'api_calls'"
            )
        )
        .await,
        5
    );
    assert_eq!(
        count(
            &mut db,
            &format!("select count(*) as n from usage_records where tenant_id = '{tid}'")
        )
        .await,
        1
    );
    // The same key in another tenant is another key.
    let other = app.tenant().plan("starter").create().await;
    let resp = app
        .gql(
            Some(&other.member),
            RECORD,
            json!({ "r": "api_calls", "a": 1, "k": "evt-42" }),
        )
        .await;
    assert_eq!(resp.ok()["recordUsage"]["used"], 1);
    assert_eq!(resp.ok()["recordUsage"]["duplicate"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_record_nothing_and_soft_quotas_report_overage() {
    let app = TestApp::spawn().await;
    let t = app.tenant().plan("free").create().await;
    set_quota(&app, t.id, json!({ "resource": "email_sends", "limit": 10, "enforcement": "HARD", "resetPeriod": "DAILY" })).await;
    app.gql(
        Some(&t.member),
        RECORD,
        json!({ "r": "email_sends", "a": 8 }),
    )
    .await
    .ok();
    let resp = app
        .gql(
            Some(&t.member),
            RECORD,
            json!({ "r": "email_sends", "a": 3 }),
        )
        .await;
    let ext = &resp.err("QUOTA_EXCEEDED")["extensions"];
    assert_eq!(
        (
            ext["limit"].as_i64(),
            ext["used"].as_i64(),
            ext["remaining"].as_i64()
        ),
        (Some(10), Some(8), Some(2))
    );
    let resp = app
        .gql(
            Some(&t.member),
            "{ checkQuota(resource: \"email_sends\", amount: 3) { allowed used limit remaining } }",
            json!({}),
        )
        .await;
    assert_eq!(
        resp.ok()["checkQuota"],
        json!({ "allowed": false, "used": 8, "limit": 10, "remaining": 2 })
    );
    let resp = app
        .gql(
            Some(&t.member),
            "{ checkQuota(resource: \"email_sends\", amount: 2) { allowed } }",
            json!({}),
        )
        .await;
    assert_eq!(resp.ok()["checkQuota"]["allowed"], true);

    set_quota(&app, t.id, json!({ "resource": "ai_interactions", "limit": 2, "enforcement": "SOFT", "resetPeriod": "MONTHLY" })).await;
    // Tenant admins (not members, by default) may go into overage, up to the plan's ceiling.
    let resp = app
        .gql(
            Some(&t.admin),
            RECORD,
            json!({ "r": "ai_interactions", "a": 4 }),
        )
        .await;
    assert_eq!(resp.ok()["recordUsage"]["overage"], 2);
    assert_eq!(resp.ok()["recordUsage"]["remaining"], 0);

    app.gql(
        Some(&t.member),
        RECORD,
        json!({ "r": "unknown_thing", "a": 1 }),
    )
    .await
    .err("BAD_USER_INPUT");
    // A known resource the tenant has no quota for.
    app.gql(
        Some(&t.member),
        RECORD,
        json!({ "r": "file_uploads", "a": 1 }),
    )
    .await
    .err("NOT_FOUND");
    app.gql(
        Some(&t.member),
        RECORD,
        json!({ "r": "email_sends", "a": 0 }),
    )
    .await
    .err("BAD_USER_INPUT");
    app.gql(
        Some(&t.member),
        RECORD,
        json!({ "r": "email_sends", "a": -4 }),
    )
    .await
    .err("BAD_USER_INPUT");
    let mut db = app.db.superuser().await;
    let tid = t.id;
    assert_eq!(count(&mut db, &format!("select count(*) as n from usage_records where tenant_id = '{tid}' and resource = 'email_sends'")).await, 1);
    // Members cannot change quotas.
    app.gql(
        Some(&t.admin),
        SET_QUOTA,
        json!({ "t": tid.to_string(), "i": { "resource": "email_sends", "limit": 99999 } }),
    )
    .await
    .err("FORBIDDEN");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_period_starts_from_zero_and_keeps_history() {
    let app = TestApp::spawn().await;
    let t = app.tenant().plan("professional").create().await;
    set_quota(
        &app,
        t.id,
        json!({ "resource": "compute_hours", "limit": 10, "resetPeriod": "DAILY" }),
    )
    .await;
    app.gql(
        Some(&t.member),
        RECORD,
        json!({ "r": "compute_hours", "a": 10 }),
    )
    .await
    .ok();
    app.gql(
        Some(&t.member),
        RECORD,
        json!({ "r": "compute_hours", "a": 1 }),
    )
    .await
    .err("QUOTA_EXCEEDED");
    // Pretend the day is over: the stored period started yesterday.
    use diesel_async::SimpleAsyncConnection;
    let mut db = app.db.superuser().await;
    let tid = t.id;
    db.batch_execute(&format!(
        "update quotas set period_start = period_start - interval '1 day' where tenant_id = '{tid}' and resource = 'compute_hours';
         update usage_records set recorded_at = recorded_at - interval '1 day' where tenant_id = '{tid}';
         update usage_hourly set hour_start = hour_start - interval '1 day' where tenant_id = '{tid}'"
    ))
    .await
    .unwrap();
    let resp = app
        .gql(
            Some(&t.member),
            "{ tenant { quota(resource: \"compute_hours\") { used remaining } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        resp.ok()["tenant"]["quota"],
        json!({ "used": 0, "remaining": 10 })
    );
    let resp = app
        .gql(
            Some(&t.member),
            RECORD,
            json!({ "r": "compute_hours", "a": 4 }),
        )
        .await;
    assert_eq!(resp.ok()["recordUsage"]["used"], 4);
    // History is kept and queryable (professional has advanced_analytics).
    let from = (chrono::Utc::now() - chrono::Duration::days(3)).to_rfc3339();
    let to = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let resp = app
        .gql(
            Some(&t.member),
            "query($f: DateTime!, $t: DateTime!) { tenant { usage(resource: \"compute_hours\", from: $f, to: $t, granularity: DAY) { amount } } }",
            json!({ "f": from, "t": to }),
        )
        .await;
    let points: Vec<i64> = resp.ok()["tenant"]["usage"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["amount"].as_i64().unwrap())
        .collect();
    assert_eq!(points, vec![10, 4]);
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
async fn another_tenants_usage_quotas_and_alerts_are_unreachable() {
    let app = TestApp::spawn().await;
    let a = app.tenant().plan("professional").create().await;
    let b = app.tenant().plan("professional").create().await;
    app.gql(Some(&b.member), RECORD, json!({ "r": "users", "a": 80 }))
        .await
        .ok(); // B crosses 75 %
    let b_id = b.id.to_string();
    let from = (chrono::Utc::now() - chrono::Duration::days(1)).to_rfc3339();
    let to = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let reads = [
        "query($t: ID) { tenant(id: $t) { quotas { used } } }",
        "query($t: ID) { tenant(id: $t) { quota(resource: \"users\") { used } } }",
        "query($t: ID) { tenant(id: $t) { quotaAlerts(first: 5) { edges { node { threshold } } } } }",
    ];
    for q in reads {
        let resp = app.gql(Some(&a.admin), q, json!({ "t": b_id })).await;
        resp.err("NOT_FOUND");
        assert!(
            !resp.body.to_string().contains("\"used\":80"),
            "{}",
            resp.body
        );
    }
    let resp = app
        .gql(
            Some(&a.admin),
            "query($t: ID, $f: DateTime!, $to: DateTime!) { tenant(id: $t) { usage(resource: \"users\", from: $f, to: $to) { amount } } }",
            json!({ "t": b_id, "f": from, "to": to }),
        )
        .await;
    resp.err("NOT_FOUND");
    // recordUsage/checkQuota act on the caller's tenant only; B is unchanged.
    app.gql(Some(&a.member), RECORD, json!({ "r": "users", "a": 1 }))
        .await
        .ok();
    let resp = app
        .gql_with(
            Some(&a.member),
            &[("x-tenant-id", &b_id)],
            RECORD,
            json!({ "r": "users", "a": 1 }),
        )
        .await;
    resp.err("FORBIDDEN");
    let mut db = app.db.superuser().await;
    let sql =
        format!("select used as n from quotas where tenant_id = '{b_id}' and resource = 'users'");
    assert_eq!(count(&mut db, &sql).await, 80);
    // A sees only its own alerts.
    let resp = app
        .gql(
            Some(&a.admin),
            "{ tenant { quotaAlerts(first: 10) { edges { node { tenantId } } } } }",
            json!({}),
        )
        .await;
    assert_eq!(resp.ok()["tenant"]["quotaAlerts"]["edges"], json!([]));
    let resp = app
        .gql(
            Some(&b.admin),
            "{ tenant { quotaAlerts(first: 10) { edges { node { tenantId threshold } } } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        resp.ok()["tenant"]["quotaAlerts"]["edges"][0]["node"],
        json!({ "tenantId": b_id, "threshold": 75 })
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_key_through_two_instances_at_once_counts_once() {
    let a = Arc::new(TestApp::spawn().await);
    let b = Arc::new(a.second_instance().await);
    let t = a.tenant().plan("starter").create().await;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..24 {
        let app = if i % 2 == 0 { a.clone() } else { b.clone() };
        let token = t.member.clone();
        tasks.spawn(async move {
            let resp = app
                .gql(
                    Some(&token),
                    RECORD,
                    json!({ "r": "api_calls", "a": 3, "k": "shared-key" }),
                )
                .await;
            let mut d = resp.ok()["recordUsage"].clone();
            d.as_object_mut().unwrap().remove("duplicate");
            d
        });
    }
    let mut answers = Vec::new();
    while let Some(r) = tasks.join_next().await {
        answers.push(r.unwrap());
    }
    assert!(answers.iter().all(|x| *x == answers[0]), "{answers:?}");
    let mut db = a.db.superuser().await;
    let tid = t.id;
    assert_eq!(
        count(
            &mut db,
            &format!(
                "select used as n from quotas where tenant_id = '{tid}' and resource = 'api_calls'"
            )
        )
        .await,
        3
    );
    assert_eq!(
        count(
            &mut db,
            &format!("select count(*) as n from usage_records where tenant_id = '{tid}'")
        )
        .await,
        1
    );
}
