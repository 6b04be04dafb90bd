//! Delivery under the conditions the outbox exists for (SPEC §12, issue 16): a quota crossed by
//! 64 racing writers on two instances yields one delivery per threshold; a worker killed with
//! SIGKILL mid-delivery loses nothing (the event is delivered after a restart, with its id).

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::json;

use crate::common::receiver::{Receiver, Reply};
use crate::common::smtp::SmtpSink;
use crate::common::{count, ServerProcess, TestApp};
use crate::webhooks::{delivering, endpoint};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quota_crossing_under_64_racing_writers_on_two_instances_is_delivered_and_mailed_once_per_threshold(
) {
    let sink = SmtpSink::start().await;
    let one = TestApp::spawn_with(|env| {
        delivering(env);
        env.insert("SMTP_URL".into(), sink.url());
    })
    .await;
    let two = one.second_instance().await;
    let t = one.tenant().plan("starter").create().await;
    owner_with_address(&one, t.id, "quota-owner@example.com").await;
    one.gql(
        Some(&one.admin_token()),
        "mutation($t: ID!) { setQuota(tenantId: $t, input: { resource: \"databases\", limit: 100, enforcement: HARD, alertThresholds: [25, 50] }) { limit } }",
        json!({ "t": t.id }),
    )
    .await
    .ok();
    let rx = Receiver::start(vec![]).await;
    let (_, secret) = endpoint(&one, &t, &rx.url, &["quota.threshold_reached"]).await;

    crate::common::domain::race_usage(&[&one.base, &two.base], &t.admin, "databases", 64).await;
    rx.wait_for(2, Duration::from_secs(10)).await;
    // Both instances' workers keep polling: still two after a while.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let hits = rx.hits();
    let mut by_threshold = BTreeMap::new();
    for h in &hits {
        assert!(h.signed_with(&secret));
        let body = h.json();
        assert_eq!(body["type"], "quota.threshold_reached");
        assert_eq!(body["data"]["resource"], "databases");
        assert_eq!(body["data"]["limit"], 100);
        *by_threshold
            .entry(body["data"]["threshold"].as_i64().unwrap())
            .or_insert(0) += 1;
    }
    assert_eq!(
        by_threshold,
        BTreeMap::from([(25, 1), (50, 1)]),
        "{hits:#?}"
    );
    let mut c = one.db.superuser().await;
    let delivered = format!(
        "select count(*) as n from notification_deliveries where tenant_id = '{}' and channel = 'WEBHOOK' and status = 'SUCCEEDED' and attempts = 1",
        t.id
    );
    for _ in 0..330 {
        if count(&mut c, &delivered).await == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    assert_eq!(count(&mut c, &delivered).await, 2);

    // One mail per threshold, to the owner, carrying the same event ids.
    let mails = sink.wait_for(2).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(sink.messages().len(), 2, "one mail per threshold");
    let mut mailed: Vec<String> = mails
        .iter()
        .map(|m| m.header("X-Tenantry-Event-Id").unwrap())
        .collect();
    let mut hooked: Vec<String> = hits
        .iter()
        .map(|h| h.header("tenantry-event-id").to_owned())
        .collect();
    mailed.sort();
    hooked.sort();
    assert_eq!(mailed, hooked);
    assert!(mails.iter().all(|m| m.rcpts == ["quota-owner@example.com"]));
}

/// An ACTIVE owner member of `tenant` with `email`.
pub async fn owner_with_address(app: &TestApp, tenant: uuid::Uuid, email: &str) {
    use diesel_async::SimpleAsyncConnection;
    let mut c = app.db.superuser().await;
    c.batch_execute(&format!(
        "insert into members (tenant_id, id, user_id, email, role, status)
         values ('{tenant}', gen_random_uuid(), 'owner-{tenant}', '{email}', 'OWNER', 'ACTIVE')"
    ))
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mail_refused_for_a_while_is_retried_and_sent_once() {
    let sink = SmtpSink::start().await;
    sink.fail_next(2);
    let app = TestApp::spawn_with(|env| {
        delivering(env);
        env.insert("SMTP_URL".into(), sink.url());
    })
    .await;
    let t = app.tenant().plan("starter").create().await;
    owner_with_address(&app, t.id, "retry-owner@example.com").await;
    app.suspend_tenant(t.id, "unpaid").await.ok();
    let got = sink.wait_for(1).await;
    assert_eq!(sink.refused(), 2);
    assert!(
        got[0]
            .header("Subject")
            .unwrap()
            .to_lowercase()
            .contains("suspended"),
        "{:?}",
        got[0].header("Subject")
    );
    let mut c = app.db.superuser().await;
    let sent = format!(
        "select count(*) as n from notification_deliveries where tenant_id = '{}' and channel = 'EMAIL' and status = 'SUCCEEDED' and attempts = 3",
        t.id
    );
    let mut n = 0;
    for _ in 0..330 {
        n = count(&mut c, &sent).await;
        if n == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    assert_eq!(n, 1);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(sink.messages().len(), 1, "sent once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_delivery_loses_nothing() {
    // The setup instance saves the endpoint (private targets allowed) but delivers nothing.
    let setup = TestApp::spawn_with(|env| {
        env.insert("OUTBOUND_WEBHOOKS_ALLOW_PRIVATE".into(), "true".into());
    })
    .await;
    let t = setup.tenant().plan("starter").create().await;
    let mut env = setup.env.clone();
    delivering(&mut env);
    env.insert("NOTIFICATION_WORKERS".into(), "1".into());
    env.insert("WEBHOOK_TIMEOUT".into(), "2s".into());
    env.insert("NOTIFICATION_LEASE".into(), "3s".into());
    env.insert("JOBS_INTERVAL_SECS".into(), "0".into());
    // The first request is never answered: the process dies while it waits.
    let rx = Receiver::start(vec![Reply::Hang]).await;
    endpoint(&setup, &t, &rx.url, &["plan.changed"]).await;

    let mut first = ServerProcess::start(&env).await;
    let r = first
        .gql(
            &t.admin,
            "mutation { changePlan(planSlug: \"professional\", billingCycle: MONTHLY) { status } }",
            json!({}),
        )
        .await;
    r.ok();
    let hits = rx.wait_for(1, Duration::from_secs(10)).await;
    let event_id = hits[0].header("tenantry-event-id").to_owned();
    first.kill();

    // The claim was committed with its lease (one attempt counted), and no outcome: the
    // delivery is still PENDING, due again when the lease ends.
    let mut c = setup.db.superuser().await;
    let leased = format!(
        "select count(*) as n from notification_deliveries where tenant_id = '{}' and channel = 'WEBHOOK'
           and status = 'PENDING' and attempts = 1 and last_status_code is null and last_error is null
           and next_attempt_at > now()",
        t.id
    );
    assert_eq!(count(&mut c, &leased).await, 1, "leased, not finished");

    let _second = ServerProcess::start(&env).await;
    let hits = rx.wait_for(2, Duration::from_secs(10)).await;
    assert_eq!(
        hits[1].header("tenantry-event-id"),
        event_id,
        "the same event, again"
    );
    assert_eq!(hits[1].answered, 200);
    let delivered = format!(
        "select count(*) as n from notification_deliveries where tenant_id = '{}' and channel = 'WEBHOOK' and status = 'SUCCEEDED' and attempts = 2",
        t.id
    );
    let mut done = 0;
    for _ in 0..330 {
        done = count(&mut c, &delivered).await;
        if done == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    assert_eq!(done, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_and_events_are_forgotten_after_30_days_but_not_while_pending() {
    let app = TestApp::spawn_with(|env| {
        env.insert("OUTBOUND_WEBHOOKS_ALLOW_PRIVATE".into(), "true".into());
    })
    .await;
    let t = app.tenant().plan("starter").create().await;
    endpoint(&app, &t, "http://127.0.0.1:9/hook", &["*"]).await;
    let mut c = app.db.superuser().await;
    use diesel_async::SimpleAsyncConnection;
    c.batch_execute(&format!(
        r#"insert into notification_outbox (tenant_id, id, event_type, data, created_at, dispatched_at) values
             ('{t}', 'a0000000-0000-0000-0000-000000000001', 'plan.changed', '{{}}', now() - interval '40 days', now() - interval '40 days'),
             ('{t}', 'a0000000-0000-0000-0000-000000000002', 'plan.changed', '{{}}', now() - interval '40 days', now() - interval '40 days'),
             ('{t}', 'a0000000-0000-0000-0000-000000000003', 'plan.changed', '{{}}', now() - interval '2 days', now() - interval '2 days');
           insert into notification_deliveries (tenant_id, id, event_id, event_seq, event_type, channel, endpoint_id, status, finished_at)
             select '{t}', gen_random_uuid(), o.id, o.seq, o.event_type, 'WEBHOOK', e.id,
                    case when o.id = 'a0000000-0000-0000-0000-000000000002' then 'PENDING' else 'SUCCEEDED' end,
                    case when o.id = 'a0000000-0000-0000-0000-000000000002' then null else o.dispatched_at end
               from notification_outbox o, webhook_endpoints e where o.tenant_id = '{t}' and e.tenant_id = '{t}';"#,
        t = t.id
    ))
    .await
    .unwrap();
    tenantry::jobs::run_once(&app.app, tenantry::jobs::Job::NotificationRetention)
        .await
        .unwrap();
    let left = |table: &str| {
        format!(
            "select count(*) as n from {table} where tenant_id = '{}'",
            t.id
        )
    };
    assert_eq!(
        count(&mut c, &left("notification_deliveries")).await,
        2,
        "the old finished delivery is gone"
    );
    assert_eq!(
        count(&mut c, &left("notification_outbox")).await,
        2,
        "the event still pending stays"
    );
}
