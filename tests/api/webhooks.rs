//! Outbound webhooks (SPEC §12, issue 16): endpoints with a secret shown once, signed
//! deliveries retried with backoff under the same event id, in order per endpoint, delivery
//! log and redelivery, automatic disabling, private targets refused, and isolation.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{json, Value};

use crate::common::receiver::{Receiver, Reply};
use crate::common::{count, TestApp, TestTenant};

/// Workers on, fast retries, and the local receiver allowed.
pub fn delivering(env: &mut HashMap<String, String>) {
    for (k, v) in [
        ("NOTIFICATION_WORKERS", "2"),
        ("NOTIFICATION_POLL_INTERVAL", "20ms"),
        ("WEBHOOK_RETRY_BASE", "50ms"),
        ("WEBHOOK_TIMEOUT", "2s"),
        ("OUTBOUND_WEBHOOKS_ALLOW_PRIVATE", "true"),
    ] {
        env.insert(k.into(), v.into());
    }
}

const CREATE: &str = "mutation($url: String!, $events: [String!]!) {
    createWebhookEndpoint(input: { url: $url, events: $events }) {
        secret endpoint { id url events enabled secretPrefix createdAt } } }";

/// Creates an endpoint for `t` (as its admin): (id, secret).
pub async fn endpoint(
    app: &TestApp,
    t: &TestTenant,
    url: &str,
    events: &[&str],
) -> (String, String) {
    let r = app
        .gql(
            Some(&t.admin),
            CREATE,
            json!({ "url": url, "events": events }),
        )
        .await;
    let created = &r.ok()["createWebhookEndpoint"];
    (
        created["endpoint"]["id"].as_str().unwrap().to_owned(),
        created["secret"].as_str().unwrap().to_owned(),
    )
}

/// `changePlan` to `plan` as `t`'s admin (monthly).
pub async fn change_plan(app: &TestApp, t: &TestTenant, plan: &str) {
    app.gql(
        Some(&t.admin),
        "mutation($p: String!) { changePlan(planSlug: $p, billingCycle: MONTHLY) { status } }",
        json!({ "p": plan }),
    )
    .await
    .ok();
}

async fn deliveries(app: &TestApp, t: &TestTenant) -> Vec<Value> {
    let r = app
        .gql(
            Some(&t.admin),
            "query($t: ID!) { tenant(id: $t) { webhookDeliveries(first: 50) { totalCount nodes {
                id eventId eventType endpointId status attempts lastStatusCode lastError nextAttemptAt redeliveryOf createdAt } } } }",
            json!({ "t": t.id }),
        )
        .await;
    r.ok()["tenant"]["webhookDeliveries"]["nodes"]
        .as_array()
        .unwrap()
        .clone()
}

/// Polls the delivery log until `done` holds (10 s).
async fn log_until(app: &TestApp, t: &TestTenant, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    for _ in 0..500 {
        let d = deliveries(app, t).await;
        if done(&d) {
            return d;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!(
        "delivery log never got there: {:#?}",
        deliveries(app, t).await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_failing_three_times_gets_the_event_four_times_with_one_id_and_valid_signatures()
{
    let app = TestApp::spawn_with(delivering).await;
    let t = app.tenant().plan("starter").create().await;
    let rx = Receiver::start(vec![
        Reply::Status(500),
        Reply::Status(500),
        Reply::Status(500),
    ])
    .await;
    let (id, secret) = endpoint(&app, &t, &rx.url, &["plan.changed"]).await;
    assert!(secret.starts_with("whsec_") && secret.len() > 40);

    change_plan(&app, &t, "professional").await;
    let hits = rx.wait_for(4, Duration::from_secs(10)).await;
    assert_eq!(hits.len(), 4, "3 failures and 1 success, nothing more");
    let answered: Vec<u16> = hits.iter().map(|h| h.answered).collect();
    assert_eq!(answered, [500, 500, 500, 200]);
    let event_id = hits[0].header("tenantry-event-id").to_owned();
    for h in &hits {
        assert_eq!(
            h.header("tenantry-event-id"),
            event_id,
            "one event id on every attempt"
        );
        assert!(
            h.signed_with(&secret),
            "signature checks with the documented algorithm"
        );
        assert!(!h.signed_with("whsec_other"));
        let body = h.json();
        assert_eq!(body["id"], event_id.as_str());
        assert_eq!(body["type"], "plan.changed");
        assert_eq!(body["tenantId"], t.id.to_string());
        assert_eq!(body["data"]["toPlan"], "professional");
        assert!(body["createdAt"].as_str().unwrap().ends_with('Z'));
    }
    // The log: one delivery, SUCCEEDED after 4 attempts, last answer 200.
    let log = log_until(&app, &t, |d| {
        d.first().is_some_and(|d| d["status"] == "SUCCEEDED")
    })
    .await;
    assert_eq!(log.len(), 1);
    let d = &log[0];
    assert_eq!(
        (d["attempts"].as_i64(), d["lastStatusCode"].as_i64()),
        (Some(4), Some(200))
    );
    assert_eq!(
        (d["eventId"].as_str(), d["endpointId"].as_str()),
        (Some(event_id.as_str()), Some(id.as_str()))
    );
    assert!(d["nextAttemptAt"].is_null());

    // Redelivery: the same event id once more, as a new delivery.
    let r = app
        .gql(
            Some(&t.admin),
            "mutation($d: ID!) { redeliverWebhook(deliveryId: $d) { id eventId status redeliveryOf } }",
            json!({ "d": d["id"] }),
        )
        .await;
    assert_eq!(r.ok()["redeliverWebhook"]["redeliveryOf"], d["id"]);
    let hits = rx.wait_for(5, Duration::from_secs(10)).await;
    assert_eq!(hits[4].header("tenantry-event-id"), event_id);
    assert!(hits[4].signed_with(&secret));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_reach_an_endpoint_in_order_even_when_the_first_is_retried() {
    let app = TestApp::spawn_with(delivering).await;
    let t = app.tenant().plan("starter").create().await;
    let rx = Receiver::start(vec![Reply::Status(503), Reply::Status(503)]).await;
    let (_, secret) = endpoint(&app, &t, &rx.url, &["*"]).await;
    let other = Receiver::start(vec![]).await;
    endpoint(&app, &t, &other.url, &["member.invited"]).await;

    change_plan(&app, &t, "professional").await;
    change_plan(&app, &t, "enterprise").await;
    app.gql(
        Some(&t.admin),
        "mutation { inviteMember(input: { email: \"order@example.com\", role: MEMBER }) { id } }",
        json!({}),
    )
    .await
    .ok();
    let hits = rx.wait_for(5, Duration::from_secs(10)).await;
    let seen: Vec<(String, String)> = hits
        .iter()
        .map(|h| {
            (
                h.json()["type"].as_str().unwrap().to_owned(),
                h.json()["data"]["toPlan"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("plan.changed".into(), "professional".into()),
            ("plan.changed".into(), "professional".into()),
            ("plan.changed".into(), "professional".into()),
            ("plan.changed".into(), "enterprise".into()),
            ("member.invited".into(), "".into()),
        ],
        "the second event waits for the first"
    );
    assert!(hits.iter().all(|h| h.signed_with(&secret)));
    // The filtered endpoint got only its event.
    let hits = other.wait_for(1, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(other.hits().len(), 1);
    assert_eq!(hits[0].json()["type"], "member.invited");
    assert!(
        hits[0].json()["data"].get("token").is_none(),
        "never the invitation token"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_failing_throughout_is_disabled_and_comes_back_when_enabled() {
    let sink = crate::common::smtp::SmtpSink::start().await;
    let app = TestApp::spawn_with(|env| {
        delivering(env);
        env.insert("WEBHOOK_RETRY_FOR".into(), "400ms".into());
        env.insert("SMTP_URL".into(), sink.url());
    })
    .await;
    let t = app.tenant().plan("starter").create().await;
    crate::webhooks_delivery::owner_with_address(&app, t.id, "hooks-owner@example.com").await;
    let rx = Receiver::start(vec![Reply::Status(500); 200]).await;
    let (id, _) = endpoint(&app, &t, &rx.url, &["plan.changed"]).await;
    change_plan(&app, &t, "professional").await;
    let log = log_until(&app, &t, |d| {
        d.first().is_some_and(|d| d["status"] == "FAILED")
    })
    .await;
    assert_eq!(log[0]["lastStatusCode"], 500);
    assert!(log[0]["attempts"].as_i64().unwrap() >= 2);

    let list = app
        .gql(
            Some(&t.admin),
            "query($t: ID!) { tenant(id: $t) { webhookEndpoints { id enabled disabledReason } } }",
            json!({ "t": t.id }),
        )
        .await;
    let e = &list.ok()["tenant"]["webhookEndpoints"][0];
    assert_eq!(
        (e["id"].as_str(), e["enabled"].as_bool()),
        (Some(id.as_str()), Some(false))
    );
    assert!(e["disabledReason"].as_str().unwrap().contains("HTTP 500"));
    // The tenant is told: an internal event, mailed (never sent to the endpoint).
    let mut c = app.db.superuser().await;
    let told = count(
        &mut c,
        &format!("select count(*) as n from notification_outbox where tenant_id = '{}' and event_type = 'webhook_endpoint.disabled' and data->>'endpointId' = '{id}'", t.id),
    )
    .await;
    assert_eq!(told, 1);
    let mails = sink.wait_for(2).await;
    let disabled: Vec<_> = mails
        .iter()
        .filter(|m| {
            m.header("X-Tenantry-Event-Type").as_deref() == Some("webhook_endpoint.disabled")
        })
        .collect();
    assert_eq!(disabled.len(), 1, "the tenant is told by mail");
    assert!(disabled[0].part("text/plain").unwrap().contains(&rx.url));

    // Disabled: redelivery is refused and events are not sent; enabled again, it gets the
    // next ones.
    let r = app
        .gql(
            Some(&t.admin),
            "mutation($d: ID!) { redeliverWebhook(deliveryId: $d) { id } }",
            json!({ "d": log[0]["id"] }),
        )
        .await;
    r.err("BAD_USER_INPUT");
    let before = rx.hits().len();
    change_plan(&app, &t, "enterprise").await;
    // Once the event is dispatched, it has no delivery to the disabled endpoint.
    let dispatched = format!(
        "select count(*) as n from notification_outbox where tenant_id = '{}' and event_type = 'plan.changed'
           and data->>'toPlan' = 'enterprise' and dispatched_at is not null",
        t.id
    );
    for _ in 0..500 {
        if count(&mut c, &dispatched).await == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(count(&mut c, &dispatched).await, 1);
    let to_disabled = format!(
        "select count(*) as n from notification_deliveries d join notification_outbox o on o.id = d.event_id
          where d.endpoint_id = '{id}' and o.data->>'toPlan' = 'enterprise'"
    );
    assert_eq!(
        count(&mut c, &to_disabled).await,
        0,
        "nothing is sent to a disabled endpoint"
    );
    assert_eq!(rx.hits().len(), before);

    rx.answer(&[]);
    let r = app
        .gql(
            Some(&t.admin),
            "mutation($id: ID!) { updateWebhookEndpoint(input: { id: $id, enabled: true }) { enabled disabledReason } }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(
        r.ok()["updateWebhookEndpoint"],
        json!({ "enabled": true, "disabledReason": null })
    );
    change_plan(&app, &t, "starter").await;
    let hits = rx.wait_for(before + 1, Duration::from_secs(10)).await;
    assert_eq!(hits[before].json()["data"]["toPlan"], "starter");
    assert_eq!(hits[before].answered, 200);

    // The operator sees it: deliveries by outcome, disables, the outbox's depth and age (the
    // delivered count follows the receiver's answer, once the outcome is recorded).
    let lines = [
        "tenantry_notification_deliveries_total{channel=\"WEBHOOK\",outcome=\"retried\"}",
        "tenantry_notification_deliveries_total{channel=\"WEBHOOK\",outcome=\"failed\"}",
        "tenantry_notification_deliveries_total{channel=\"WEBHOOK\",outcome=\"delivered\"}",
        "tenantry_webhook_endpoints_disabled_total",
        "tenantry_notification_outbox_depth{stage=\"pending\"}",
        "tenantry_notification_outbox_age_seconds",
    ];
    let mut metrics = String::new();
    for _ in 0..500 {
        metrics = app.get("/metrics").await.1;
        if lines.iter().all(|l| metrics.contains(l)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for line in lines {
        assert!(metrics.contains(line), "{line} in {metrics}");
    }
}
