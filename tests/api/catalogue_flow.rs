//! The pricing team's whole day over GraphQL (issue 14): a plan is created, priced in two
//! regions and two cycles, given a feature and quotas, and a tenant changes to it — in LOCAL
//! billing and through Stripe (the local Stripe-compatible server records the Product and
//! Price creations and the subscription update onto the new Price).

use serde_json::{json, Value};

use crate::common::stripe::{deliver, event, now};
use crate::common::TestApp;
use crate::plan_prices::{live, subscribed, SECRET};

const TENANT: &str = "{ tenant { plan { slug } subscription { billingCycle }
    feature(key: \"priority_lane\") { enabled source }
    quota(resource: \"api_calls\") { limit overridden } databases: quota(resource: \"databases\") { limit } } }";

/// Creates plan `scale` with four prices (US and EU, monthly and yearly), the new feature
/// `priority_lane` and two quotas, all through GraphQL as a platform admin; returns the plan
/// as `plan(slug)` shows it.
async fn build_scale_plan(app: &TestApp) -> Value {
    let admin = app.admin_token();
    let ok = |resp: crate::common::Gql| resp.ok().clone();
    ok(app
        .gql(
            Some(&admin),
            "mutation($i: CreatePlanInput!) { createPlan(input: $i) { slug } }",
            json!({ "i": { "slug": "scale", "name": "Scale", "trialDays": 0, "rateLimitPerMinute": 900 } }),
        )
        .await);
    for (region, currency, monthly) in [("US", "usd", 4900), ("EU", "eur", 4500)] {
        for (cycle, amount) in [("MONTHLY", monthly), ("YEARLY", monthly * 10)] {
            ok(app
                .gql(
                    Some(&admin),
                    "mutation($i: SetPlanPriceInput!) { setPlanPrice(planSlug: \"scale\", input: $i) { slug } }",
                    json!({ "i": { "region": region, "billingCycle": cycle, "currency": currency, "amount": amount } }),
                )
                .await);
        }
    }
    ok(app
        .gql(
            Some(&admin),
            "mutation { createFeature(input: { key: \"priority_lane\", name: \"Priority lane\" }) { key } }",
            json!({}),
        )
        .await);
    ok(app
        .gql(
            Some(&admin),
            "mutation { setPlanFeature(planSlug: \"scale\", key: \"priority_lane\", enabled: true) { slug } }",
            json!({}),
        )
        .await);
    for (resource, limit) in [("api_calls", 250_000), ("databases", 12)] {
        ok(app
            .gql(
                Some(&admin),
                "mutation($i: SetQuotaInput!) { setPlanQuota(planSlug: \"scale\", input: $i) { rollout { status } } }",
                json!({ "i": { "resource": resource, "limit": limit } }),
            )
            .await);
    }
    let plan = app
        .gql(
            None,
            "{ plan(slug: \"scale\") { slug features quotas { resource limit }
                prices { region billingCycle currency amount stripePriceId } } }",
            json!({}),
        )
        .await;
    plan.ok()["plan"].clone()
}

fn prices_of(plan: &Value) -> Vec<(String, String, String, i64)> {
    let mut v: Vec<_> = plan["prices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["region"].as_str().unwrap().to_owned(),
                p["billingCycle"].as_str().unwrap().to_owned(),
                p["currency"].as_str().unwrap().to_owned(),
                p["amount"].as_i64().unwrap(),
            )
        })
        .collect();
    v.sort();
    v
}

fn expected_prices() -> Vec<(String, String, String, i64)> {
    let mut v: Vec<_> = [
        ("EU", "MONTHLY", "eur", 4500),
        ("EU", "YEARLY", "eur", 45000),
        ("US", "MONTHLY", "usd", 4900),
        ("US", "YEARLY", "usd", 49000),
    ]
    .iter()
    .map(|(r, c, cur, a)| (r.to_string(), c.to_string(), cur.to_string(), *a))
    .collect();
    v.sort();
    v
}

fn assert_on_scale(t: &Value, cycle: &str) {
    assert_eq!(t["plan"]["slug"], "scale", "{t}");
    assert_eq!(t["subscription"]["billingCycle"], cycle, "{t}");
    assert_eq!(
        t["feature"],
        json!({ "enabled": true, "source": "PLAN" }),
        "{t}"
    );
    assert_eq!(
        t["quota"],
        json!({ "limit": 250000, "overridden": false }),
        "{t}"
    );
    assert_eq!(t["databases"]["limit"], 12, "{t}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_built_over_graphql_is_taken_by_a_tenant_in_local_billing() {
    let app = TestApp::spawn().await;
    let plan = build_scale_plan(&app).await;
    assert_eq!(prices_of(&plan), expected_prices());
    assert_eq!(plan["features"], json!(["priority_lane"]));
    assert!(plan["prices"]
        .as_array()
        .unwrap()
        .iter()
        .all(|p| p["stripePriceId"].is_null()));

    let tenant = app.tenant().plan("starter").create().await;
    let before = app.gql(Some(&tenant.admin), TENANT, json!({})).await;
    assert_eq!(before.ok()["tenant"]["feature"]["enabled"], false);
    let changed = app
        .gql(
            Some(&tenant.admin),
            "mutation { changePlan(planSlug: \"scale\", billingCycle: YEARLY) { status toPlan { slug } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        changed.ok()["changePlan"],
        json!({ "status": "COMPLETED", "toPlan": { "slug": "scale" } })
    );
    let after = app.gql(Some(&tenant.member), TENANT, json!({})).await;
    assert_on_scale(&after.ok()["tenant"], "YEARLY");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_built_over_graphql_is_taken_by_a_tenant_through_stripe() {
    let (app, fake) = live().await;
    let plan = build_scale_plan(&app).await;
    assert_eq!(prices_of(&plan), expected_prices());

    // Stripe holds one Product for the plan and one Price per region and cycle.
    let products = fake.requests_to("POST", "/v1/products");
    assert_eq!(products.len(), 1);
    assert_eq!(products[0].param("metadata[plan_slug]"), Some("scale"));
    let created: Vec<_> = fake
        .requests_to("POST", "/v1/prices")
        .into_iter()
        .filter(|r| r.path == "/v1/prices")
        .collect();
    let mut seen: Vec<(String, String, String)> = created
        .iter()
        .map(|r| {
            (
                r.param("currency").unwrap().to_owned(),
                r.param("recurring[interval]").unwrap().to_owned(),
                r.param("unit_amount").unwrap().to_owned(),
            )
        })
        .collect();
    seen.sort();
    let want = |c: &str, i: &str, a: &str| (c.to_owned(), i.to_owned(), a.to_owned());
    assert_eq!(
        seen,
        vec![
            want("eur", "month", "4500"),
            want("eur", "year", "45000"),
            want("usd", "month", "4900"),
            want("usd", "year", "49000"),
        ]
    );
    let us_yearly = plan["prices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["region"] == "US" && p["billingCycle"] == "YEARLY")
        .and_then(|p| p["stripePriceId"].as_str())
        .expect("a Stripe price id")
        .to_owned();

    // A starter subscriber moves to the plan: Stripe is asked to swap to the US yearly Price,
    // and the signed webhook applies the plan.
    let (tenant, _, sub) = subscribed(&app, &fake, "starter", "price_starter_us_monthly").await;
    let changed = app
        .gql(
            Some(&tenant.admin),
            "mutation { changePlan(planSlug: \"scale\", billingCycle: YEARLY) { status } }",
            json!({}),
        )
        .await;
    assert_eq!(changed.ok()["changePlan"]["status"], "PENDING");
    let updates = fake.requests_to("POST", &format!("/v1/subscriptions/{sub}"));
    assert_eq!(updates.len(), 1);
    assert_eq!(
        updates[0].param("items[0][price]"),
        Some(us_yearly.as_str())
    );
    assert_eq!(
        updates[0].param("proration_behavior"),
        Some("create_prorations")
    );
    let confirmed = event(
        "evt_scale",
        "customer.subscription.updated",
        now() + 2,
        fake.subscription(&sub),
    );
    assert_eq!(deliver(&app.base, &confirmed, SECRET).await.0, 200);
    let after = app.gql(Some(&tenant.member), TENANT, json!({})).await;
    assert_on_scale(&after.ok()["tenant"], "YEARLY");
}
