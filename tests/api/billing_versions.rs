//! Stripe events in the layout of an endpoint pinned to an older API version (2024-06-20):
//! read, applied and recorded like the newest layout; an event that cannot be read is stored
//! FAILED with its reason, acknowledged (2xx, so Stripe keeps the endpoint) and replayable.

use crate::common::stripe::{
    deliver, event_in, invoice_2024_06_20, now, subscription_2024_06_20, FakeStripe,
};
use crate::common::{count, text, TestApp};
use serde_json::{json, Value};

const SECRET: &str = "whsec_test_versions";
const OLD: &str = "2024-06-20";

async fn live() -> (TestApp, FakeStripe) {
    let fake = FakeStripe::start().await;
    let base = fake.base.clone();
    let app = TestApp::spawn_with(|env| {
        env.insert("STRIPE_SECRET_KEY".into(), "sk_test_tenantry".into());
        env.insert("STRIPE_API_BASE".into(), base);
        env.insert("STRIPE_WEBHOOK_SECRET".into(), SECRET.into());
    })
    .await;
    (app, fake)
}

async fn event_row(app: &TestApp, id: &str) -> Value {
    let resp = app
        .gql(
            Some(&app.admin_token()),
            "{ webhookEvents(first: 50) { edges { node { id status note lastError apiVersion attempts } } } }",
            json!({}),
        )
        .await;
    resp.ok()["webhookEvents"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"].clone())
        .find(|n| n["id"] == id)
        .unwrap_or_else(|| panic!("event {id} is listed"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_layout_event_for_an_unknown_customer_is_ignored_with_2xx() {
    let (app, _fake) = live().await;
    let sub = subscription_2024_06_20(
        "sub_nobody",
        "cus_nobody",
        "price_starter_us_monthly",
        "active",
    );
    let ev = event_in(
        OLD,
        "evt_old_unknown",
        "customer.subscription.updated",
        now(),
        sub,
    );
    let (status, body) = deliver(&app.base, &ev, SECRET).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "IGNORED");
    let row = event_row(&app, "evt_old_unknown").await;
    assert_eq!(row["status"], "IGNORED");
    assert_eq!(row["note"], "unknown customer");
    assert_eq!(row["apiVersion"], OLD);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_layout_subscription_and_invoice_events_apply_like_new_ones() {
    let (app, fake) = live().await;
    let t = app.tenant().plan("starter").create().await;
    let mut c = app.db.superuser().await;
    let sql = format!(
        "select stripe_customer_id as v from tenants where id = '{}'",
        t.id
    );
    let customer = text(&mut c, &sql)
        .await
        .expect("the tenant has a Stripe customer");
    let sub = fake.create_subscription(&customer, "price_professional_us_monthly", "active");
    let id = sub["id"].as_str().unwrap().to_owned();
    let old = subscription_2024_06_20(&id, &customer, "price_professional_us_monthly", "active");
    let period_end = old["current_period_end"].as_i64().unwrap();
    let ev = event_in(
        OLD,
        "evt_old_created",
        "customer.subscription.created",
        now() - 5,
        old,
    );
    let (status, body) = deliver(&app.base, &ev, SECRET).await;
    assert_eq!((status, body["status"].clone()), (200, json!("PROCESSED")));

    let q = "{ tenant { plan { slug } subscription { status currentPeriodEnd } } }";
    let resp = app.gql(Some(&t.member), q, json!({})).await;
    assert_eq!(resp.ok()["tenant"]["plan"]["slug"], "professional");
    assert_eq!(resp.ok()["tenant"]["subscription"]["status"], "ACTIVE");
    let end = chrono::DateTime::parse_from_rfc3339(
        resp.ok()["tenant"]["subscription"]["currentPeriodEnd"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        end.timestamp(),
        period_end,
        "the period comes from the top level"
    );

    // A failed payment on an invoice naming its subscription at the top level.
    let inv = invoice_2024_06_20("in_old_1", &customer, &id, "open", 4900);
    let ev = event_in(OLD, "evt_old_failed", "invoice.payment_failed", now(), inv);
    let (status, body) = deliver(&app.base, &ev, SECRET).await;
    assert_eq!((status, body["status"].clone()), (200, json!("PROCESSED")));
    let resp = app.gql(Some(&t.member), q, json!({})).await;
    assert_eq!(resp.ok()["tenant"]["subscription"]["status"], "PAST_DUE");
    assert_eq!(
        count(
            &mut c,
            "select count(*) as n from invoices where stripe_invoice_id = 'in_old_1'"
        )
        .await,
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_event_is_failed_with_its_reason_acknowledged_and_replayable() {
    let (app, _fake) = live().await;
    // No `status`, and a customer that is a number: no API version looks like this.
    let broken = json!({ "id": "sub_broken", "object": "subscription", "customer": 42 });
    let ev = event_in(
        OLD,
        "evt_unreadable",
        "customer.subscription.updated",
        now(),
        broken,
    );
    let (status, body) = deliver(&app.base, &ev, SECRET).await;
    assert_eq!(
        status, 200,
        "acknowledged so Stripe keeps the endpoint: {body}"
    );
    assert_eq!(body["status"], "FAILED");

    let row = event_row(&app, "evt_unreadable").await;
    assert_eq!(row["status"], "FAILED");
    assert_eq!(row["attempts"], 1);
    let reason = row["lastError"].as_str().unwrap();
    assert!(
        reason.contains("subscription object cannot be read"),
        "{reason}"
    );
    assert_eq!(row["apiVersion"], OLD);

    // A second delivery of the same id does not process it twice, and a replay tries again.
    let resp = app
        .gql(
            Some(&app.admin_token()),
            "mutation { replayWebhookEvent(id: \"evt_unreadable\") { status attempts lastError } }",
            json!({}),
        )
        .await;
    let replayed = &resp.ok()["replayWebhookEvent"];
    assert_eq!(replayed["status"], "FAILED");
    assert_eq!(replayed["attempts"], 2);
    let mut c = app.db.superuser().await;
    assert_eq!(
        count(&mut c, "select count(*) as n from audit_logs where action = 'REPLAY' and entity_id = 'evt_unreadable'").await,
        1,
        "the replay is audited in the transaction that processed it"
    );
}
