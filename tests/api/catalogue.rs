//! Plans and feature definitions are catalogue data (issue 14, second step; SPEC §13):
//! platform admins create, update and archive plans and create features over GraphQL, each
//! write audited; archived plans keep their tenants and take no new ones; tenant users may
//! change nothing; a plan change reaches a second instance within a second (its plan cache is
//! dropped through the bus).

use crate::common::{count, within_a_second, TestApp};
use serde_json::{json, Value};

const PLAN_FIELDS: &str =
    "slug name description trialDays rateLimitPerMinute archived prices { region } features quotas { resource }";
const CREATE_TENANT: &str =
    "mutation($input: CreateTenantInput!) { createTenant(input: $input) { id } }";
const CHANGE: &str =
    "mutation($p: String!) { changePlan(planSlug: $p, billingCycle: MONTHLY) { id } }";
const CREATE_FEATURE: &str =
    "mutation($i: CreateFeatureInput!) { createFeature(input: $i) { key name description defaultEnabled } }";

fn create_plan() -> String {
    format!("mutation($i: CreatePlanInput!) {{ createPlan(input: $i) {{ {PLAN_FIELDS} }} }}")
}
fn update_plan() -> String {
    format!("mutation($s: String!, $i: UpdatePlanInput!) {{ updatePlan(slug: $s, input: $i) {{ {PLAN_FIELDS} }} }}")
}
fn archive_plan() -> String {
    format!("mutation($s: String!) {{ archivePlan(slug: $s) {{ {PLAN_FIELDS} }} }}")
}
fn plans(include_archived: bool) -> String {
    format!("{{ plans(includeArchived: {include_archived}) {{ slug archived }} }}")
}
fn plan() -> String {
    format!("query($s: String!) {{ plan(slug: $s) {{ {PLAN_FIELDS} }} }}")
}

fn team() -> Value {
    json!({ "slug": "team", "name": "Team", "description": "For small teams",
        "trialDays": 7, "rateLimitPerMinute": 120 })
}

async fn create_team(app: &TestApp) -> Value {
    let resp = app
        .gql(
            Some(&app.admin_token()),
            &create_plan(),
            json!({ "i": team() }),
        )
        .await;
    resp.ok()["createPlan"].clone()
}

fn slugs(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|p| p["slug"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_platform_admin_creates_a_plan_that_new_tenants_may_take() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token();
    let created = create_team(&app).await;
    let expected = json!({ "slug": "team", "name": "Team", "description": "For small teams",
        "trialDays": 7, "rateLimitPerMinute": 120, "archived": false,
        "prices": [], "features": [], "quotas": [] });
    assert_eq!(created, expected);

    // Listed publicly, last in the catalogue's order; found by slug.
    let listed = app
        .gql(None, "{ plans { slug archived } }", json!({}))
        .await;
    let listed = slugs(&listed.ok()["plans"]);
    assert_eq!(
        listed.last().map(String::as_str),
        Some("team"),
        "{listed:?}"
    );
    let found = app.gql(None, &plan(), json!({ "s": "team" })).await;
    assert_eq!(found.ok()["plan"], expected);

    // A tenant on it: no plan quotas, so the defaults fill in.
    let t = app.tenant().plan("team").create().await;
    let resp = app
        .gql(
            Some(&t.member),
            "{ tenant { plan { slug } quotas { resource limit } } }",
            json!({}),
        )
        .await;
    let tenant = &resp.ok()["tenant"];
    assert_eq!(tenant["plan"]["slug"], "team");
    let quotas = tenant["quotas"].as_array().unwrap();
    let limit = |r: &str| {
        quotas
            .iter()
            .find(|q| q["resource"] == r)
            .map(|q| q["limit"].clone())
    };
    assert_eq!(limit("users"), Some(json!(100)), "{quotas:?}");
    assert_eq!(limit("api_calls"), Some(json!(10_000)), "{quotas:?}");

    // A plan without prices: the preview answers (nothing to charge) and a LOCAL change onto it works.
    let s = app.tenant().plan("starter").create().await;
    let preview = app
        .gql(
            Some(&s.admin),
            "{ previewPlanChange(planSlug: \"team\") { currency } }",
            json!({}),
        )
        .await;
    preview.ok();
    app.gql(Some(&s.admin), CHANGE, json!({ "p": "team" }))
        .await
        .ok();

    // Duplicates and bad input write nothing.
    let plans_before = {
        let mut db = app.db.superuser().await;
        count(&mut db, "select count(*) as n from plans").await
    };
    for slug in ["team", "starter"] {
        let dup = json!({ "slug": slug, "name": "Again", "rateLimitPerMinute": 5 });
        let e = app
            .gql(Some(&admin), &create_plan(), json!({ "i": dup }))
            .await;
        assert_eq!(e.err("CONFLICT")["extensions"]["field"], "slug");
    }
    for (bad, field) in [
        (
            json!({ "slug": "Team2", "name": "x", "rateLimitPerMinute": 5 }),
            "slug",
        ),
        (
            json!({ "slug": "2team", "name": "x", "rateLimitPerMinute": 5 }),
            "slug",
        ),
        (
            json!({ "slug": "t", "name": "x", "rateLimitPerMinute": 5 }),
            "slug",
        ),
        (
            json!({ "slug": "team-", "name": "x", "rateLimitPerMinute": 5 }),
            "slug",
        ),
        (
            json!({ "slug": "a".repeat(51), "name": "x", "rateLimitPerMinute": 5 }),
            "slug",
        ),
        (
            json!({ "slug": "team2", "name": " ", "rateLimitPerMinute": 5 }),
            "name",
        ),
        (
            json!({ "slug": "team2", "name": "n".repeat(101), "rateLimitPerMinute": 5 }),
            "name",
        ),
        (
            json!({ "slug": "team2", "name": "x", "trialDays": 366, "rateLimitPerMinute": 5 }),
            "trialDays",
        ),
        (
            json!({ "slug": "team2", "name": "x", "trialDays": -1, "rateLimitPerMinute": 5 }),
            "trialDays",
        ),
        (
            json!({ "slug": "team2", "name": "x", "rateLimitPerMinute": 0 }),
            "rateLimitPerMinute",
        ),
        (
            json!({ "slug": "team2", "name": "x", "rateLimitPerMinute": 1_000_001 }),
            "rateLimitPerMinute",
        ),
    ] {
        let e = app
            .gql(Some(&admin), &create_plan(), json!({ "i": bad }))
            .await;
        assert_eq!(
            e.err("BAD_USER_INPUT")["extensions"]["field"],
            field,
            "{bad}"
        );
    }
    let mut db = app.db.superuser().await;
    assert_eq!(
        count(&mut db, "select count(*) as n from plans").await,
        plans_before
    );
    assert_eq!(
        count(
            &mut db,
            "select count(*) as n from audit_logs where entity_type = 'plan' and entity_id = 'team' \
             and action = 'CREATE' and actor_type = 'ADMIN' and tenant_id is null \
             and changes->'after'->>'rateLimitPerMinute' = '120'"
        )
        .await,
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_reaches_a_second_instance_within_a_second() {
    let a = TestApp::spawn().await;
    let b = a.second_instance().await;
    let admin = a.admin_token();
    create_team(&a).await;
    let t = a.tenant().plan("team").create().await;
    const MINE: &str = "{ tenant { plan { name rateLimitPerMinute } } }";
    // B has the plan in its cache.
    let before = b.gql(Some(&t.member), MINE, json!({})).await;
    assert_eq!(before.ok()["tenant"]["plan"]["rateLimitPerMinute"], 120);

    let input = json!({ "name": "Team plus", "rateLimitPerMinute": 250 });
    let updated = a
        .gql(
            Some(&admin),
            &update_plan(),
            json!({ "s": "team", "i": input }),
        )
        .await;
    let updated = &updated.ok()["updatePlan"];
    assert_eq!(updated["name"], "Team plus");
    assert_eq!(updated["rateLimitPerMinute"], 250);
    assert_eq!(
        updated["description"], "For small teams",
        "absent fields are kept"
    );
    assert_eq!(updated["trialDays"], 7);

    within_a_second("the new rate limit on instance B", || {
        let (b, member) = (&b, &t.member);
        async move {
            let resp = b.gql(Some(member), MINE, json!({})).await;
            let p = &resp.ok()["tenant"]["plan"];
            if p["rateLimitPerMinute"] == 250 && p["name"] == "Team plus" {
                Ok(())
            } else {
                Err(p.to_string())
            }
        }
    })
    .await;

    // Unknown slugs and bad values.
    let e = a
        .gql(
            Some(&admin),
            &update_plan(),
            json!({ "s": "nope", "i": { "name": "x" } }),
        )
        .await;
    e.err("NOT_FOUND");
    let e = a
        .gql(
            Some(&admin),
            &update_plan(),
            json!({ "s": "team", "i": { "rateLimitPerMinute": 0 } }),
        )
        .await;
    e.err("BAD_USER_INPUT");
    let mut db = a.db.superuser().await;
    assert_eq!(
        count(
            &mut db,
            "select count(*) as n from audit_logs where entity_type = 'plan' and entity_id = 'team' \
             and action = 'UPDATE' and changes->'before'->>'rateLimitPerMinute' = '120' \
             and changes->'after'->>'rateLimitPerMinute' = '250' \
             and changes->'after'->>'name' = 'Team plus'"
        )
        .await,
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archived_plans_keep_their_tenants_and_take_no_new_ones() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token();
    create_team(&app).await;
    let t = app.tenant().plan("team").create().await;
    let other = app.tenant().plan("starter").create().await;

    let archived = app
        .gql(Some(&admin), &archive_plan(), json!({ "s": "team" }))
        .await;
    assert_eq!(archived.ok()["archivePlan"]["archived"], true);

    // Hidden from everyone but platform admins who ask.
    for (token, include, shown) in [
        (None, true, false),
        (Some(&t.member), false, false),
        (Some(&t.admin), true, false),
        (Some(&admin), false, false),
        (Some(&admin), true, true),
    ] {
        let resp = app
            .gql(token.map(|s| s.as_str()), &plans(include), json!({}))
            .await;
        let list = resp.ok()["plans"].clone();
        assert_eq!(slugs(&list).contains(&"team".to_owned()), shown, "{list}");
        if shown {
            let team = list
                .as_array()
                .unwrap()
                .iter()
                .find(|p| p["slug"] == "team")
                .unwrap();
            assert_eq!(team["archived"], true);
        }
    }
    let hidden = app
        .gql(Some(&t.member), &plan(), json!({ "s": "team" }))
        .await;
    assert_eq!(hidden.ok()["plan"], Value::Null);
    let seen = app.gql(Some(&admin), &plan(), json!({ "s": "team" })).await;
    assert_eq!(seen.ok()["plan"]["archived"], true);

    // Its tenant keeps it.
    let mine = app
        .gql(
            Some(&t.member),
            "{ tenant { plan { slug archived } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        mine.ok()["tenant"]["plan"],
        json!({ "slug": "team", "archived": true })
    );

    // New tenants and plan changes onto it are refused, saying why.
    let mut db = app.db.superuser().await;
    let tenants = count(&mut db, "select count(*) as n from tenants").await;
    let input = json!({ "input": { "name": "Late", "slug": "late", "planSlug": "team" } });
    let e = app.gql(Some(&admin), CREATE_TENANT, input).await;
    let e = e.err("BAD_USER_INPUT");
    assert_eq!(e["extensions"]["field"], "planSlug");
    assert!(e["message"].as_str().unwrap().contains("archived"), "{e}");
    assert_eq!(
        count(&mut db, "select count(*) as n from tenants").await,
        tenants
    );
    let e = app
        .gql(Some(&other.admin), CHANGE, json!({ "p": "team" }))
        .await;
    assert!(e.err("BAD_USER_INPUT")["message"]
        .as_str()
        .unwrap()
        .contains("archived"));
    let e = app
        .gql(
            Some(&other.admin),
            "{ previewPlanChange(planSlug: \"team\") { currency } }",
            json!({}),
        )
        .await;
    e.err("BAD_USER_INPUT");
    let on_starter = app
        .gql(
            Some(&other.member),
            "{ tenant { plan { slug } } }",
            json!({}),
        )
        .await;
    assert_eq!(on_starter.ok()["tenant"]["plan"]["slug"], "starter");

    // Archiving again changes nothing; an unknown plan is NOT_FOUND.
    app.gql(Some(&admin), &archive_plan(), json!({ "s": "team" }))
        .await
        .ok();
    app.gql(Some(&admin), &archive_plan(), json!({ "s": "nope" }))
        .await
        .err("NOT_FOUND");
    assert_eq!(
        count(
            &mut db,
            "select count(*) as n from audit_logs where entity_type = 'plan' and entity_id = 'team' \
             and action = 'ARCHIVE' and changes->'before'->>'isActive' = 'true' \
             and changes->'after'->>'isActive' = 'false'"
        )
        .await,
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_users_may_not_change_the_catalogue_and_nothing_is_written() {
    let app = TestApp::spawn().await;
    let t = app.tenant().plan("enterprise").create().await;
    let mut db = app.db.superuser().await;
    let plans_before = count(&mut db, "select count(*) as n from plans").await;
    let features_before = count(&mut db, "select count(*) as n from feature_definitions").await;
    let calls: [(String, Value); 4] = [
        (create_plan(), json!({ "i": team() })),
        (
            update_plan(),
            json!({ "s": "starter", "i": { "name": "Mine", "rateLimitPerMinute": 1 } }),
        ),
        (archive_plan(), json!({ "s": "starter" })),
        (
            CREATE_FEATURE.to_owned(),
            json!({ "i": { "key": "sso", "name": "SSO" } }),
        ),
    ];
    for (query, vars) in &calls {
        for token in [&t.admin, &t.member] {
            app.gql(Some(token), query, vars.clone())
                .await
                .err("FORBIDDEN");
        }
        app.gql(None, query, vars.clone())
            .await
            .err("UNAUTHENTICATED");
    }
    assert_eq!(
        count(&mut db, "select count(*) as n from plans").await,
        plans_before
    );
    assert_eq!(
        count(
            &mut db,
            "select count(*) as n from plans where slug = 'starter' and is_active \
             and name <> 'Mine' and rate_limit_per_minute > 1"
        )
        .await,
        1
    );
    assert_eq!(
        count(&mut db, "select count(*) as n from feature_definitions").await,
        features_before
    );
    assert_eq!(
        count(
            &mut db,
            "select count(*) as n from audit_logs where entity_type in ('plan', 'feature_definition')"
        )
        .await,
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_platform_admin_creates_a_feature_tenants_then_see() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token();
    let t = app.tenant().plan("starter").create().await;
    let mut db = app.db.superuser().await;
    let definitions = count(&mut db, "select count(*) as n from feature_definitions").await;
    const FLAGS: &str = "{ tenant { features { key enabled source } } }";
    // The tenant's flags are cached before the feature exists.
    let before = app.gql(Some(&t.member), FLAGS, json!({})).await;
    assert!(!before.ok().to_string().contains("\"sso\""));

    let sso = json!({ "key": "sso", "name": "Single sign-on", "description": "SAML and OIDC" });
    let created = app
        .gql(Some(&admin), CREATE_FEATURE, json!({ "i": sso }))
        .await;
    assert_eq!(
        created.ok()["createFeature"],
        json!({ "key": "sso", "name": "Single sign-on", "description": "SAML and OIDC", "defaultEnabled": false })
    );
    let after = app.gql(Some(&t.member), FLAGS, json!({})).await;
    let flags = after.ok()["tenant"]["features"].as_array().unwrap().clone();
    assert!(
        flags.contains(&json!({ "key": "sso", "enabled": false, "source": "DEFAULT" })),
        "{flags:?}"
    );

    let dup = json!({ "key": "sso", "name": "Other" });
    let e = app
        .gql(Some(&admin), CREATE_FEATURE, json!({ "i": dup }))
        .await;
    assert_eq!(e.err("CONFLICT")["extensions"]["field"], "key");
    for bad in [
        json!({ "key": "SSO", "name": "x" }),
        json!({ "key": "single-sign-on", "name": "x" }),
        json!({ "key": "a".repeat(65), "name": "x" }),
        json!({ "key": "sso2", "name": "" }),
        json!({ "key": "sso2", "name": "x", "description": "d".repeat(501) }),
    ] {
        app.gql(Some(&admin), CREATE_FEATURE, json!({ "i": bad }))
            .await
            .err("BAD_USER_INPUT");
    }
    assert_eq!(
        count(&mut db, "select count(*) as n from feature_definitions").await,
        definitions + 1
    );
    assert_eq!(
        count(
            &mut db,
            "select count(*) as n from audit_logs where entity_type = 'feature_definition' \
             and entity_id = 'sso' and action = 'CREATE' and actor_type = 'ADMIN' \
             and changes->'after'->>'name' = 'Single sign-on'"
        )
        .await,
        1
    );
}
