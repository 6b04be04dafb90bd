//! Webhook endpoints cannot be turned against the operator or another tenant (SPEC §12): private,
//! loopback and link-local targets are refused by default; tenant A can never list, change,
//! rotate, delete or redeliver B's endpoints or deliveries; the signing secret is shown once and
//! never stored, audited or exported in clear.

use std::time::Duration;

use serde_json::json;

use crate::common::receiver::Receiver;
use crate::common::{count, text, TestApp};
use crate::webhooks::{change_plan, delivering, endpoint};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_loopback_and_link_local_targets_are_refused_by_default() {
    let app = TestApp::spawn().await;
    let t = app.tenant().plan("starter").create().await;
    for url in [
        "http://127.0.0.1:9000/hook",
        "https://169.254.169.254/latest/meta-data/",
        "http://[::1]/hook",
        "http://10.0.0.7/hook",
        "http://localhost:8080/hook",
        "http://user:pw@hooks.example.com/",
        "ftp://hooks.example.com/",
    ] {
        let r = app
            .gql(
                Some(&t.admin),
                "mutation($u: String!) { createWebhookEndpoint(input: { url: $u, events: [\"*\"] }) { secret } }",
                json!({ "u": url }),
            )
            .await;
        let e = r.err("BAD_USER_INPUT");
        assert_eq!(e["extensions"]["field"], "url", "{url}: {e}");
    }
    let r = app
        .gql(
            Some(&t.admin),
            "mutation { createWebhookEndpoint(input: { url: \"https://hooks.example.com/x\", events: [\"no.such\"] }) { secret } }",
            json!({}),
        )
        .await;
    r.err("BAD_USER_INPUT");
    // Bad input: a NUL byte, a 3 KiB URL, an unknown event filter: BAD_USER_INPUT, never INTERNAL.
    let long = format!("https://hooks.example.com/{}", "a".repeat(3000));
    for (url, events) in [
        ("https://hooks.example.com/\u{0}", json!(["*"])),
        (long.as_str(), json!(["*"])),
        ("https://hooks.example.com/x", json!(["plan.changed\u{0}"])),
    ] {
        let r = app
            .gql(
                Some(&t.admin),
                "mutation($u: String!, $e: [String!]!) { createWebhookEndpoint(input: { url: $u, events: $e }) { secret } }",
                json!({ "u": url, "e": events }),
            )
            .await;
        r.err("BAD_USER_INPUT");
    }
    for event_type in ["plan.changed\u{0}", "no.such"] {
        let r = app
            .gql(
                Some(&t.admin),
                "query($t: ID!, $e: String!) { tenant(id: $t) { webhookDeliveries(filter: { eventType: $e }) { totalCount } } }",
                json!({ "t": t.id, "e": event_type }),
            )
            .await;
        let e = r.err("BAD_USER_INPUT");
        if event_type == "no.such" {
            assert_eq!(e["extensions"]["field"], "eventType");
        }
    }
    let mut c = app.db.superuser().await;
    assert_eq!(
        count(&mut c, "select count(*) as n from webhook_endpoints").await,
        0
    );

    // Members are not admins.
    let r = app
        .gql(
            Some(&t.member),
            "mutation { createWebhookEndpoint(input: { url: \"https://hooks.example.com/x\", events: [\"*\"] }) { secret } }",
            json!({}),
        )
        .await;
    r.err("FORBIDDEN");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_saved_while_allowed_is_refused_at_send_time_once_it_is_not() {
    // Saved on an instance that allows private targets; delivered by one that does not.
    let allowing = TestApp::spawn_with(|env| {
        env.insert("OUTBOUND_WEBHOOKS_ALLOW_PRIVATE".into(), "true".into());
    })
    .await;
    let t = allowing.tenant().plan("starter").create().await;
    let rx = Receiver::start(vec![]).await;
    endpoint(&allowing, &t, &rx.url, &["plan.changed"]).await;
    let mut env = allowing.env.clone();
    delivering(&mut env);
    env.insert("OUTBOUND_WEBHOOKS_ALLOW_PRIVATE".into(), "false".into());
    let strict = TestApp::start(allowing.db.clone(), env).await;
    change_plan(&allowing, &t, "professional").await;
    let mut c = strict.db.superuser().await;
    let mut error = None;
    for _ in 0..330 {
        error = text(
            &mut c,
            "select last_error as v from notification_deliveries where channel = 'WEBHOOK' and attempts > 0",
        )
        .await;
        if error.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    let error = error.expect("an attempt was made");
    assert!(error.contains("127.0.0.1"), "{error}");
    assert!(rx.hits().is_empty(), "nothing reached the private address");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_tenants_endpoints_and_deliveries_are_out_of_reach() {
    let app = TestApp::spawn_with(delivering).await;
    let a = app.tenant().plan("starter").create().await;
    let b = app.tenant().plan("starter").create().await;
    let rx = Receiver::start(vec![]).await;
    let (b_endpoint, b_secret) = endpoint(&app, &b, &rx.url, &["*"]).await;
    change_plan(&app, &b, "professional").await;
    rx.wait_for(1, Duration::from_secs(10)).await;
    let mut c = app.db.superuser().await;
    let mut b_delivery = None;
    for _ in 0..330 {
        b_delivery = text(&mut c, &format!("select id::text as v from notification_deliveries where tenant_id = '{}' and status = 'SUCCEEDED'", b.id)).await;
        if b_delivery.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    let b_delivery = b_delivery.expect("B's delivery");

    // Listing B's: refused.
    for field in [
        "webhookEndpoints { id url }",
        "webhookDeliveries { nodes { id } }",
    ] {
        let r = app
            .gql(
                Some(&a.admin),
                &format!("query($t: ID!) {{ tenant(id: $t) {{ {field} }} }}"),
                json!({ "t": b.id }),
            )
            .await;
        assert!(
            matches!(r.code(), Some("FORBIDDEN" | "NOT_FOUND")),
            "{:?}",
            r.body
        );
        assert!(!r.body.to_string().contains(&b_endpoint));
    }
    // Changing, rotating, deleting B's endpoint and redelivering B's delivery: NOT_FOUND.
    for (m, vars) in [
        (
            "updateWebhookEndpoint(input: { id: $id, url: \"https://evil.example.com/\" }) { id }",
            json!({ "id": b_endpoint }),
        ),
        (
            "updateWebhookEndpoint(input: { id: $id, enabled: false }) { id }",
            json!({ "id": b_endpoint }),
        ),
        (
            "rotateWebhookEndpointSecret(id: $id) { secret }",
            json!({ "id": b_endpoint }),
        ),
        (
            "deleteWebhookEndpoint(id: $id) { id }",
            json!({ "id": b_endpoint }),
        ),
        (
            "redeliverWebhook(deliveryId: $id) { id }",
            json!({ "id": b_delivery }),
        ),
    ] {
        let r = app
            .gql(
                Some(&a.admin),
                &format!("mutation($id: ID!) {{ {m} }}"),
                vars,
            )
            .await;
        r.err("NOT_FOUND");
    }
    // A's own filter by B's endpoint id finds nothing.
    let r = app
        .gql(
            Some(&a.admin),
            "query($t: ID!, $e: ID!) { tenant(id: $t) { webhookDeliveries(filter: { endpointId: $e }) { totalCount } } }",
            json!({ "t": a.id, "e": b_endpoint }),
        )
        .await;
    assert_eq!(r.ok()["tenant"]["webhookDeliveries"]["totalCount"], 0);
    // B's endpoint is untouched and still enabled; one delivery only.
    let same = format!(
        "select count(*) as n from webhook_endpoints where id = '{b_endpoint}' and enabled and url = '{}'",
        rx.url
    );
    assert_eq!(count(&mut c, &same).await, 1);
    assert_eq!(rx.hits().len(), 1);

    // The secret is nowhere in clear: not in the table, the audit log or B's export.
    let stored = count(
        &mut c,
        &format!(
            "select count(*) as n from webhook_endpoints where position(convert_to('{b_secret}', 'UTF8') in secret_sealed) > 0"
        ),
    )
    .await;
    assert_eq!(stored, 0);
    let audited = count(&mut c, &format!("select count(*) as n from audit_logs where changes::text like '%{b_secret}%' or metadata::text like '%{b_secret}%'")).await;
    assert_eq!(audited, 0);
    let audit_rows = count(&mut c, &format!("select count(*) as n from audit_logs where entity_type = 'webhook_endpoint' and entity_id = '{b_endpoint}'")).await;
    assert_eq!(
        audit_rows, 1,
        "the creation is audited (without the secret)"
    );
    let export = app
        .gql(
            Some(&app.admin_token()),
            "mutation($id: ID!) { exportTenantData(id: $id) }",
            json!({ "id": b.id }),
        )
        .await;
    let export = export.ok()["exportTenantData"].to_string();
    assert!(export.contains(&b_endpoint), "the endpoint is exported");
    assert!(!export.contains(&b_secret) && !export.contains("secret_sealed"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_encryption_key_postpones_deliveries_and_never_disables_endpoints() {
    let saving = TestApp::spawn_with(|env| {
        env.insert("OUTBOUND_WEBHOOKS_ALLOW_PRIVATE".into(), "true".into());
    })
    .await;
    let t = saving.tenant().plan("starter").create().await;
    let rx = Receiver::start(vec![]).await;
    let (id, _) = endpoint(&saving, &t, &rx.url, &["plan.changed"]).await;
    // Another key: the sealed secret no longer opens; the retry window is short.
    let mut env = saving.env.clone();
    delivering(&mut env);
    env.insert(
        "CONFIG_ENCRYPTION_KEY".into(),
        "bGxsbGxsbGxsbGxsbGxsbGxsbGxsbGxsbGxsbGxsbGw=".into(),
    );
    env.insert("WEBHOOK_RETRY_FOR".into(), "200ms".into());
    let other_key = TestApp::start(saving.db.clone(), env).await;
    change_plan(&saving, &t, "professional").await;
    let mut c = other_key.db.superuser().await;
    let postponed = "select count(*) as n from notification_deliveries where channel = 'WEBHOOK'
        and status = 'PENDING' and attempts >= 2 and last_error like '%CONFIG_ENCRYPTION_KEY%'";
    for _ in 0..330 {
        if count(&mut c, postponed).await == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    assert_eq!(
        count(&mut c, postponed).await,
        1,
        "postponed, past the retry window, still pending"
    );
    let enabled =
        format!("select count(*) as n from webhook_endpoints where id = '{id}' and enabled");
    assert_eq!(
        count(&mut c, &enabled).await,
        1,
        "the endpoint stays enabled"
    );
    assert!(rx.hits().is_empty(), "nothing unsigned is sent");
}
