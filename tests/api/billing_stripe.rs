//! Billing with Stripe, end to end against the local Stripe-compatible server of
//! `common::stripe`: the requests async-stripe sends (Idempotency-Key, proration, price), the
//! webhook (signatures, exactly-once under concurrent duplicates, out-of-order safety),
//! payment failures and the grace period, Stripe outages, and tenant isolation.

use std::time::Duration;

use crate::common::stripe::{
    self, deliver, deliver_raw, event, invoice, now, signature, FakeStripe,
};
use crate::common::{count, TestApp, TestTenant};
use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use tenantry::jobs::{self, Job};

const SECRET: &str = "whsec_test_primary";
const ROTATED: &str = "whsec_test_rotated";

async fn live() -> (TestApp, FakeStripe) {
    let fake = FakeStripe::start().await;
    let base = fake.base.clone();
    let app = TestApp::spawn_with(|env| {
        env.insert("STRIPE_SECRET_KEY".into(), "sk_test_tenantry".into());
        env.insert("STRIPE_API_BASE".into(), base);
        env.insert(
            "STRIPE_WEBHOOK_SECRET".into(),
            format!("{SECRET}, {ROTATED}"),
        );
        env.insert("STRIPE_TIMEOUT_MS".into(), "1500".into());
    })
    .await;
    (app, fake)
}

async fn customer_of(app: &TestApp, t: &TestTenant) -> String {
    let mut c = app.db.superuser().await;
    let rows: Vec<Value> = json_rows(
        &mut c,
        &format!(
            "select stripe_customer_id as v from tenants where id = '{}'",
            t.id
        ),
    )
    .await;
    rows[0]["v"]
        .as_str()
        .expect("tenant has a Stripe customer")
        .to_owned()
}

async fn json_rows(c: &mut diesel_async::AsyncPgConnection, sql: &str) -> Vec<Value> {
    use diesel::sql_types::Jsonb;
    use diesel_async::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct R {
        #[diesel(sql_type = Jsonb)]
        j: Value,
    }
    let rows: Vec<R> = diesel::sql_query(format!("select to_jsonb(x) as j from ({sql}) x"))
        .load(c)
        .await
        .unwrap();
    rows.into_iter().map(|r| r.j).collect()
}

/// A tenant on `plan` with an active Stripe subscription, as after a completed Checkout.
async fn subscribed(app: &TestApp, fake: &FakeStripe, plan: &str) -> (TestTenant, String, String) {
    let t = app.tenant().plan(plan).create().await;
    let customer = customer_of(app, &t).await;
    let sub = fake.create_subscription(&customer, &format!("price_{plan}_us_monthly"), "active");
    let id = sub["id"].as_str().unwrap().to_owned();
    let ev = event(
        &format!("evt_created_{id}_{}", t.slug),
        "customer.subscription.created",
        now(),
        sub,
    );
    let (status, _) = deliver(&app.base, &ev, SECRET).await;
    assert_eq!(status, 200);
    (t, customer, id)
}

const SUB: &str = "{ billingMode tenant { plan { slug } subscription { status cancelAtPeriodEnd gracePeriodEnd billingCycle plan { slug } } } }";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_change_goes_through_stripe_and_applies_on_the_webhook() {
    let (app, fake) = live().await;
    let (t, customer, sub_id) = subscribed(&app, &fake, "starter").await;

    // Tenant creation made the customer, keyed by the tenant id.
    let customers = fake.requests_to("POST", "/v1/customers");
    assert_eq!(customers.len(), 1);
    assert_eq!(
        customers[0].idempotency_key.as_deref(),
        Some(format!("customer-{}", t.id).as_str())
    );
    assert_eq!(
        customers[0].param("metadata[tenant_id]"),
        Some(t.id.to_string().as_str())
    );
    assert_eq!(
        customers[0].authorization.as_deref(),
        Some("Bearer sk_test_tenantry")
    );

    let resp = app.gql(Some(&t.member), SUB, json!({})).await;
    assert_eq!(resp.ok()["billingMode"], "STRIPE");
    assert_eq!(resp.ok()["tenant"]["subscription"]["status"], "ACTIVE");

    app.record_usage(&t.member, "users", 4).await.ok();

    let resp = app
        .gql(
            Some(&t.admin),
            "mutation { changePlan(planSlug: \"professional\", billingCycle: MONTHLY) { id status version fromPlan { slug } toPlan { slug } } }",
            json!({}),
        )
        .await;
    let intent = resp.ok()["changePlan"].clone();
    assert_eq!(intent["status"], "PENDING");
    assert_eq!(intent["version"], 1);
    let intent_id = intent["id"].as_str().unwrap().to_owned();

    let updates = fake.requests_to("POST", &format!("/v1/subscriptions/{sub_id}"));
    assert_eq!(updates.len(), 1);
    let u = &updates[0];
    assert_eq!(u.idempotency_key.as_deref(), Some(intent_id.as_str()));
    assert_eq!(u.param("proration_behavior"), Some("create_prorations"));
    assert_eq!(
        u.param("items[0][price]"),
        Some("price_professional_us_monthly")
    );
    assert_eq!(
        u.param("items[0][id]"),
        Some(format!("si_{sub_id}").as_str())
    );
    assert_eq!(
        u.param("metadata[plan_change_intent]"),
        Some(intent_id.as_str())
    );

    // Nothing switches before Stripe confirms.
    let resp = app.gql(Some(&t.member), SUB, json!({})).await;
    assert_eq!(resp.ok()["tenant"]["plan"]["slug"], "starter");

    let confirmed = event(
        "evt_confirm",
        "customer.subscription.updated",
        now(),
        fake.subscription(&sub_id),
    );
    assert_eq!(deliver(&app.base, &confirmed, SECRET).await.0, 200);

    let resp = app
        .gql(
            Some(&t.member),
            "query($id: ID!) { planChangeIntent(id: $id) { status version completedAt }
               tenant { plan { slug } subscription { plan { slug } } quotas { resource limit used }
                        features { key enabled } } }",
            json!({ "id": intent_id }),
        )
        .await;
    let d = resp.ok();
    assert_eq!(d["planChangeIntent"]["status"], "COMPLETED");
    assert_eq!(d["planChangeIntent"]["version"], 2);
    assert_eq!(d["tenant"]["plan"]["slug"], "professional");
    assert_eq!(d["tenant"]["subscription"]["plan"]["slug"], "professional");
    let users = d["tenant"]["quotas"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["resource"] == "users")
        .unwrap();
    assert_eq!(users["limit"], 100);
    assert_eq!(users["used"], 4, "usage is kept across the switch");
    let analytics = d["tenant"]["features"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["key"] == "advanced_analytics")
        .unwrap();
    assert_eq!(analytics["enabled"], true);

    let mut c = app.db.superuser().await;
    let audit = json_rows(
        &mut c,
        &format!("select action, actor_type, actor_id from audit_logs where tenant_id = '{}' and action like 'PLAN_CHANGE%' order by created_at", t.id),
    )
    .await;
    assert_eq!(audit[0]["action"], "PLAN_CHANGE_REQUESTED");
    assert_eq!(audit[0]["actor_type"], "USER");
    assert_eq!(audit[1]["action"], "PLAN_CHANGE");
    assert_eq!(audit[1]["actor_type"], "WEBHOOK");
    assert_eq!(audit[1]["actor_id"], "evt_confirm");
    let _ = customer;

    // Stripe's invoice preview gives the proration (-1000 + 2500 in the fake's answer).
    let q = "{ previewPlanChange(planSlug: \"starter\") { prorationAmount currency } }";
    let stripe_calls = || fake.requests().len();
    let before = stripe_calls();
    let resp = app.gql(Some(&t.admin), q, json!({})).await;
    assert_eq!(
        resp.ok()["previewPlanChange"],
        json!({ "prorationAmount": 1500, "currency": "usd" })
    );
    let one_preview = stripe_calls() - before;
    assert_eq!(
        one_preview, 2,
        "a preview reads the subscription and previews the invoice"
    );
    // The same preview again is answered from the cache: no Stripe call.
    let resp = app.gql(Some(&t.admin), q, json!({})).await;
    assert_eq!(resp.ok()["previewPlanChange"]["prorationAmount"], 1500);
    assert_eq!(stripe_calls() - before, one_preview);
    // Members may not make the server call Stripe at all.
    app.gql(Some(&t.member), q, json!({}))
        .await
        .err("FORBIDDEN");
    let yearly = "{ previewPlanChange(planSlug: \"starter\", billingCycle: YEARLY) { currency } }";
    app.gql(Some(&t.member), yearly, json!({}))
        .await
        .err("FORBIDDEN");
    assert_eq!(stripe_calls() - before, one_preview);
    // Any change of the tenant (plan, subscription, status) drops its cached previews.
    app.app.tenant_changed(t.id.into()).await;
    app.gql(Some(&t.admin), q, json!({})).await.ok();
    assert_eq!(stripe_calls() - before, 2 * one_preview);
    let preview = fake.requests_to("POST", "/v1/invoices/create_preview");
    assert_eq!(
        preview[0].param("subscription_details[items][0][price]"),
        Some("price_starter_us_monthly")
    );
    assert_eq!(
        preview[0].param("subscription_details[proration_behavior]"),
        Some("create_prorations")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_event_fifty_times_at_once_has_one_effect() {
    let (app, fake) = live().await;
    let (t, customer, sub_id) = subscribed(&app, &fake, "starter").await;
    let ev = event(
        "evt_paid_once",
        "invoice.paid",
        now(),
        invoice("in_once", &customer, &sub_id, "paid", 4900),
    );
    let base = app.base.clone();
    let deliveries: Vec<_> = (0..50)
        .map(|_| {
            let (base, ev) = (base.clone(), ev.clone());
            tokio::spawn(async move { deliver(&base, &ev, SECRET).await.0 })
        })
        .collect();
    for d in deliveries {
        assert_eq!(d.await.unwrap(), 200);
    }
    let mut c = app.db.superuser().await;
    assert_eq!(
        count(
            &mut c,
            "select count(*) as n from stripe_events where id = 'evt_paid_once'"
        )
        .await,
        1
    );
    assert_eq!(count(&mut c, "select count(*) as n from stripe_events where id = 'evt_paid_once' and status = 'PROCESSED' and attempts = 1").await, 1);
    assert_eq!(
        count(
            &mut c,
            "select count(*) as n from invoices where stripe_invoice_id = 'in_once'"
        )
        .await,
        1
    );
    assert_eq!(
        count(&mut c, &format!("select count(*) as n from audit_logs where tenant_id = '{}' and entity_type = 'invoice'", t.id)).await,
        1
    );
    let resp = app
        .gql(Some(&t.member), "{ tenant { invoices(first: 5) { edges { node { stripeInvoiceId amountDue amountPaid currency status paidAt hostedInvoiceUrl } } } } }", json!({}))
        .await;
    let inv = &resp.ok()["tenant"]["invoices"]["edges"][0]["node"];
    assert_eq!(inv["stripeInvoiceId"], "in_once");
    assert_eq!(inv["status"], "PAID");
    assert_eq!(inv["amountPaid"], 4900);
    assert!(inv["paidAt"].is_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_subscription_state_never_overwrites_a_newer_one() {
    let (app, fake) = live().await;
    let (t, _customer, sub_id) = subscribed(&app, &fake, "starter").await;
    let mut newer = fake.subscription(&sub_id);
    newer["cancel_at_period_end"] = json!(true);
    let mut older = fake.subscription(&sub_id);
    older["cancel_at_period_end"] = json!(false);
    older["status"] = json!("past_due");
    let t0 = now();
    assert_eq!(
        deliver(
            &app.base,
            &event("evt_newer", "customer.subscription.updated", t0 + 5, newer),
            SECRET
        )
        .await
        .0,
        200
    );
    assert_eq!(
        deliver(
            &app.base,
            &event("evt_older", "customer.subscription.updated", t0 - 60, older),
            SECRET
        )
        .await
        .0,
        200
    );
    let resp = app.gql(Some(&t.member), SUB, json!({})).await;
    let s = &resp.ok()["tenant"]["subscription"];
    assert_eq!(s["cancelAtPeriodEnd"], true);
    assert_eq!(s["status"], "ACTIVE");
    let resp = app
        .gql(Some(&app.admin_token()), "{ webhookEvents(first: 10, filter: { type: \"customer.subscription.updated\" }) { edges { node { id status note attempts } } } }", json!({}))
        .await;
    let nodes: Vec<Value> = resp.ok()["webhookEvents"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"].clone())
        .collect();
    let older = nodes.iter().find(|n| n["id"] == "evt_older").unwrap();
    assert_eq!(older["status"], "IGNORED");
    assert_eq!(older["note"], "older than the stored state");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_signatures_are_refused_and_nothing_is_stored() {
    let (app, fake) = live().await;
    let (_t, customer, sub_id) = subscribed(&app, &fake, "starter").await;
    let ev = event(
        "evt_sig",
        "invoice.created",
        now(),
        invoice("in_sig", &customer, &sub_id, "draft", 4900),
    );
    let body = ev.to_string();
    let good = signature(SECRET, now(), &body);
    let tampered = good.replace("v1=", "v1=0");
    let stale = signature(SECRET, now() - 301, &body);
    let unknown = signature("whsec_someone_else", now(), &body);
    for header in [
        tampered.as_str(),
        stale.as_str(),
        unknown.as_str(),
        "",
        "t=abc,v1=00",
        // Header-derived numbers at the edges of i64: refused like any bad signature (the
        // tolerance arithmetic used to overflow and panic).
        "t=-9223372036854775808,v1=00",
        "t=9223372036854775807,v1=00",
        "t=-9223372036854775809,v1=00",
    ] {
        let (status, body) = deliver_raw(&app.base, &ev.to_string(), header).await;
        assert_eq!(status, 400, "{header}: {body}");
    }
    let mut c = app.db.superuser().await;
    assert_eq!(
        count(
            &mut c,
            "select count(*) as n from stripe_events where id = 'evt_sig'"
        )
        .await,
        0
    );
    assert_eq!(
        count(
            &mut c,
            "select count(*) as n from invoices where stripe_invoice_id = 'in_sig'"
        )
        .await,
        0
    );

    // Several v1 values (one of them right), and the rotated second secret, pass.
    let t = now();
    let multi = format!(
        "t={t},v1={},{}",
        "ab".repeat(32),
        signature(ROTATED, t, &body).split(',').nth(1).unwrap()
    );
    assert_eq!(deliver_raw(&app.base, &body, &multi).await.0, 200);
    assert_eq!(
        count(
            &mut c,
            "select count(*) as n from stripe_events where id = 'evt_sig' and status = 'PROCESSED'"
        )
        .await,
        1
    );
    assert_eq!(count(&mut c, "select count(*) as n from invoices where stripe_invoice_id = 'in_sig' and status = 'DRAFT'").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_payment_grace_period_suspension_and_recovery() {
    let (app, fake) = live().await;
    let (t, customer, sub_id) = subscribed(&app, &fake, "starter").await;
    let failed = event(
        "evt_fail",
        "invoice.payment_failed",
        now(),
        invoice("in_due", &customer, &sub_id, "open", 4900),
    );
    assert_eq!(deliver(&app.base, &failed, SECRET).await.0, 200);
    let resp = app.gql(Some(&t.member), SUB, json!({})).await;
    let s = &resp.ok()["tenant"]["subscription"];
    assert_eq!(s["status"], "PAST_DUE");
    let grace: DateTime<Utc> = s["gracePeriodEnd"].as_str().unwrap().parse().unwrap();
    let days = (grace - Utc::now()).num_minutes() as f64 / 1440.0;
    assert!((6.99..=7.01).contains(&days), "{days}");

    // The grace period ends: the job suspends the tenant, as SYSTEM.
    let mut c = app.db.superuser().await;
    count(&mut c, &format!("with u as (update billing_subscriptions set grace_period_end = now() - interval '1 hour' where tenant_id = '{}' returning 1) select count(*) as n from u", t.id)).await;
    assert_eq!(
        jobs::run_once(&app.app, Job::GraceSuspension)
            .await
            .unwrap(),
        jobs::Outcome::Done(1)
    );
    let rows = json_rows(
        &mut c,
        &format!(
            "select status, suspend_reason from tenants where id = '{}'",
            t.id
        ),
    )
    .await;
    assert_eq!(rows[0]["status"], "SUSPENDED");
    assert_eq!(
        count(&mut c, &format!("select count(*) as n from audit_logs where tenant_id = '{}' and action = 'SUSPEND' and actor_type = 'SYSTEM'", t.id)).await,
        1
    );
    let resp = app
        .gql(
            Some(&t.admin),
            "mutation { updateTenant(input: { name: \"x\" }) { id } }",
            json!({}),
        )
        .await;
    assert!(resp.code().is_some());

    // The invoice gets paid: invoice PAID, subscription ACTIVE, tenant back.
    let paid = event(
        "evt_paid",
        "invoice.paid",
        now() + 1,
        invoice("in_due", &customer, &sub_id, "paid", 4900),
    );
    assert_eq!(deliver(&app.base, &paid, SECRET).await.0, 200);
    let resp = app.gql(Some(&t.member), "{ tenant { status subscription { status gracePeriodEnd } invoices(first: 5) { edges { node { status } } } } }", json!({})).await;
    let d = &resp.ok()["tenant"];
    assert_eq!(d["status"], "ACTIVE");
    assert_eq!(d["subscription"]["status"], "ACTIVE");
    assert!(d["subscription"]["gracePeriodEnd"].is_null());
    assert_eq!(d["invoices"]["edges"][0]["node"]["status"], "PAID");

    // The tenant's notifications, in order, each written with its cause: the failed
    // payment, the suspension, the reactivation.
    let events = json_rows(
        &mut c,
        &format!(
            "select event_type from notification_outbox where tenant_id = '{}' order by seq",
            t.id
        ),
    )
    .await;
    let types: Vec<&str> = events
        .iter()
        .map(|e| e["event_type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "invoice.payment_failed",
            "tenant.suspended",
            "tenant.reactivated"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stripe_errors_and_timeouts_fail_the_intent_and_change_nothing() {
    let (app, fake) = live().await;
    let (t, _customer, _sub) = subscribed(&app, &fake, "starter").await;

    fake.fail_with(500, "Stripe is having a bad day");
    let resp = app.change_plan(&t.admin, "professional").await;
    let err = resp.err("BILLING_ERROR");
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .contains("Stripe is having a bad day"),
        "{err}"
    );

    fake.heal();
    fake.stall(Duration::from_secs(4));
    let started = std::time::Instant::now();
    let resp = app.change_plan(&t.admin, "professional").await;
    resp.err("BILLING_ERROR");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "the timeout applies"
    );
    fake.heal();

    let mut c = app.db.superuser().await;
    let intents = json_rows(
        &mut c,
        &format!(
            "select status, version, error from plan_change_intents where tenant_id = '{}'",
            t.id
        ),
    )
    .await;
    assert_eq!(intents.len(), 2);
    for i in &intents {
        assert_eq!(i["status"], "FAILED");
        assert_eq!(i["version"], 2);
        assert!(i["error"].is_string());
    }
    let resp = app.gql(Some(&t.member), SUB, json!({})).await;
    assert_eq!(resp.ok()["tenant"]["plan"]["slug"], "starter");
    assert_eq!(
        resp.ok()["tenant"]["subscription"]["plan"]["slug"],
        "starter"
    );

    // With Stripe failing, tenant creation keeps nothing.
    fake.fail_with(402, "card declined");
    let resp = app
        .gql(
            Some(&app.admin_token()),
            "mutation { createTenant(input: { name: \"Nope\", slug: \"nope-billing\" }) { id } }",
            json!({}),
        )
        .await;
    resp.err("BILLING_ERROR");
    assert_eq!(
        count(
            &mut c,
            "select count(*) as n from tenants where slug = 'nope-billing'"
        )
        .await,
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_mode_applies_at_once_without_any_http_call() {
    let fake = FakeStripe::start().await;
    let base = fake.base.clone();
    let app = TestApp::spawn_with(|env| {
        env.insert("STRIPE_API_BASE".into(), base);
    })
    .await;
    let t = app.tenant().plan("starter").create().await;
    let resp = app.change_plan(&t.admin, "professional").await;
    assert_eq!(resp.ok()["changePlan"]["status"], "COMPLETED");
    let resp = app.gql(Some(&t.member), SUB, json!({})).await;
    assert_eq!(resp.ok()["billingMode"], "LOCAL");
    assert_eq!(resp.ok()["tenant"]["plan"]["slug"], "professional");
    assert!(fake.requests().is_empty(), "{:?}", fake.requests());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkout_cancel_and_resume_go_through_stripe() {
    let (app, fake) = live().await;
    let t = app.tenant().plan("starter").create().await;
    let customer = customer_of(&app, &t).await;
    let resp = app
        .gql(
            Some(&t.admin),
            "mutation { createCheckoutSession(planSlug: \"professional\", billingCycle: YEARLY, successUrl: \"https://app.test/ok\", cancelUrl: \"https://app.test/no\") { id url } }",
            json!({}),
        )
        .await;
    let s = &resp.ok()["createCheckoutSession"];
    assert!(
        s["url"]
            .as_str()
            .unwrap()
            .starts_with("https://checkout.stripe.test/"),
        "{s}"
    );
    assert!(s["id"].as_str().unwrap().starts_with("cs_test_"), "{s}");
    let req = &fake.requests_to("POST", "/v1/checkout/sessions")[0];
    assert_eq!(req.param("mode"), Some("subscription"));
    assert_eq!(req.param("customer"), Some(customer.as_str()));
    assert_eq!(
        req.param("line_items[0][price]"),
        Some("price_professional_us_yearly")
    );
    assert_eq!(
        req.param("client_reference_id"),
        Some(t.id.to_string().as_str())
    );
    assert_eq!(req.param("success_url"), Some("https://app.test/ok"));
    assert!(req.idempotency_key.is_some());

    // Stripe completes the Checkout and reports the subscription.
    let sub = fake.create_subscription(&customer, "price_professional_us_yearly", "active");
    let sub_id = sub["id"].as_str().unwrap().to_owned();
    let mut session = json!({ "id": "cs_done", "object": "checkout.session", "customer": customer, "subscription": sub_id, "client_reference_id": t.id.to_string() });
    session["mode"] = json!("subscription");
    assert_eq!(
        deliver(
            &app.base,
            &event("evt_cs", "checkout.session.completed", now(), session),
            SECRET
        )
        .await
        .0,
        200
    );
    assert_eq!(
        deliver(
            &app.base,
            &event("evt_sub", "customer.subscription.created", now(), sub),
            SECRET
        )
        .await
        .0,
        200
    );
    let resp = app.gql(Some(&t.member), SUB, json!({})).await;
    assert_eq!(resp.ok()["tenant"]["plan"]["slug"], "professional");
    assert_eq!(
        resp.ok()["tenant"]["subscription"]["billingCycle"],
        "YEARLY"
    );

    // A second Checkout is refused: the tenant has a paid subscription.
    let resp = app
        .gql(Some(&t.admin), "mutation { createCheckoutSession(planSlug: \"starter\", successUrl: \"https://a.test\", cancelUrl: \"https://a.test\") { url } }", json!({}))
        .await;
    resp.err("CONFLICT");

    let resp = app
        .gql(
            Some(&t.admin),
            "mutation { cancelSubscription(atPeriodEnd: true) { status cancelAtPeriodEnd } }",
            json!({}),
        )
        .await;
    assert_eq!(resp.ok()["cancelSubscription"]["cancelAtPeriodEnd"], true);
    let req = fake.requests_to("POST", &format!("/v1/subscriptions/{sub_id}"));
    assert_eq!(
        req.last().unwrap().param("cancel_at_period_end"),
        Some("true")
    );
    let resp = app
        .gql(
            Some(&t.admin),
            "mutation { resumeSubscription { status cancelAtPeriodEnd } }",
            json!({}),
        )
        .await;
    assert_eq!(resp.ok()["resumeSubscription"]["cancelAtPeriodEnd"], false);
    let req = fake.requests_to("POST", &format!("/v1/subscriptions/{sub_id}"));
    assert_eq!(
        req.last().unwrap().param("cancel_at_period_end"),
        Some("false")
    );
    let resp = app
        .gql(
            Some(&t.admin),
            "mutation { cancelSubscription(atPeriodEnd: false) { status } }",
            json!({}),
        )
        .await;
    assert_eq!(resp.ok()["cancelSubscription"]["status"], "CANCELED");
    assert_eq!(
        fake.requests_to("DELETE", &format!("/v1/subscriptions/{sub_id}"))
            .len(),
        1
    );
    // The subscription has ended: the tenant falls back to the free plan (and its quotas).
    let resp = app.gql(Some(&t.member), SUB, json!({})).await;
    assert_eq!(resp.ok()["tenant"]["plan"]["slug"], "free");
    assert_eq!(resp.ok()["tenant"]["subscription"]["status"], "CANCELED");
    let ended = event(
        "evt_deleted",
        "customer.subscription.deleted",
        now() + 1,
        fake.subscription(&sub_id),
    );
    assert_eq!(deliver(&app.base, &ended, SECRET).await.0, 200);
    let resp = app.gql(Some(&t.member), SUB, json!({})).await;
    assert_eq!(resp.ok()["tenant"]["subscription"]["status"], "CANCELED");
    assert_eq!(resp.ok()["tenant"]["subscription"]["plan"]["slug"], "free");
    assert_eq!(resp.ok()["tenant"]["plan"]["slug"], "free");
    // An event of some other subscription of the customer never moves the tenant's own.
    let other = fake.create_subscription(&customer, "price_starter_us_monthly", "active");
    let new_sub = fake.create_subscription(&customer, "price_starter_us_monthly", "active");
    assert_eq!(
        deliver(
            &app.base,
            &event(
                "evt_new",
                "customer.subscription.created",
                now() + 2,
                new_sub
            ),
            SECRET
        )
        .await
        .0,
        200
    );
    let mut gone = other.clone();
    gone["status"] = json!("canceled");
    assert_eq!(
        deliver(
            &app.base,
            &event(
                "evt_other",
                "customer.subscription.deleted",
                now() + 3,
                gone
            ),
            SECRET
        )
        .await
        .0,
        200
    );
    let resp = app.gql(Some(&t.member), SUB, json!({})).await;
    assert_eq!(resp.ok()["tenant"]["subscription"]["status"], "ACTIVE");
    assert_eq!(resp.ok()["tenant"]["plan"]["slug"], "starter");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_never_see_or_touch_each_others_billing() {
    let (app, fake) = live().await;
    let (a, _ca, _) = subscribed(&app, &fake, "starter").await;
    let (b, cb, sub_b) = subscribed(&app, &fake, "starter").await;
    let resp = app.change_plan(&b.admin, "professional").await;
    let b_intent = resp.ok()["changePlan"]["id"].as_str().unwrap().to_owned();

    let resp = app
        .gql(
            Some(&a.admin),
            "query($id: ID!) { planChangeIntent(id: $id) { id } }",
            json!({ "id": b_intent }),
        )
        .await;
    resp.err("NOT_FOUND");
    let resp = app
        .gql(Some(&a.admin), "query($id: ID!) { tenant(id: $id) { subscription { status } invoices(first: 1) { edges { node { id } } } } }", json!({ "id": b.id.to_string() }))
        .await;
    assert!(
        matches!(resp.code(), Some("FORBIDDEN" | "NOT_FOUND")),
        "{:?}",
        resp.body
    );

    // B's payment fails: only B changes.
    let failed = event(
        "evt_b_fail",
        "invoice.payment_failed",
        now(),
        invoice("in_b", &cb, &sub_b, "open", 4900),
    );
    assert_eq!(deliver(&app.base, &failed, SECRET).await.0, 200);
    let a_sub = app.gql(Some(&a.member), SUB, json!({})).await;
    assert_eq!(a_sub.ok()["tenant"]["subscription"]["status"], "ACTIVE");
    assert!(a_sub.ok()["tenant"]["subscription"]["gracePeriodEnd"].is_null());
    let a_inv = app
        .gql(
            Some(&a.member),
            "{ tenant { invoices(first: 5) { edges { node { id } } } } }",
            json!({}),
        )
        .await;
    assert_eq!(a_inv.ok()["tenant"]["invoices"]["edges"], json!([]));
    let b_sub = app.gql(Some(&b.member), SUB, json!({})).await;
    assert_eq!(b_sub.ok()["tenant"]["subscription"]["status"], "PAST_DUE");

    // An event for a customer nobody has is recorded, acknowledged and changes nothing.
    let stranger = event(
        "evt_stranger",
        "invoice.paid",
        now(),
        invoice("in_x", "cus_nobody", "sub_x", "paid", 100),
    );
    assert_eq!(deliver(&app.base, &stranger, SECRET).await.0, 200);
    let mut c = app.db.superuser().await;
    assert_eq!(count(&mut c, "select count(*) as n from stripe_events where id = 'evt_stranger' and status = 'IGNORED' and tenant_id is null").await, 1);
    assert_eq!(
        count(
            &mut c,
            "select count(*) as n from invoices where stripe_invoice_id = 'in_x'"
        )
        .await,
        0
    );

    // Tenants cannot list webhook events.
    let resp = app
        .gql(
            Some(&a.admin),
            "{ webhookEvents(first: 5) { edges { node { id } } } }",
            json!({}),
        )
        .await;
    resp.err("FORBIDDEN");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_event_is_listed_replayed_and_retried() {
    let (app, fake) = live().await;
    let (_t, customer, sub_id) = subscribed(&app, &fake, "starter").await;
    let mut c = app.db.superuser().await;
    // A transient database failure: invoices refuse big amounts for a while.
    use diesel_async::SimpleAsyncConnection;
    c.batch_execute("alter table invoices add constraint tmp_small check (amount_due < 1000000)")
        .await
        .unwrap();
    let ev = event(
        "evt_big",
        "invoice.created",
        now(),
        invoice("in_big", &customer, &sub_id, "draft", 2_000_000),
    );
    let ev2 = event(
        "evt_big2",
        "invoice.created",
        now(),
        invoice("in_big2", &customer, &sub_id, "draft", 3_000_000),
    );
    assert_eq!(deliver(&app.base, &ev, SECRET).await.0, 500);
    assert_eq!(deliver(&app.base, &ev2, SECRET).await.0, 500);
    let resp = app
        .gql(Some(&app.admin_token()), "{ webhookEvents(first: 1, filter: { status: FAILED }) { totalCount pageInfo { hasNextPage } edges { node { id attempts lastError nextAttemptAt apiVersion } } } }", json!({}))
        .await;
    let edges = resp.ok()["webhookEvents"]["edges"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(edges.len(), 1);
    assert_eq!(resp.ok()["webhookEvents"]["totalCount"], 2);
    assert_eq!(resp.ok()["webhookEvents"]["pageInfo"]["hasNextPage"], true);
    assert_eq!(edges[0]["node"]["attempts"], 1);
    // Recorded although the first pass rolled back.
    assert_eq!(edges[0]["node"]["apiVersion"], "2026-09-30.endive");
    assert!(edges[0]["node"]["nextAttemptAt"].is_string());
    let resp = app
        .gql(
            Some(&app.admin_token()),
            "{ platformStats { webhookFailures } }",
            json!({}),
        )
        .await;
    assert_eq!(resp.ok()["platformStats"]["webhookFailures"], 2);

    c.batch_execute("alter table invoices drop constraint tmp_small")
        .await
        .unwrap();
    let resp = app
        .gql(
            Some(&app.admin_token()),
            "mutation { replayWebhookEvent(id: \"evt_big\") { status attempts } }",
            json!({}),
        )
        .await;
    assert_eq!(
        resp.ok()["replayWebhookEvent"],
        json!({ "status": "PROCESSED", "attempts": 2 })
    );
    assert_eq!(
        count(&mut c, "select count(*) as n from audit_logs where action = 'REPLAY' and entity_id = 'evt_big' and actor_type = 'ADMIN'").await,
        1
    );
    let resp = app
        .gql(
            Some(&app.admin_token()),
            "mutation { replayWebhookEvent(id: \"evt_big\") { status } }",
            json!({}),
        )
        .await;
    resp.err("CONFLICT");
    let resp = app
        .gql(
            Some(&app.admin_token()),
            "mutation { replayWebhookEvent(id: \"evt_nope\") { status } }",
            json!({}),
        )
        .await;
    resp.err("NOT_FOUND");

    // The retry job picks up the other one once its backoff has passed.
    assert_eq!(
        jobs::run_once(&app.app, Job::WebhookRetry).await.unwrap(),
        jobs::Outcome::Done(0)
    );
    count(&mut c, "with u as (update stripe_events set next_attempt_at = now() - interval '1 second' where id = 'evt_big2' returning 1) select count(*) as n from u").await;
    assert_eq!(
        jobs::run_once(&app.app, Job::WebhookRetry).await.unwrap(),
        jobs::Outcome::Done(1)
    );
    assert_eq!(
        count(
            &mut c,
            "select count(*) as n from invoices where stripe_invoice_id in ('in_big', 'in_big2')"
        )
        .await,
        2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soft_overage_is_reported_to_stripe_once() {
    let (app, fake) = live().await;
    let (t, customer, _) = subscribed(&app, &fake, "starter").await;
    let mut c = app.db.superuser().await;
    let soft = json_rows(&mut c, &format!("select resource from quotas where tenant_id = '{}' and enforcement = 'SOFT' order by resource limit 1", t.id)).await;
    let resource = soft[0]["resource"].as_str().unwrap().to_owned();
    count(&mut c, &format!("with u as (update quotas set \"limit\" = 5 where tenant_id = '{}' and resource = '{resource}' returning 1) select count(*) as n from u", t.id)).await;
    // Tenant admins may run a SOFT quota into overage (members only up to its limit).
    app.record_usage(&t.admin, &resource, 8).await.ok();

    let report = tenantry::billing::usage::report(&app.app.db, app.app.payments.as_deref())
        .await
        .unwrap();
    assert_eq!(report.reported, 1);
    let sent = fake.requests_to("POST", "/v1/billing/meter_events");
    assert_eq!(sent.len(), 1);
    assert_eq!(
        sent[0].param("event_name"),
        Some(format!("tenantry_{resource}").as_str())
    );
    assert_eq!(sent[0].param("payload[value]"), Some("3"));
    assert_eq!(
        sent[0].param("payload[stripe_customer_id]"),
        Some(customer.as_str())
    );
    let first_id = sent[0].param("identifier").unwrap().to_owned();
    assert_eq!(sent[0].idempotency_key.as_deref(), Some(first_id.as_str()));

    // Nothing new: nothing sent.
    tenantry::billing::usage::report(&app.app.db, app.app.payments.as_deref())
        .await
        .unwrap();
    assert_eq!(
        fake.requests_to("POST", "/v1/billing/meter_events").len(),
        1
    );

    // More overage while Stripe is down: the same pending report is resent once it is back.
    app.record_usage(&t.admin, &resource, 2).await.ok();
    fake.fail_with(500, "down");
    let r = tenantry::billing::usage::report(&app.app.db, app.app.payments.as_deref())
        .await
        .unwrap();
    assert_eq!(r.failed, 1);
    fake.heal();
    let r = tenantry::billing::usage::report(&app.app.db, app.app.payments.as_deref())
        .await
        .unwrap();
    assert_eq!(r.reported, 1);
    let sent = fake.requests_to("POST", "/v1/billing/meter_events");
    assert_eq!(sent.len(), 3);
    assert_eq!(sent[1].param("identifier"), sent[2].param("identifier"));
    // Exactly the same parameters: Stripe refuses a reused Idempotency-Key with other ones.
    let sorted = |r: &stripe::Recorded| {
        let mut f = r.form.clone();
        f.sort();
        f
    };
    assert_eq!(sorted(&sent[1]), sorted(&sent[2]));
    assert_eq!(sent[2].param("payload[value]"), Some("2"));
    assert_ne!(sent[2].param("identifier"), Some(first_id.as_str()));
    assert_eq!(
        count(
            &mut c,
            &format!(
                "select reported_quantity as n from usage_reports where tenant_id = '{}'",
                t.id
            )
        )
        .await,
        5
    );
    let _ = stripe::now();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_intent_expires_after_a_day_but_stripe_stays_the_source_of_truth() {
    let (app, fake) = live().await;
    let (t, _customer, sub_id) = subscribed(&app, &fake, "starter").await;
    let resp = app.change_plan(&t.admin, "professional").await;
    let intent_id = resp.ok()["changePlan"]["id"].as_str().unwrap().to_owned();
    // One plan change at a time.
    app.change_plan(&t.admin, "professional")
        .await
        .err("CONFLICT");

    let mut c = app.db.superuser().await;
    count(&mut c, &format!("with u as (update plan_change_intents set expires_at = now() - interval '1 minute' where id = '{intent_id}' returning 1) select count(*) as n from u")).await;
    assert_eq!(
        jobs::run_once(&app.app, Job::IntentExpiry).await.unwrap(),
        jobs::Outcome::Done(1)
    );
    let q =
        "query($id: ID!) { planChangeIntent(id: $id) { status version } tenant { plan { slug } } }";
    let resp = app
        .gql(Some(&t.member), q, json!({ "id": intent_id }))
        .await;
    assert_eq!(
        resp.ok()["planChangeIntent"],
        json!({ "status": "EXPIRED", "version": 2 })
    );
    assert_eq!(
        count(&mut c, &format!("select count(*) as n from audit_logs where entity_id = '{intent_id}' and action = 'EXPIRE' and actor_type = 'SYSTEM'")).await,
        1
    );

    // Stripe applied the change after all: the tenant follows Stripe; the intent stays EXPIRED.
    let late = event(
        "evt_late",
        "customer.subscription.updated",
        now(),
        fake.subscription(&sub_id),
    );
    assert_eq!(deliver(&app.base, &late, SECRET).await.0, 200);
    let resp = app
        .gql(Some(&t.member), q, json!({ "id": intent_id }))
        .await;
    assert_eq!(resp.ok()["tenant"]["plan"]["slug"], "professional");
    assert_eq!(resp.ok()["planChangeIntent"]["status"], "EXPIRED");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_confirmation_overtaken_by_a_later_state_is_not_lost() {
    let (app, fake) = live().await;
    let (t, customer, sub_id) = subscribed(&app, &fake, "starter").await;
    let resp = app.change_plan(&t.admin, "professional").await;
    let intent_id = resp.ok()["changePlan"]["id"].as_str().unwrap().to_owned();
    let confirmation = event(
        "evt_slow",
        "customer.subscription.updated",
        now(),
        fake.subscription(&sub_id),
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;

    // Before the confirmation arrives, our own call returns Stripe's newer state, which
    // already has the new price: the plan switches then and the intent completes.
    let resp = app
        .gql(Some(&t.admin), "mutation { cancelSubscription(atPeriodEnd: true) { cancelAtPeriodEnd plan { slug } } }", json!({}))
        .await;
    assert_eq!(
        resp.ok()["cancelSubscription"],
        json!({ "cancelAtPeriodEnd": true, "plan": { "slug": "professional" } })
    );
    assert_eq!(deliver(&app.base, &confirmation, SECRET).await.0, 200);
    let q = "query($id: ID!) { planChangeIntent(id: $id) { status } tenant { plan { slug } subscription { status cancelAtPeriodEnd } } }";
    let resp = app
        .gql(Some(&t.member), q, json!({ "id": intent_id }))
        .await;
    assert_eq!(resp.ok()["planChangeIntent"]["status"], "COMPLETED");
    assert_eq!(resp.ok()["tenant"]["plan"]["slug"], "professional");
    assert_eq!(
        resp.ok()["tenant"]["subscription"]["cancelAtPeriodEnd"],
        true
    );

    // A payment outcome newer than a subscription state keeps the status, but the state's
    // other fields still apply.
    let paid = event(
        "evt_paid_new",
        "invoice.paid",
        now() + 20,
        invoice("in_new", &customer, &sub_id, "paid", 9900),
    );
    let failed = event(
        "evt_failed_old",
        "invoice.payment_failed",
        now() + 10,
        invoice("in_old", &customer, &sub_id, "open", 9900),
    );
    let mut state = fake.subscription(&sub_id);
    state["status"] = json!("past_due");
    state["cancel_at_period_end"] = json!(false);
    let update = event(
        "evt_state",
        "customer.subscription.updated",
        now() + 15,
        state,
    );
    for ev in [&paid, &failed, &update] {
        assert_eq!(deliver(&app.base, ev, SECRET).await.0, 200);
    }
    let resp = app
        .gql(Some(&t.member), q, json!({ "id": intent_id }))
        .await;
    assert_eq!(
        resp.ok()["tenant"]["subscription"],
        json!({ "status": "ACTIVE", "cancelAtPeriodEnd": false })
    );

    // An invoice of another subscription of the customer never moves the tenant's own.
    let other = fake.create_subscription(&customer, "price_starter_us_monthly", "active");
    let other_id = other["id"].as_str().unwrap();
    let foreign = event(
        "evt_foreign",
        "invoice.payment_failed",
        now() + 30,
        invoice("in_foreign", &customer, other_id, "open", 100),
    );
    assert_eq!(deliver(&app.base, &foreign, SECRET).await.0, 200);
    let resp = app
        .gql(Some(&t.member), q, json!({ "id": intent_id }))
        .await;
    assert_eq!(resp.ok()["tenant"]["subscription"]["status"], "ACTIVE");
}

/// Entitlements follow the plan on the webhook path too: a tenant admin's override of a
/// professional feature ends with the subscription (Stripe's `customer.subscription.deleted`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_ended_by_stripe_ends_overrides_of_features_outside_the_plan() {
    let (app, fake) = live().await;
    let (t, _customer, sub_id) = subscribed(&app, &fake, "professional").await;
    let resp = app.set_feature(&t.admin, "audit_logs", true).await;
    assert_eq!(resp.ok()["setFeature"]["source"], "OVERRIDE");
    let logs = "{ auditLogs(first: 1) { totalCount } }";
    app.gql(Some(&t.admin), logs, json!({})).await.ok();

    let mut gone = fake.subscription(&sub_id);
    gone["status"] = json!("canceled");
    let ended = event(
        "evt_ended",
        "customer.subscription.deleted",
        now() + 1,
        gone,
    );
    assert_eq!(deliver(&app.base, &ended, SECRET).await.0, 200);

    let resp = app
        .gql(
            Some(&t.admin),
            "{ tenant { plan { slug } feature(key: \"audit_logs\") { enabled source } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        resp.ok()["tenant"],
        json!({ "plan": { "slug": "free" }, "feature": { "enabled": false, "source": "DEFAULT" } })
    );
    app.gql(Some(&t.admin), logs, json!({}))
        .await
        .err("FEATURE_DISABLED");
    let mut c = app.db.superuser().await;
    assert_eq!(
        count(
            &mut c,
            &format!(
                "select count(*) as n from tenant_features where tenant_id = '{}' and enabled",
                t.id
            )
        )
        .await,
        0
    );
    assert_eq!(
        count(&mut c, &format!("select count(*) as n from audit_logs where tenant_id = '{}' and entity_type = 'tenant' and action = 'UPDATE' and actor_type = 'WEBHOOK' and metadata->'removedOverrides' = '[\"audit_logs\"]'::jsonb", t.id)).await,
        1
    );
}

/// The preview cache across instances: B's cached answer goes when the tenant changes through A.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cached_preview_is_dropped_on_every_instance_when_its_tenant_changes() {
    let (a, fake) = live().await;
    let b = a.second_instance().await;
    let (t, _, _) = subscribed(&a, &fake, "starter").await;
    let q = "{ previewPlanChange(planSlug: \"professional\") { prorationAmount } }";
    let calls = || fake.requests().len();

    let before = calls();
    b.gql(Some(&t.admin), q, json!({})).await.ok();
    b.gql(Some(&t.admin), q, json!({})).await.ok();
    assert_eq!(
        calls() - before,
        2,
        "the second preview on B came from its cache"
    );

    a.gql(
        Some(&a.admin_token()),
        "mutation($id: ID!) { updateTenant(id: $id, input: { name: \"Renamed\" }) { name } }",
        json!({ "id": t.id.to_string() }),
    )
    .await
    .ok();
    let started = std::time::Instant::now();
    loop {
        let before = calls();
        b.gql(Some(&t.admin), q, json!({})).await.ok();
        if calls() > before {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "B still answers the preview from its cache"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
