//! Plan prices are catalogue data (issue 14, `setPlanPrice`): platform admins set a plan's
//! price per region and billing cycle. LOCAL billing stores it and previews/plan changes use
//! it at once; with Stripe every new or changed price is a new Stripe Price on the plan's one
//! Product, the replaced Price is archived, subscriptions stay on it (and keep mapping to
//! their plan) unless `applyToExisting` moves them through plan-change intents; a Stripe
//! failure changes nothing; tenant users may set nothing.

use crate::common::stripe::{self, deliver, event, now, FakeStripe, Recorded};
use crate::common::{count, text, TestApp, TestTenant};
use serde_json::{json, Value};

pub(crate) const SECRET: &str = "whsec_test_prices";
const SET: &str = "mutation($p: String!, $i: SetPlanPriceInput!) {
    setPlanPrice(planSlug: $p, input: $i) {
        slug prices { region billingCycle currency amount stripePriceId } } }";
const PLAN: &str =
    "query($s: String!) { plan(slug: $s) { prices { region billingCycle currency amount stripePriceId } } }";

pub(crate) async fn live() -> (TestApp, FakeStripe) {
    let fake = FakeStripe::start().await;
    let base = fake.base.clone();
    let app = TestApp::spawn_with(|env| {
        env.insert("STRIPE_SECRET_KEY".into(), "sk_test_tenantry".into());
        env.insert("STRIPE_API_BASE".into(), base);
        env.insert("STRIPE_WEBHOOK_SECRET".into(), SECRET.into());
        env.insert("STRIPE_TIMEOUT_MS".into(), "1500".into());
    })
    .await;
    (app, fake)
}

/// A new plan `slug` (no prices yet).
async fn create_plan(app: &TestApp, slug: &str) {
    let input = json!({ "slug": slug, "name": "Team plan", "rateLimitPerMinute": 100 });
    app.gql(
        Some(&app.admin_token()),
        "mutation($i: CreatePlanInput!) { createPlan(input: $i) { slug } }",
        json!({ "i": input }),
    )
    .await
    .ok();
}

fn price(region: &str, cycle: &str, currency: &str, amount: i64) -> Value {
    json!({ "region": region, "billingCycle": cycle, "currency": currency, "amount": amount })
}

async fn set(app: &TestApp, token: &str, plan: &str, input: Value) -> crate::common::Gql {
    app.gql(Some(token), SET, json!({ "p": plan, "i": input }))
        .await
}

/// The plan's price for a region and cycle, as `plan(slug) { prices }` shows it.
fn find<'a>(prices: &'a Value, region: &str, cycle: &str) -> &'a Value {
    prices
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["region"] == region && p["billingCycle"] == cycle)
        .unwrap_or_else(|| panic!("no {region} {cycle} price in {prices}"))
}

async fn n(app: &TestApp, sql: &str) -> i64 {
    count(&mut app.db.superuser().await, sql).await
}

async fn price_sets(app: &TestApp, plan: &str) -> i64 {
    let sql = format!("select count(*) as n from audit_logs where entity_type = 'plan' and entity_id = '{plan}' and action = 'PRICE_SET'");
    n(app, &sql).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_prices_are_set_read_back_changed_and_validated() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token();
    create_plan(&app, "team").await;

    for (region, currency, monthly) in [("US", "usd", 1000), ("EU", "EUR", 900)] {
        for (cycle, amount) in [("MONTHLY", monthly), ("YEARLY", monthly * 10)] {
            let input = price(region, cycle, currency, amount);
            set(&app, &admin, "team", input).await.ok();
        }
    }
    let read = app.gql(None, PLAN, json!({ "s": "team" })).await;
    let prices = read.ok()["plan"]["prices"].clone();
    assert_eq!(prices.as_array().unwrap().len(), 4, "{prices}");
    assert_eq!(
        find(&prices, "EU", "YEARLY"),
        &json!({ "region": "EU", "billingCycle": "YEARLY", "currency": "eur", "amount": 9000, "stripePriceId": null })
    );
    assert_eq!(find(&prices, "US", "MONTHLY")["amount"], 1000);
    assert_eq!(price_sets(&app, "team").await, 4);

    // A tenant previews the move onto it, then the price rises: the preview follows.
    let t = app.tenant().plan("starter").create().await;
    let preview = "{ previewPlanChange(planSlug: \"team\") { prorationAmount currency } }";
    let before = app.gql(Some(&t.admin), preview, json!({})).await;
    let before = before.ok()["previewPlanChange"]["prorationAmount"]
        .as_i64()
        .unwrap();

    // Changing one price updates it in place; the same price again writes nothing.
    let changed = set(&app, &admin, "team", price("us", "MONTHLY", "usd", 5000)).await;
    let prices = changed.ok()["setPlanPrice"]["prices"].clone();
    assert_eq!(prices.as_array().unwrap().len(), 4);
    assert_eq!(find(&prices, "US", "MONTHLY")["amount"], 5000);
    assert_eq!(price_sets(&app, "team").await, 5);
    let again = set(&app, &admin, "team", price("US", "MONTHLY", "USD", 5000)).await;
    again.ok();
    assert_eq!(
        price_sets(&app, "team").await,
        5,
        "a repeat writes no audit row"
    );
    let plan_prices = "select count(*) as n from plan_prices p join plans on plans.id = p.plan_id where plans.slug = 'team'";
    assert_eq!(n(&app, plan_prices).await, 4);

    let after = app.gql(Some(&t.admin), preview, json!({})).await;
    let after = after.ok()["previewPlanChange"].clone();
    assert_eq!(after["currency"], "usd");
    let after = after["prorationAmount"].as_i64().unwrap();
    assert!(
        after > before && after - before <= 4000,
        "the preview prorates the new amount: {before} -> {after}"
    );
    // The plan change onto it applies (LOCAL) and the tenant is on it.
    app.gql(
        Some(&t.admin),
        "mutation { changePlan(planSlug: \"team\", billingCycle: MONTHLY) { status } }",
        json!({}),
    )
    .await
    .ok();
    let on = app
        .gql(Some(&t.member), "{ tenant { plan { slug } } }", json!({}))
        .await;
    assert_eq!(on.ok()["tenant"]["plan"]["slug"], "team");

    // Bad input names its field and writes nothing; an unknown plan is NOT_FOUND.
    for (input, field) in [
        (price("US", "MONTHLY", "dollars", 100), "currency"),
        (price("US", "MONTHLY", "u$d", 100), "currency"),
        (price("US", "MONTHLY", "xyz", 100), "currency"),
        (price("MARS", "MONTHLY", "usd", 100), "region"),
        (price("US", "MONTHLY", "usd", -1), "amount"),
        (price("US", "MONTHLY", "usd", 100_000_000), "amount"),
    ] {
        let e = set(&app, &admin, "team", input.clone()).await;
        assert_eq!(
            e.err("BAD_USER_INPUT")["extensions"]["field"],
            field,
            "{input}"
        );
    }
    let e = set(&app, &admin, "nope", price("US", "MONTHLY", "usd", 100)).await;
    e.err("NOT_FOUND");
    assert_eq!(price_sets(&app, "team").await, 5);
    assert_eq!(n(&app, plan_prices).await, 4);

    // LOCAL applyToExisting moves no money: it is accepted and recorded with the price.
    let input = json!({ "region": "US", "billingCycle": "MONTHLY", "currency": "usd",
        "amount": 6000, "applyToExisting": true });
    set(&app, &admin, "team", input).await.ok();
    let meta = text(
        &mut app.db.superuser().await,
        "select metadata->>'applyToExisting' as v from audit_logs where entity_id = 'team' and action = 'PRICE_SET' order by created_at desc limit 1",
    )
    .await;
    assert_eq!(meta.as_deref(), Some("true"));
}

async fn customer_of(app: &TestApp, t: &TestTenant) -> String {
    let sql = format!(
        "select stripe_customer_id as v from tenants where id = '{}'",
        t.id
    );
    text(&mut app.db.superuser().await, &sql)
        .await
        .expect("a Stripe customer")
}

/// A tenant on `plan` whose Stripe subscription is on `price` (as after a Checkout), applied
/// through the webhook: (tenant, customer, subscription id).
pub(crate) async fn subscribed(
    app: &TestApp,
    fake: &FakeStripe,
    plan: &str,
    price: &str,
) -> (TestTenant, String, String) {
    let t = app.tenant().plan(plan).create().await;
    let customer = customer_of(app, &t).await;
    let sub = fake.create_subscription(&customer, price, "active");
    let id = sub["id"].as_str().unwrap().to_owned();
    let ev = event(
        &format!("evt_new_{id}"),
        "customer.subscription.created",
        now(),
        sub,
    );
    assert_eq!(deliver(&app.base, &ev, SECRET).await.0, 200);
    (t, customer, id)
}

async fn plan_of(app: &TestApp, t: &TestTenant) -> Value {
    let resp = app
        .gql(Some(&t.member), "{ tenant { plan { slug } } }", json!({}))
        .await;
    resp.ok()["tenant"]["plan"]["slug"].clone()
}

fn created_prices(fake: &FakeStripe) -> Vec<Recorded> {
    fake.requests_to("POST", "/v1/prices")
        .into_iter()
        .filter(|r| r.path == "/v1/prices")
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stripe_price_change_is_a_new_price_and_old_subscriptions_keep_their_plan() {
    let (app, fake) = live().await;
    let admin = app.admin_token();
    create_plan(&app, "team").await;
    let plan_id = text(
        &mut app.db.superuser().await,
        "select id::text as v from plans where slug = 'team'",
    )
    .await
    .unwrap();

    // The first price makes the plan's Product and a Price.
    let first = set(&app, &admin, "team", price("US", "MONTHLY", "usd", 1000)).await;
    let first = find(&first.ok()["setPlanPrice"]["prices"], "US", "MONTHLY").clone();
    let price1 = first["stripePriceId"].as_str().unwrap().to_owned();
    let products = fake.requests_to("POST", "/v1/products");
    assert_eq!(products.len(), 1);
    let product_key = format!("product-{plan_id}");
    assert_eq!(
        products[0].idempotency_key.as_deref(),
        Some(product_key.as_str())
    );
    assert_eq!(products[0].param("metadata[plan_slug]"), Some("team"));
    let product = text(
        &mut app.db.superuser().await,
        "select stripe_product_id as v from plans where slug = 'team'",
    )
    .await
    .unwrap();
    let created = created_prices(&fake);
    assert_eq!(created.len(), 1);
    let p = &created[0];
    assert_eq!(p.param("unit_amount"), Some("1000"));
    assert_eq!(p.param("currency"), Some("usd"));
    assert_eq!(p.param("recurring[interval]"), Some("month"));
    assert_eq!(p.param("product"), Some(product.as_str()));
    assert_eq!(p.param("metadata[plan_slug]"), Some("team"));
    assert_eq!(p.param("metadata[region]"), Some("US"));
    assert_eq!(p.param("metadata[billing_cycle]"), Some("MONTHLY"));
    let key = p.idempotency_key.clone().unwrap();
    assert_eq!(key, format!("price-{plan_id}-US-MONTHLY-usd-1000-none"));

    // A second cycle: same Product, a yearly Price. The same price again: nothing.
    let yearly = set(&app, &admin, "team", price("US", "YEARLY", "usd", 10_000)).await;
    yearly.ok();
    assert_eq!(fake.requests_to("POST", "/v1/products").len(), 1);
    let created = created_prices(&fake);
    assert_eq!(created.len(), 2);
    assert_eq!(created[1].param("recurring[interval]"), Some("year"));
    let calls = fake.requests().len();
    set(&app, &admin, "team", price("US", "MONTHLY", "usd", 1000))
        .await
        .ok();
    assert_eq!(fake.requests().len(), calls, "the same price calls no one");
    assert_eq!(price_sets(&app, "team").await, 2);

    // Tenants: A on the team plan's price, B on starter.
    let (a, _, sub_a) = subscribed(&app, &fake, "team", &price1).await;
    assert_eq!(plan_of(&app, &a).await, "team");
    let (b, customer_b, sub_b) =
        subscribed(&app, &fake, "starter", "price_starter_us_monthly").await;

    // A changed amount: a new Price replacing the old, which is archived in Stripe after the
    // commit; no subscription is touched without applyToExisting.
    let updates_before = fake.requests_to("POST", "/v1/subscriptions/").len();
    let changed = set(&app, &admin, "team", price("US", "MONTHLY", "usd", 2000)).await;
    let changed = find(&changed.ok()["setPlanPrice"]["prices"], "US", "MONTHLY").clone();
    let price2 = changed["stripePriceId"].as_str().unwrap().to_owned();
    assert_ne!(price2, price1);
    assert_eq!(changed["amount"], 2000);
    let created = created_prices(&fake);
    assert_eq!(created.len(), 3);
    assert_eq!(created[2].param("unit_amount"), Some("2000"));
    assert_eq!(
        created[2].idempotency_key.as_deref(),
        Some(format!("price-{plan_id}-US-MONTHLY-usd-2000-{price1}").as_str())
    );
    let archived = fake.requests_to("POST", &format!("/v1/prices/{price1}"));
    assert_eq!(archived.len(), 1);
    assert_eq!(archived[0].param("active"), Some("false"));
    assert_eq!(fake.price(&price1)["active"], false);
    assert_eq!(
        fake.requests_to("POST", "/v1/subscriptions/").len(),
        updates_before,
        "no subscription moves without applyToExisting"
    );
    let history = format!("select count(*) as n from plan_stripe_prices where stripe_price_id = '{price1}' and archived_at is not null");
    assert_eq!(n(&app, &history).await, 1);
    assert_eq!(plan_of(&app, &a).await, "team");

    // Stripe reports B's subscription on the archived price: it still maps to the team plan.
    let mut on_old = stripe::subscription(&sub_b, &customer_b, &price1, "active");
    on_old["metadata"] = json!({});
    let ev = event(
        "evt_old_price",
        "customer.subscription.updated",
        now() + 2,
        on_old,
    );
    assert_eq!(deliver(&app.base, &ev, SECRET).await.0, 200);
    assert_eq!(plan_of(&app, &b).await, "team");

    // A tenant moving onto the plan now gets the new price.
    let (c, _, sub_c) = subscribed(&app, &fake, "starter", "price_starter_us_monthly").await;
    app.gql(
        Some(&c.admin),
        "mutation { changePlan(planSlug: \"team\", billingCycle: MONTHLY) { status } }",
        json!({}),
    )
    .await
    .ok();
    let moved = fake.requests_to("POST", &format!("/v1/subscriptions/{sub_c}"));
    assert_eq!(moved.len(), 1);
    assert_eq!(moved[0].param("items[0][price]"), Some(price2.as_str()));
    assert!(fake
        .requests_to("POST", &format!("/v1/subscriptions/{sub_a}"))
        .is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_to_existing_moves_subscriptions_through_plan_change_intents() {
    let (app, fake) = live().await;
    let admin = app.admin_token();
    create_plan(&app, "team").await;
    let first = set(&app, &admin, "team", price("US", "MONTHLY", "usd", 1000)).await;
    let price1 = find(&first.ok()["setPlanPrice"]["prices"], "US", "MONTHLY")["stripePriceId"]
        .as_str()
        .unwrap()
        .to_owned();
    let (a, _, sub_a) = subscribed(&app, &fake, "team", &price1).await;
    // Another plan's subscriber is not touched.
    let (_, _, sub_s) = subscribed(&app, &fake, "starter", "price_starter_us_monthly").await;

    let input = json!({ "region": "US", "billingCycle": "MONTHLY", "currency": "usd",
        "amount": 3000, "applyToExisting": true });
    let set_resp = set(&app, &admin, "team", input.clone()).await;
    let price2 = find(&set_resp.ok()["setPlanPrice"]["prices"], "US", "MONTHLY")["stripePriceId"]
        .as_str()
        .unwrap()
        .to_owned();
    let updates = fake.requests_to("POST", &format!("/v1/subscriptions/{sub_a}"));
    assert_eq!(updates.len(), 1);
    let u = &updates[0];
    assert_eq!(u.param("items[0][price]"), Some(price2.as_str()));
    assert_eq!(u.param("proration_behavior"), Some("create_prorations"));
    let intent = u.param("metadata[plan_change_intent]").unwrap().to_owned();
    assert_eq!(u.idempotency_key.as_deref(), Some(intent.as_str()));
    assert!(fake
        .requests_to("POST", &format!("/v1/subscriptions/{sub_s}"))
        .is_empty());

    let q = "query($id: ID!) { planChangeIntent(id: $id) { status fromPlan { slug } toPlan { slug } } }";
    let pending = app.gql(Some(&a.admin), q, json!({ "id": intent })).await;
    assert_eq!(pending.ok()["planChangeIntent"]["status"], "PENDING");
    assert_eq!(pending.ok()["planChangeIntent"]["toPlan"]["slug"], "team");

    // Stripe confirms through the signed webhook: the intent completes, the plan stays.
    let confirmed = event(
        "evt_repriced",
        "customer.subscription.updated",
        now() + 2,
        fake.subscription(&sub_a),
    );
    assert_eq!(deliver(&app.base, &confirmed, SECRET).await.0, 200);
    let done = app.gql(Some(&a.admin), q, json!({ "id": intent })).await;
    assert_eq!(done.ok()["planChangeIntent"]["status"], "COMPLETED");
    assert_eq!(plan_of(&app, &a).await, "team");

    let sql = "select (changes->'after'->>'moved')::bigint as n from audit_logs where entity_id = 'team' and action = 'PRICE_APPLIED'";
    assert_eq!(n(&app, sql).await, 1);

    // The same price again with applyToExisting retries the ones left: A is on it already.
    let calls = fake.requests_to("POST", "/v1/subscriptions/").len();
    set(&app, &admin, "team", input).await.ok();
    assert_eq!(fake.requests_to("POST", "/v1/subscriptions/").len(), calls);
    assert_eq!(price_sets(&app, "team").await, 2);
    let sql = "select count(*) as n from audit_logs where entity_id = 'team' and action = 'PRICE_APPLIED' and (changes->'after'->>'alreadyOnPrice')::int = 1";
    assert_eq!(n(&app, sql).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stripe_failure_leaves_the_catalogue_unchanged() {
    let (app, fake) = live().await;
    let admin = app.admin_token();
    create_plan(&app, "team").await;
    create_plan(&app, "solo").await;
    set(&app, &admin, "team", price("US", "MONTHLY", "usd", 1000))
        .await
        .ok();
    let snapshot = "select count(*) as n from plan_prices p join plans on plans.id = p.plan_id where plans.slug = 'team' and p.amount = 1000 and p.stripe_price_id is not null";
    assert_eq!(n(&app, snapshot).await, 1);

    fake.fail_with(500, "Stripe is having a bad day");
    let e = set(&app, &admin, "team", price("US", "MONTHLY", "usd", 2000)).await;
    e.err("BILLING_ERROR");
    let e = set(&app, &admin, "solo", price("US", "MONTHLY", "usd", 500)).await;
    e.err("BILLING_ERROR");
    assert_eq!(n(&app, snapshot).await, 1);
    assert_eq!(
        n(&app, "select count(*) as n from plan_stripe_prices p join plans on plans.id = p.plan_id where plans.slug in ('team', 'solo')").await,
        1
    );
    assert_eq!(price_sets(&app, "team").await, 1);
    assert_eq!(price_sets(&app, "solo").await, 0);
    let solo = "select count(*) as n from plans where slug = 'solo' and stripe_product_id is null and not exists (select 1 from plan_prices p where p.plan_id = plans.id)";
    assert_eq!(n(&app, solo).await, 1);

    // Stripe back: the retried mutation goes through.
    fake.heal();
    set(&app, &admin, "team", price("US", "MONTHLY", "usd", 2000))
        .await
        .ok();
    assert_eq!(price_sets(&app, "team").await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_users_may_not_set_prices() {
    let (app, fake) = live().await;
    let t = app.tenant().plan("starter").create().await;
    let rows = "select count(*) as n from plan_prices";
    let before = n(&app, rows).await;
    let calls = fake.requests().len();
    for token in [&t.admin, &t.member] {
        let e = set(&app, token, "starter", price("US", "MONTHLY", "usd", 1)).await;
        e.err("FORBIDDEN");
    }
    assert_eq!(n(&app, rows).await, before);
    assert_eq!(
        n(
            &app,
            "select count(*) as n from plan_prices where amount = 1"
        )
        .await,
        0
    );
    assert_eq!(
        n(
            &app,
            "select count(*) as n from audit_logs where action = 'PRICE_SET'"
        )
        .await,
        0
    );
    assert_eq!(fake.requests().len(), calls, "no request reached Stripe");
}
