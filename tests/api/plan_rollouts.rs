//! A plan's features and quotas are catalogue data that reach the plan's tenants (issue 14;
//! SPEC §13 `setPlanFeature`, `setPlanQuota`): a quota change walks 1,000 tenants in batches,
//! keeps the quotas set for one tenant, writes one audit row with the number of tenants it
//! changes, and shows on a second instance as soon as it is done; an interrupted rollout is
//! finished by the `plan-rollouts` job; tenant users may change nothing.

use serde_json::{json, Value};
use tenantry::auth::{Actor, Role};
use tenantry::jobs::{run_once, Job};
use uuid::Uuid;

use crate::common::{count, within_a_second, TestApp};

const SET_PLAN_QUOTA: &str = "mutation($p: String!, $i: SetQuotaInput!) {
    setPlanQuota(planSlug: $p, input: $i) {
        plan { slug quotas { resource limit unit resetPeriod enforcement } }
        quota { resource limit unit resetPeriod enforcement }
        rollout { id resource status tenantsAffected tenantsUpdated finishedAt plan { slug } } } }";
const SET_PLAN_FEATURE: &str = "mutation($p: String!, $k: String!, $e: Boolean!) {
    setPlanFeature(planSlug: $p, key: $k, enabled: $e) { slug features } }";
const SET_QUOTA: &str = "mutation($t: ID!, $i: SetQuotaInput!) {
    setQuota(tenantId: $t, input: $i) { limit overridden } }";
const TENANT_QUOTA: &str = "query($t: ID!, $r: String!) {
    tenant(id: $t) { quota(resource: $r) { limit used resetPeriod overridden } } }";

async fn create_plan(app: &TestApp, slug: &str) {
    app.gql(
        Some(&app.admin_token()),
        "mutation($i: CreatePlanInput!) { createPlan(input: $i) { slug } }",
        json!({ "i": { "slug": slug, "name": slug, "rateLimitPerMinute": 600 } }),
    )
    .await
    .ok();
}

async fn set_plan_quota(app: &TestApp, plan: &str, input: Value) -> Value {
    let resp = app
        .gql(
            Some(&app.admin_token()),
            SET_PLAN_QUOTA,
            json!({ "p": plan, "i": input }),
        )
        .await;
    resp.ok()["setPlanQuota"].clone()
}

/// `n` tenants on `plan`, made set-based as `tenantry seed --tenants` does; their ids.
async fn tenants_on(app: &TestApp, plan: &str, n: usize) -> Vec<Uuid> {
    let prefix = &Uuid::new_v4().simple().to_string()[..8];
    let specs: Vec<_> = (0..n)
        .map(|i| tenantry::tenants::bulk::Spec {
            name: format!("Bulk {i}"),
            slug: format!("b{prefix}-{i:05}"),
            plan_slug: plan.into(),
        })
        .collect();
    tenantry::tenants::bulk::create(&app.app.db, &Actor::system(), &specs)
        .await
        .unwrap();
    let mut c = app.db.superuser().await;
    let sql = format!("select count(*) as n from tenants where slug like 'b{prefix}-%'");
    assert_eq!(count(&mut c, &sql).await, n as i64);
    use diesel_async::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = diesel::sql_types::Uuid)]
        id: Uuid,
    }
    let rows: Vec<Row> = diesel::sql_query(format!(
        "select id from tenants where slug like 'b{prefix}-%' order by slug"
    ))
    .load(&mut c)
    .await
    .unwrap();
    rows.into_iter().map(|r| r.id).collect()
}

async fn quota_of(app: &TestApp, tenant: Uuid, resource: &str) -> Value {
    app.gql(
        Some(&app.admin_token()),
        TENANT_QUOTA,
        json!({ "t": tenant, "r": resource }),
    )
    .await
    .ok()["tenant"]["quota"]
        .clone()
}

/// What a move to `bulk` would make the caller's `api_calls` limit, per `previewPlanChange`.
async fn api_calls_to(app: &TestApp, token: &str) -> Option<Value> {
    let preview = "{ previewPlanChange(planSlug: \"bulk\") { quotaChanges { resource to } } }";
    let p = app.gql(Some(token), preview, json!({})).await;
    p.ok()["previewPlanChange"]["quotaChanges"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["resource"] == "api_calls")
        .map(|c| c["to"].clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raising_a_plan_quota_reaches_its_thousand_tenants_keeps_overrides_and_shows_on_a_second_instance(
) {
    let app = TestApp::spawn().await;
    let b = app.second_instance().await;
    let admin = app.admin_token();
    create_plan(&app, "bulk").await;
    let first = set_plan_quota(
        &app,
        "bulk",
        json!({ "resource": "api_calls", "limit": 1000, "resetPeriod": "MONTHLY" }),
    )
    .await;
    // A plan without tenants: done at once, nobody changed; the type's unit and enforcement.
    assert_eq!(
        first["quota"],
        json!({ "resource": "api_calls", "limit": 1000, "unit": "calls",
            "resetPeriod": "MONTHLY", "enforcement": "SOFT" })
    );
    assert_eq!(first["rollout"]["status"], "DONE");
    assert_eq!(first["rollout"]["tenantsAffected"], 0);

    let ids = tenants_on(&app, "bulk", 1_000).await;
    let overridden = [ids[0], ids[500], ids[999]];
    for t in overridden {
        let set = app
            .gql(
                Some(&admin),
                SET_QUOTA,
                json!({ "t": t, "i": { "resource": "api_calls", "limit": 5 } }),
            )
            .await;
        assert_eq!(
            set.ok()["setQuota"],
            json!({ "limit": 5, "overridden": true })
        );
    }
    // Usage is kept through the change.
    let member = app.token(Role::TenantMember, Some(ids[1]));
    app.gql(
        Some(&member),
        "mutation { recordUsage(resource: \"api_calls\", amount: 7) { allowed } }",
        json!({}),
    )
    .await
    .ok();
    // A tenant on another plan is not touched; its preview of `bulk`, cached on the second
    // instance, must show the new limit once the change is done.
    let other = app.tenant().plan("starter").create().await;
    assert_eq!(api_calls_to(&b, &other.admin).await, Some(json!(1000)));
    let other_before = quota_of(&app, other.id, "api_calls").await;

    let mut c = app.db.superuser().await;
    let audit_before = count(&mut c, "select count(*) as n from audit_logs").await;
    let raised = set_plan_quota(
        &app,
        "bulk",
        json!({ "resource": "api_calls", "limit": 50000 }),
    )
    .await;
    let rollout = &raised["rollout"];
    // Done within the mutation's wait here; on a slow machine it answers RUNNING and goes on.
    if rollout["status"] == "RUNNING" {
        let id = rollout["id"].clone();
        for _ in 0..600 {
            let r = app
                .gql(
                    Some(&admin),
                    "query($id: ID!) { planRollout(id: $id) { status } }",
                    json!({ "id": id }),
                )
                .await;
            if r.ok()["planRollout"]["status"] == "DONE" {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    } else {
        assert_eq!(rollout["status"], "DONE", "{raised}");
    }
    let done = app
        .gql(
            Some(&admin),
            "query($id: ID!) { planRollout(id: $id) { status tenantsAffected tenantsUpdated finishedAt plan { slug } } }",
            json!({ "id": rollout["id"] }),
        )
        .await;
    let done = &done.ok()["planRollout"];
    assert_eq!(done["status"], "DONE", "{done}");
    assert_eq!(done["tenantsAffected"], 997);
    assert_eq!(done["tenantsUpdated"], 997);
    assert_eq!(done["plan"]["slug"], "bulk");
    assert!(done["finishedAt"].is_string());
    assert_eq!(rollout["tenantsAffected"], 997);
    assert_eq!(raised["quota"]["limit"], 50000);
    assert_eq!(
        raised["quota"]["resetPeriod"], "MONTHLY",
        "kept when not given"
    );

    // Observed on the second instance within a second of the rollout's end.
    within_a_second("the raised quota on the second instance", || async {
        for t in [ids[1], ids[2], ids[499], ids[501], ids[998]] {
            let q = quota_of(&b, t, "api_calls").await;
            if q["limit"] != 50000 || q["overridden"] != false {
                return Err(format!("{t}: {q}"));
            }
        }
        for t in overridden {
            let q = quota_of(&b, t, "api_calls").await;
            if q["limit"] != 5 || q["overridden"] != true {
                return Err(format!("override {t}: {q}"));
            }
        }
        match api_calls_to(&b, &other.admin).await {
            Some(v) if v == 50000 => Ok(()),
            other => Err(format!("preview: {other:?}")),
        }
    })
    .await;
    // Every one of the 1,000, in the database: 997 raised, 3 overrides intact, usage kept.
    let plan_rows = |limit: i64| {
        format!(
            "select count(*) as n from quotas q join tenants t on t.id = q.tenant_id
              join plans p on p.id = t.plan_id
             where p.slug = 'bulk' and q.resource = 'api_calls' and q.\"limit\" = {limit}"
        )
    };
    assert_eq!(count(&mut c, &plan_rows(50000)).await, 997);
    assert_eq!(count(&mut c, &plan_rows(5)).await, 3);
    assert_eq!(quota_of(&app, ids[1], "api_calls").await["used"], 7);
    assert_eq!(quota_of(&app, other.id, "api_calls").await, other_before);

    // One audit row for the change, carrying the count; none per tenant.
    assert_eq!(
        count(&mut c, "select count(*) as n from audit_logs").await,
        audit_before + 1
    );
    let row =
        "select count(*) as n from audit_logs where entity_type = 'plan' and entity_id = 'bulk'
                 and action = 'QUOTA_SET' and (metadata->>'tenantsAffected')::int = 997
                 and (changes->'after'->>'limit')::bigint = 50000
                 and (changes->'before'->>'limit')::bigint = 1000";
    assert_eq!(count(&mut c, row).await, 1);

    // The same values again write nothing and start no rollout.
    let again = set_plan_quota(
        &app,
        "bulk",
        json!({ "resource": "api_calls", "limit": 50000 }),
    )
    .await;
    assert_eq!(again["rollout"], Value::Null);
    assert_eq!(
        count(&mut c, "select count(*) as n from audit_logs").await,
        audit_before + 1
    );
    let rollout_id = rollout["id"].as_str().unwrap();
    let followed = app
        .gql(
            Some(&admin),
            "query($id: ID!) { planRollout(id: $id) { status tenantsUpdated } }",
            json!({ "id": rollout_id }),
        )
        .await;
    assert_eq!(
        followed.ok()["planRollout"],
        json!({ "status": "DONE", "tenantsUpdated": 997 })
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_resource_and_a_new_reset_period_reach_the_tenants_and_a_plan_switch_clears_an_override(
) {
    let app = TestApp::spawn().await;
    let admin = app.admin_token();
    create_plan(&app, "grow").await;
    let ids = tenants_on(&app, "grow", 3).await;
    assert_eq!(quota_of(&app, ids[0], "databases").await, Value::Null);

    // A resource the plan did not name: every tenant gets the quota.
    let added = set_plan_quota(&app, "grow", json!({ "resource": "databases", "limit": 4 })).await;
    assert_eq!(added["rollout"]["tenantsUpdated"], 3);
    assert_eq!(added["quota"]["enforcement"], "HARD");
    for t in &ids {
        let q = quota_of(&app, *t, "databases").await;
        assert_eq!(q["limit"], 4, "{q}");
        assert_eq!(q["resetPeriod"], "MONTHLY");
    }

    // A new reset period starts a new period from zero; the same period keeps usage.
    let member = app.token(Role::TenantMember, Some(ids[0]));
    let record = "mutation { recordUsage(resource: \"databases\", amount: 2) { allowed } }";
    app.gql(Some(&member), record, json!({})).await.ok();
    set_plan_quota(&app, "grow", json!({ "resource": "databases", "limit": 6 })).await;
    assert_eq!(quota_of(&app, ids[0], "databases").await["used"], 2);
    set_plan_quota(
        &app,
        "grow",
        json!({ "resource": "databases", "limit": 6, "resetPeriod": "NEVER" }),
    )
    .await;
    let q = quota_of(&app, ids[0], "databases").await;
    assert_eq!(
        (&q["used"], &q["resetPeriod"]),
        (&json!(0), &json!("NEVER"))
    );

    // An override survives plan quota changes; a plan switch gives the new plan's quota.
    app.gql(
        Some(&admin),
        SET_QUOTA,
        json!({ "t": ids[1], "i": { "resource": "databases", "limit": 50 } }),
    )
    .await
    .ok();
    let changed =
        set_plan_quota(&app, "grow", json!({ "resource": "databases", "limit": 8 })).await;
    assert_eq!(changed["rollout"]["tenantsAffected"], 2);
    assert_eq!(quota_of(&app, ids[1], "databases").await["limit"], 50);
    app.gql(
        Some(&admin),
        SET_QUOTA,
        json!({ "t": ids[1], "i": { "resource": "api_calls", "limit": 3 } }),
    )
    .await
    .ok();
    let tenant_admin = app.token(Role::TenantAdmin, Some(ids[1]));
    app.gql(
        Some(&tenant_admin),
        "mutation { changePlan(planSlug: \"starter\", billingCycle: MONTHLY) { status } }",
        json!({}),
    )
    .await
    .ok();
    // Starter names api_calls: the tenant gets starter's, no longer an override. It does not
    // name databases: that quota stays the tenant's own.
    let q = quota_of(&app, ids[1], "api_calls").await;
    assert_eq!(
        (&q["limit"], &q["overridden"]),
        (&json!(10000), &json!(false)),
        "{q}"
    );
    let q = quota_of(&app, ids[1], "databases").await;
    assert_eq!(
        (&q["limit"], &q["overridden"]),
        (&json!(50), &json!(true)),
        "{q}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_rollout_is_finished_by_the_job() {
    let app = TestApp::spawn().await;
    create_plan(&app, "resume").await;
    set_plan_quota(
        &app,
        "resume",
        json!({ "resource": "storage", "limit": 100 }),
    )
    .await;
    let ids = tenants_on(&app, "resume", 1_200).await;
    // An instance changed the plan's quota and stopped after its first batch (500 tenants):
    // the catalogue row and the rollout row are committed, the cursor half-way.
    let mut c = app.db.superuser().await;
    use diesel_async::SimpleAsyncConnection;
    let cursor = ids[499];
    c.batch_execute(&format!(
        "update plan_quotas set \"limit\" = 700 where resource = 'storage'
            and plan_id = (select id from plans where slug = 'resume');
         update quotas set \"limit\" = 700 where resource = 'storage' and tenant_id in
            (select id from tenants where id <= '{cursor}'
               and plan_id = (select id from plans where slug = 'resume'));
         insert into plan_rollouts (id, plan_id, resource, cursor, tenants_affected,
                                    tenants_updated, requested_by, created_at)
         select '{}', id, 'storage', '{cursor}', 1200, 500, 'test', now() - interval '1 minute'
           from plans where slug = 'resume';",
        Uuid::now_v7()
    ))
    .await
    .unwrap();
    let at = |limit: i64| {
        format!(
            "select count(*) as n from quotas q join tenants t on t.id = q.tenant_id
              join plans p on p.id = t.plan_id
             where p.slug = 'resume' and q.resource = 'storage' and q.\"limit\" = {limit}"
        )
    };
    assert_eq!(count(&mut c, &at(700)).await, 500);

    let outcome = run_once(&app.app, Job::PlanRollouts).await.unwrap();
    assert_eq!(outcome, tenantry::jobs::Outcome::Done(1));
    assert_eq!(count(&mut c, &at(700)).await, 1_200);
    let done = "select count(*) as n from plan_rollouts where status = 'DONE'
                  and tenants_updated = 1200 and finished_at is not null and cursor is not null";
    assert_eq!(count(&mut c, done).await, 1);
    // Nothing is left for the next run.
    assert_eq!(
        run_once(&app.app, Job::PlanRollouts).await.unwrap(),
        tenantry::jobs::Outcome::Done(0)
    );
}

/// The tenant's `lab_tools` flag as its member sees it on `app`.
async fn flag(app: &TestApp, t: Uuid) -> Value {
    let token = app.token(Role::TenantMember, Some(t));
    app.gql(
        Some(&token),
        "{ tenant { feature(key: \"lab_tools\") { enabled source } } }",
        json!({}),
    )
    .await
    .ok()["tenant"]["feature"]
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_feature_reaches_its_tenants_on_every_instance_and_overrides_are_kept() {
    let app = TestApp::spawn().await;
    let b = app.second_instance().await;
    let admin = app.admin_token();
    create_plan(&app, "lab").await;
    app.gql(
        Some(&admin),
        "mutation($i: CreateFeatureInput!) { createFeature(input: $i) { key } }",
        json!({ "i": { "key": "lab_tools", "name": "Lab tools" } }),
    )
    .await
    .ok();
    let ids = tenants_on(&app, "lab", 2).await;
    let (plain, pinned) = (ids[0], ids[1]);
    // `pinned` has its own override: off.
    app.gql(
        Some(&admin),
        "mutation($t: ID!) { setFeature(tenantId: $t, key: \"lab_tools\", enabled: false) { enabled } }",
        json!({ "t": pinned }),
    )
    .await
    .ok();
    // Cached on the second instance before the change.
    assert_eq!(flag(&b, plain).await["enabled"], false);

    let mut c = app.db.superuser().await;
    let on = app
        .gql(
            Some(&admin),
            SET_PLAN_FEATURE,
            json!({ "p": "lab", "k": "lab_tools", "e": true }),
        )
        .await;
    assert_eq!(
        on.ok()["setPlanFeature"],
        json!({ "slug": "lab", "features": ["lab_tools"] })
    );
    within_a_second("the plan's new feature on the second instance", || async {
        let f = flag(&b, plain).await;
        (f == json!({ "enabled": true, "source": "PLAN" }))
            .then_some(())
            .ok_or(f.to_string())
    })
    .await;
    assert_eq!(flag(&b, pinned).await["enabled"], false, "override kept");
    let audited =
        "select count(*) as n from audit_logs where entity_type = 'plan' and entity_id = 'lab'
                     and action = 'FEATURE_SET' and (metadata->>'tenantsAffected')::int = 1
                     and (changes->'after'->>'enabled')::boolean";
    assert_eq!(count(&mut c, audited).await, 1);

    // A repeat writes nothing; turning it off reaches the tenants again.
    let all_audit = "select count(*) as n from audit_logs where action = 'FEATURE_SET'";
    app.gql(
        Some(&admin),
        SET_PLAN_FEATURE,
        json!({ "p": "lab", "k": "lab_tools", "e": true }),
    )
    .await
    .ok();
    assert_eq!(count(&mut c, all_audit).await, 1);
    app.gql(
        Some(&admin),
        SET_PLAN_FEATURE,
        json!({ "p": "lab", "k": "lab_tools", "e": false }),
    )
    .await
    .ok();
    within_a_second(
        "the plan's removed feature on the second instance",
        || async {
            let f = flag(&b, plain).await;
            (f["enabled"] == false).then_some(()).ok_or(f.to_string())
        },
    )
    .await;

    // Unknown feature and plan.
    let unknown = app
        .gql(
            Some(&admin),
            SET_PLAN_FEATURE,
            json!({ "p": "lab", "k": "no_such_thing", "e": true }),
        )
        .await;
    unknown.err("BAD_USER_INPUT");
    let no_plan = app
        .gql(
            Some(&admin),
            SET_PLAN_FEATURE,
            json!({ "p": "nope", "k": "lab_tools", "e": true }),
        )
        .await;
    no_plan.err("NOT_FOUND");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_plan_quota_input_is_refused_with_nothing_written() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token();
    create_plan(&app, "strict").await;
    let mut c = app.db.superuser().await;
    let cases = [
        (
            "strict",
            json!({ "resource": "teleports", "limit": 1 }),
            "BAD_USER_INPUT",
        ),
        (
            "strict",
            json!({ "resource": "api_calls", "limit": -1 }),
            "BAD_USER_INPUT",
        ),
        (
            "strict",
            json!({ "resource": "api_calls", "limit": 1, "unit": "" }),
            "BAD_USER_INPUT",
        ),
        (
            "strict",
            json!({ "resource": "api_calls", "limit": 1, "alertThresholds": [50] }),
            "BAD_USER_INPUT",
        ),
        (
            "missing",
            json!({ "resource": "api_calls", "limit": 1 }),
            "NOT_FOUND",
        ),
    ];
    for (plan, input, code) in cases {
        let resp = app
            .gql(
                Some(&admin),
                SET_PLAN_QUOTA,
                json!({ "p": plan, "i": input }),
            )
            .await;
        resp.err(code);
    }
    let unknown = app
        .gql(
            Some(&admin),
            SET_PLAN_QUOTA,
            json!({ "p": "strict", "i": { "resource": "teleports", "limit": 1 } }),
        )
        .await;
    let message = unknown.err("BAD_USER_INPUT")["message"].to_string();
    assert!(
        message.contains("api_calls"),
        "names the known ones: {message}"
    );
    assert_eq!(
        count(&mut c, "select count(*) as n from plan_rollouts").await,
        0
    );
    let quotas = "select count(*) as n from plan_quotas q join plans p on p.id = q.plan_id where p.slug = 'strict'";
    assert_eq!(count(&mut c, quotas).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_admins_and_members_may_not_change_a_plan_and_nothing_is_written() {
    let app = TestApp::spawn().await;
    let tenant = app.tenant().plan("starter").create().await;
    let mut c = app.db.superuser().await;
    let snapshot =
        "select (select count(*) from plan_quotas) + (select count(*) from plan_features)
                          + (select count(*) from plan_rollouts) + (select count(*) from audit_logs)
                          + (select coalesce(sum(\"limit\"), 0) from plan_quotas)::bigint as n";
    let before = count(&mut c, snapshot).await;
    for token in [&tenant.admin, &tenant.member] {
        let quota = app
            .gql(
                Some(token),
                SET_PLAN_QUOTA,
                json!({ "p": "starter", "i": { "resource": "api_calls", "limit": 999999 } }),
            )
            .await;
        quota.err("FORBIDDEN");
        let feature = app
            .gql(
                Some(token),
                SET_PLAN_FEATURE,
                json!({ "p": "starter", "k": "sso", "e": true }),
            )
            .await;
        feature.err("FORBIDDEN");
        let follow = app
            .gql(
                Some(token),
                "query($id: ID!) { planRollout(id: $id) { status } }",
                json!({ "id": Uuid::now_v7() }),
            )
            .await;
        follow.err("FORBIDDEN");
    }
    assert_eq!(count(&mut c, snapshot).await, before);
}
