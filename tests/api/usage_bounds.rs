//! Usage is bounded: the amount of one call (`USAGE_MAX_AMOUNT`), what tenant members may do
//! with SOFT quotas (`USAGE_MEMBER_SOFT_POLICY`), the plan's overage ceiling (exact under
//! concurrency, like HARD limits), and idempotency keys that belong to one resource. Every
//! refusal records nothing.

use std::sync::Arc;

use crate::common::{count, TestApp, TestTenant};
use serde_json::{json, Value};

const TOKEN: &str = "svc-token-for-usage-bounds";
const RECORD: &str = "mutation($r: String!, $a: BigInt!, $k: String) {
  recordUsage(resource: $r, amount: $a, idempotencyKey: $k) { used limit overage duplicate } }";
const SET_QUOTA: &str =
    "mutation($t: ID!, $i: SetQuotaInput!) { setQuota(tenantId: $t, input: $i) { resource } }";

async fn spawn(extra: &[(&str, &str)]) -> TestApp {
    let extra: Vec<(String, String)> = extra
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    TestApp::spawn_with(|env| {
        env.insert("SERVICE_TOKEN".into(), TOKEN.into());
        env.extend(extra);
    })
    .await
}

/// `api_calls` as a SOFT quota of `limit` for this tenant.
async fn soft_quota(app: &TestApp, t: &TestTenant, limit: i64) {
    app.gql(
        Some(&app.admin_token()),
        SET_QUOTA,
        json!({ "t": t.id, "i": { "resource": "api_calls", "limit": limit, "enforcement": "SOFT", "resetPeriod": "MONTHLY" } }),
    )
    .await
    .ok();
}

async fn rest(app: &TestApp, t: &TestTenant, body: Value) -> (u16, Value) {
    let resp = app
        .post_json(
            &format!("/internal/tenants/{}/usage", t.id),
            None,
            &[("x-service-token", TOKEN)],
            &body,
        )
        .await;
    (resp.status, resp.body)
}

/// (quota used, usage records) of a resource, read from the database.
async fn stored(app: &TestApp, t: &TestTenant, resource: &str) -> (i64, i64) {
    let mut c = app.db.superuser().await;
    let id = t.id;
    (
        count(&mut c, &format!("select used as n from quotas where tenant_id = '{id}' and resource = '{resource}'")).await,
        count(&mut c, &format!("select count(*) as n from usage_records where tenant_id = '{id}' and resource = '{resource}'")).await,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_call_carries_at_most_usage_max_amount() {
    let app = spawn(&[("USAGE_MAX_AMOUNT", "1000")]).await;
    let t = app.tenant().plan("professional").create().await;
    for amount in [1001_i64, 0, -1, 1_000_000_000_000] {
        let resp = app
            .gql(
                Some(&t.admin),
                RECORD,
                json!({ "r": "api_calls", "a": amount }),
            )
            .await;
        let e = resp.err("BAD_USER_INPUT");
        if amount > 0 {
            assert!(
                e["message"].as_str().unwrap().contains("USAGE_MAX_AMOUNT"),
                "{e}"
            );
        }
        let (status, body) = rest(
            &app,
            &t,
            json!({ "resource": "api_calls", "amount": amount }),
        )
        .await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (400, Some("BAD_USER_INPUT"))
        );
    }
    assert_eq!(stored(&app, &t, "api_calls").await, (0, 0));
    let resp = app
        .gql(
            Some(&t.admin),
            RECORD,
            json!({ "r": "api_calls", "a": 1000 }),
        )
        .await;
    assert_eq!(resp.ok()["recordUsage"]["used"], 1000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_stay_within_soft_limits_by_default() {
    let app = spawn(&[]).await;
    let t = app.tenant().plan("starter").create().await;
    soft_quota(&app, &t, 10).await;
    let record = |token: String, amount: i64| {
        let app = &app;
        async move {
            app.gql(
                Some(&token),
                RECORD,
                json!({ "r": "api_calls", "a": amount }),
            )
            .await
        }
    };
    record(t.member.clone(), 8).await.ok();
    let resp = record(t.member.clone(), 3).await;
    let ext = &resp.err("QUOTA_EXCEEDED")["extensions"];
    assert_eq!(
        (ext["limit"].as_i64(), ext["used"].as_i64()),
        (Some(10), Some(8))
    );
    assert_eq!(stored(&app, &t, "api_calls").await, (8, 1));
    let check =
        "query($a: BigInt!) { checkQuota(resource: \"api_calls\", amount: $a) { allowed } }";
    let resp = app.gql(Some(&t.member), check, json!({ "a": 3 })).await;
    assert_eq!(resp.ok()["checkQuota"]["allowed"], false);
    let resp = app.gql(Some(&t.admin), check, json!({ "a": 3 })).await;
    assert_eq!(resp.ok()["checkQuota"]["allowed"], true);
    // Up to the limit is fine; past it only for admins and services.
    assert_eq!(
        record(t.member.clone(), 2).await.ok()["recordUsage"]["used"],
        10
    );
    record(t.member.clone(), 1).await.err("QUOTA_EXCEEDED");
    let resp = record(t.admin.clone(), 3).await;
    assert_eq!(resp.ok()["recordUsage"]["overage"], 3);
    let (status, body) = rest(&app, &t, json!({ "resource": "api_calls", "amount": 2 })).await;
    assert_eq!((status, body["overage"].as_i64()), (200, Some(5)));
    assert_eq!(stored(&app, &t, "api_calls").await, (15, 4));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn member_soft_policy_deny_and_allow() {
    let app = spawn(&[("USAGE_MEMBER_SOFT_POLICY", "deny")]).await;
    let t = app.tenant().plan("starter").create().await;
    soft_quota(&app, &t, 10).await;
    app.gql(Some(&t.member), RECORD, json!({ "r": "api_calls", "a": 1 }))
        .await
        .err("FORBIDDEN");
    app.gql(Some(&t.member), RECORD, json!({ "r": "users", "a": 1 }))
        .await
        .err("FORBIDDEN");
    assert_eq!(stored(&app, &t, "api_calls").await, (0, 0));
    app.gql(Some(&t.admin), RECORD, json!({ "r": "api_calls", "a": 12 }))
        .await
        .ok();
    assert_eq!(stored(&app, &t, "api_calls").await, (12, 1));
    drop(app);

    let app = spawn(&[("USAGE_MEMBER_SOFT_POLICY", "allow")]).await;
    let t = app.tenant().plan("starter").create().await;
    soft_quota(&app, &t, 10).await;
    let resp = app
        .gql(
            Some(&t.member),
            RECORD,
            json!({ "r": "api_calls", "a": 12 }),
        )
        .await;
    assert_eq!(resp.ok()["recordUsage"]["overage"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_plan_overage_ceiling_holds_exactly_under_concurrency() {
    let app = Arc::new(spawn(&[]).await);
    let mut c = app.db.superuser().await;
    count(&mut c, "with u as (update plans set overage_limit_percent = 50 where slug = 'professional' returning 1) select count(*) as n from u").await;
    let resp = app
        .gql(None, "{ plans { slug overageLimitPercent } }", json!({}))
        .await;
    let plans = resp.ok()["plans"].as_array().unwrap().clone();
    assert!(plans.contains(&json!({ "slug": "professional", "overageLimitPercent": 50 })));
    assert!(plans.contains(&json!({ "slug": "starter", "overageLimitPercent": 100 })));

    let t = Arc::new(app.tenant().plan("professional").create().await);
    soft_quota(&app, &t, 100).await;
    // 32 writers, half over GraphQL as the tenant admin, half through the internal API:
    // 320 attempts of 1 against a ceiling of 150.
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..32 {
        let (app, t) = (app.clone(), t.clone());
        tasks.spawn(async move {
            let (mut ok, mut refused) = (0, 0);
            for _ in 0..10 {
                let code = if w % 2 == 0 {
                    let resp = app
                        .gql(Some(&t.admin), RECORD, json!({ "r": "api_calls", "a": 1 }))
                        .await;
                    resp.code().map(str::to_owned)
                } else {
                    let (status, body) =
                        rest(&app, &t, json!({ "resource": "api_calls", "amount": 1 })).await;
                    (status != 200).then(|| body["error"]["code"].as_str().unwrap().to_owned())
                };
                match code.as_deref() {
                    None => ok += 1,
                    Some("QUOTA_EXCEEDED") => refused += 1,
                    other => panic!("unexpected {other:?}"),
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
    assert_eq!((ok, refused), (150, 170));
    assert_eq!(stored(&app, &t, "api_calls").await, (150, 150));
    let resp = app
        .gql(Some(&t.admin), RECORD, json!({ "r": "api_calls", "a": 1 }))
        .await;
    resp.err("QUOTA_EXCEEDED");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotency_key_belongs_to_one_resource() {
    let app = spawn(&[]).await;
    let t = app.tenant().plan("starter").create().await;
    let resp = app
        .gql(
            Some(&t.admin),
            RECORD,
            json!({ "r": "api_calls", "a": 5, "k": "key-1" }),
        )
        .await;
    assert_eq!(resp.ok()["recordUsage"]["duplicate"], false);
    let resp = app
        .gql(
            Some(&t.admin),
            RECORD,
            json!({ "r": "storage", "a": 7, "k": "key-1" }),
        )
        .await;
    let e = resp.err("BAD_USER_INPUT");
    assert!(
        e["message"].as_str().unwrap().contains("another resource"),
        "{e}"
    );
    let (status, body) = rest(
        &app,
        &t,
        json!({ "resource": "storage", "amount": 7, "idempotencyKey": "key-1" }),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("BAD_USER_INPUT")),
        "{body}"
    );
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("another resource"));
    assert_eq!(stored(&app, &t, "storage").await, (0, 0));
    // On its own resource the key still answers the first result.
    let (status, body) = rest(
        &app,
        &t,
        json!({ "resource": "api_calls", "amount": 5, "idempotencyKey": "key-1" }),
    )
    .await;
    assert_eq!(
        (status, body["used"].as_i64(), body["duplicate"].as_bool()),
        (200, Some(5), Some(true))
    );
    assert_eq!(stored(&app, &t, "api_calls").await, (5, 1));
}
