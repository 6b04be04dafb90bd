//! Notification mail (issue 16; SPEC §12): `mail::deliver` against a real database and a local
//! SMTP sink — one message per event to the tenant's ACTIVE owners and admins with an address,
//! plain text and HTML in the tenant's branding, `notifications.email_enabled` and
//! `notifications.quota_alert_emails` honoured, a 451 reported for the worker to retry, mail
//! logged without `SMTP_URL`; and the trial-ending notice, once per trial end.

use chrono::Utc;
use diesel_async::{RunQueryDsl, SimpleAsyncConnection};
use scoped_futures::ScopedFutureExt;
use serde_json::{json, Value};
use tenantry::db::Scope;
use tenantry::jobs::{self, Job, Outcome};
use tenantry::notifications::mail::{self, MailOutcome, OutboxEvent};
use tenantry::notifications::outbox::EventType;
use uuid::Uuid;

use crate::common::smtp::SmtpSink;
use crate::common::{count, TestApp};

async fn with_sink() -> (TestApp, SmtpSink) {
    let sink = SmtpSink::start().await;
    let url = sink.url();
    let app = TestApp::spawn_with(|env| {
        env.insert("SMTP_URL".into(), url);
        env.insert(
            "MAIL_FROM".into(),
            "Tenantry Alerts <alerts@tenantry.test>".into(),
        );
    })
    .await;
    (app, sink)
}

async fn sql(app: &TestApp, statement: &str) {
    let mut c = app.db.superuser().await;
    c.batch_execute(statement)
        .await
        .unwrap_or_else(|e| panic!("{statement}: {e}"));
}

/// Two recipients (an owner with a mixed-case address, an admin) and four who are not: a
/// member, an invited admin, a disabled admin, an owner without an address.
async fn add_members(app: &TestApp, tenant: Uuid) {
    sql(app, &format!(
        "insert into members (tenant_id, id, user_id, email, role, status) values
           ('{tenant}', gen_random_uuid(), 'u-owner', 'Owner@Example.com', 'OWNER', 'ACTIVE'),
           ('{tenant}', gen_random_uuid(), 'u-admin', 'admin@example.com', 'ADMIN', 'ACTIVE'),
           ('{tenant}', gen_random_uuid(), 'u-member', 'member@example.com', 'MEMBER', 'ACTIVE'),
           ('{tenant}', gen_random_uuid(), null, 'invited@example.com', 'ADMIN', 'INVITED'),
           ('{tenant}', gen_random_uuid(), 'u-disabled', 'disabled@example.com', 'ADMIN', 'DISABLED'),
           ('{tenant}', gen_random_uuid(), 'u-no-email', null, 'OWNER', 'ACTIVE')"
    ))
    .await;
}

async fn set_config(app: &TestApp, tenant: Uuid, category: &str, key: &str, value: Value) {
    let data_type = if value.is_boolean() {
        "BOOLEAN"
    } else {
        "STRING"
    };
    sql(
        app,
        &format!(
            "insert into configs (tenant_id, category, key, value, data_type)
         values ('{tenant}', '{category}', '{key}', '{value}', '{data_type}')
         on conflict (tenant_id, category, key) do update set value = excluded.value"
        ),
    )
    .await;
}

fn event(tenant: Uuid, event_type: EventType, data: Value) -> OutboxEvent {
    OutboxEvent {
        tenant_id: tenant.into(),
        id: Uuid::now_v7(),
        event_type,
        data,
        created_at: Utc::now(),
    }
}

fn quota_event(tenant: Uuid) -> OutboxEvent {
    event(
        tenant,
        EventType::QuotaThresholdReached,
        json!({ "resource": "storage", "threshold": 90, "used": 9, "limit": 10,
                "percentUsed": 90.0, "periodStart": "2026-12-01T00:00:00Z" }),
    )
}

fn plan_event(tenant: Uuid) -> OutboxEvent {
    event(
        tenant,
        EventType::PlanChanged,
        json!({ "fromPlan": "starter", "toPlan": "professional", "billingCycle": "MONTHLY" }),
    )
}

/// `mail::deliver` in a platform-scope transaction, as the worker calls it.
async fn deliver(app: &TestApp, event: &OutboxEvent) -> Result<MailOutcome, String> {
    let (a, e) = (app.app.clone(), event.clone());
    app.app
        .db
        .scoped(Scope::Platform("test"), |c| {
            async move { Ok(mail::deliver(&a, c, &e).await) }.scope_boxed()
        })
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_reaches_active_owners_and_admins_in_the_tenants_branding() {
    let (app, sink) = with_sink().await;
    let t = app
        .tenant()
        .plan("professional") // custom_branding
        .name("Acme <Ops> & Co")
        .create()
        .await;
    add_members(&app, t.id).await;
    set_config(&app, t.id, "branding", "primary_color", json!("#0A7CFF")).await;
    let logo = "https://cdn.example.com/logo.png?a=1&b=2";
    set_config(&app, t.id, "branding", "logo_url", json!(logo)).await;

    let e = quota_event(t.id);
    assert_eq!(
        deliver(&app, &e).await,
        Ok(MailOutcome::Sent { recipients: 2 })
    );
    let got = sink.wait_for(1).await;
    assert_eq!(got.len(), 1, "one message per event");
    let m = &got[0];
    assert_eq!(m.from, "alerts@tenantry.test");
    let mut rcpts = m.rcpts.clone();
    rcpts.sort();
    assert_eq!(rcpts, vec!["Owner@Example.com", "admin@example.com"]);
    let to = m.header("To").unwrap();
    assert!(
        to.contains("admin@example.com") && to.contains("Owner@Example.com"),
        "{to}"
    );
    assert_eq!(m.header("X-Tenantry-Event-Id"), Some(e.id.to_string()));
    assert_eq!(
        m.header("Message-ID"),
        Some(format!("<{}@tenantry.test>", e.id))
    );
    assert_eq!(
        m.header("Auto-Submitted").as_deref(),
        Some("auto-generated")
    );
    let subject = m.header("Subject").unwrap();
    assert!(
        subject.contains("Usage of storage reached 90% of the limit"),
        "{subject}"
    );
    let text = m.part("text/plain").expect("a plain-text part");
    assert!(text.contains("Acme <Ops> & Co"), "{text}");
    assert!(text.contains("9 of 10"), "{text}");
    assert!(text.contains(&format!("Event id: {}", e.id)), "{text}");
    let html = m.part("text/html").expect("an HTML part");
    assert!(html.contains("Acme &lt;Ops&gt; &amp; Co"), "{html}");
    assert!(!html.contains("<Ops>"), "{html}");
    assert!(html.contains("background:#0a7cff"), "{html}");
    assert!(
        html.contains(r#"src="https://cdn.example.com/logo.png?a=1&amp;b=2""#),
        "{html}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_has_a_mail_with_both_parts() {
    let (app, sink) = with_sink().await;
    let t = app.tenant().create().await;
    add_members(&app, t.id).await;
    let events = [
        (
            EventType::QuotaThresholdReached,
            json!({ "resource": "api_calls", "threshold": 75 }),
            "Usage of api_calls reached 75%",
        ),
        (
            EventType::PlanChanged,
            json!({ "fromPlan": "free", "toPlan": "starter" }),
            "Your plan changed to starter",
        ),
        (
            EventType::TrialEnding,
            json!({ "trialEnd": "2026-12-08T00:00:00Z", "plan": "starter" }),
            "Your starter trial ends on 2026-12-08 00:00 UTC",
        ),
        (
            EventType::PaymentFailed,
            json!({ "failedAt": "2026-12-01T00:00:00Z" }),
            "A payment failed",
        ),
        (
            EventType::TenantSuspended,
            json!({ "reason": "abuse" }),
            "Your tenant was suspended",
        ),
        (
            EventType::TenantReactivated,
            json!({}),
            "Your tenant is active again",
        ),
        (
            EventType::MemberInvited,
            json!({ "email": "new@example.com", "role": "ADMIN" }),
            "new@example.com was invited as ADMIN",
        ),
        (
            EventType::EndpointDisabled,
            json!({ "url": "https://hooks.example.com/x", "lastError": "HTTP 500" }),
            "A webhook endpoint was disabled",
        ),
    ];
    let mut ids = Vec::new();
    for (event_type, data, _) in &events {
        assert!(mail::mails(*event_type), "{event_type:?}");
        let e = event(t.id, *event_type, data.clone());
        assert_eq!(
            deliver(&app, &e).await,
            Ok(MailOutcome::Sent { recipients: 2 })
        );
        ids.push(e.id.to_string());
    }
    let got = sink.wait_for(events.len()).await;
    assert_eq!(got.len(), events.len());
    for ((_, _, subject), (m, id)) in events.iter().zip(got.iter().zip(&ids)) {
        assert_eq!(m.header("X-Tenantry-Event-Id").as_ref(), Some(id));
        let got_subject = m.header("Subject").unwrap();
        assert!(got_subject.contains(subject), "{got_subject} / {subject}");
        assert!(m.part("text/plain").unwrap().contains(id.as_str()));
        assert!(m.part("text/html").unwrap().contains("<!DOCTYPE html>"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn email_enabled_off_skips_every_mail() {
    let (app, sink) = with_sink().await;
    let t = app.tenant().create().await;
    add_members(&app, t.id).await;
    set_config(&app, t.id, "notifications", "email_enabled", json!(false)).await;
    for e in [quota_event(t.id), plan_event(t.id)] {
        assert_eq!(
            deliver(&app, &e).await,
            Ok(MailOutcome::Skipped(mail::SKIP_EMAIL_DISABLED))
        );
    }
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(sink.messages().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quota_alert_emails_off_skips_only_quota_mail() {
    let (app, sink) = with_sink().await;
    let t = app.tenant().create().await;
    add_members(&app, t.id).await;
    set_config(
        &app,
        t.id,
        "notifications",
        "quota_alert_emails",
        json!(false),
    )
    .await;
    assert_eq!(
        deliver(&app, &quota_event(t.id)).await,
        Ok(MailOutcome::Skipped(mail::SKIP_QUOTA_MAIL_DISABLED))
    );
    assert_eq!(
        deliver(&app, &plan_event(t.id)).await,
        Ok(MailOutcome::Sent { recipients: 2 })
    );
    let got = sink.wait_for(1).await;
    assert_eq!(got.len(), 1);
    let subject = got[0].header("Subject").unwrap();
    assert!(
        subject.contains("Your plan changed to professional"),
        "{subject}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_temporary_smtp_failure_is_an_error_and_the_retry_sends_the_same_message() {
    let (app, sink) = with_sink().await;
    let t = app.tenant().create().await;
    add_members(&app, t.id).await;
    sink.fail_next(1);
    let e = plan_event(t.id);
    let err = deliver(&app, &e)
        .await
        .expect_err("451 is a failure to retry");
    assert!(err.contains("451"), "{err}");
    assert!(!err.contains("127.0.0.1"), "{err}");
    assert_eq!(sink.refused(), 1);
    assert!(sink.messages().is_empty());
    // The worker's retry: the same event, the same ids on the message.
    assert_eq!(
        deliver(&app, &e).await,
        Ok(MailOutcome::Sent { recipients: 2 })
    );
    let got = sink.wait_for(1).await;
    assert_eq!(got[0].header("X-Tenantry-Event-Id"), Some(e.id.to_string()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_smtp_server_that_is_down_is_an_error() {
    let closed = crate::common::free_port();
    let app = TestApp::spawn_with(|env| {
        env.insert("SMTP_URL".into(), format!("smtp://127.0.0.1:{closed}"));
    })
    .await;
    let t = app.tenant().create().await;
    add_members(&app, t.id).await;
    let err = deliver(&app, &plan_event(t.id)).await.unwrap_err();
    assert!(err.contains("mail server"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_smtp_url_mail_is_logged_not_sent() {
    let app = TestApp::spawn().await;
    assert!(!app.app.mailer.sends());
    let t = app.tenant().create().await;
    add_members(&app, t.id).await;
    assert_eq!(
        deliver(&app, &plan_event(t.id)).await,
        Ok(MailOutcome::Sent { recipients: 2 })
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_suspension_is_mailed_without_branding_the_plan_lacks() {
    let (app, sink) = with_sink().await;
    // Free plan: no custom_branding, so a stored colour is not used.
    let t = app.tenant().create().await;
    add_members(&app, t.id).await;
    set_config(&app, t.id, "branding", "primary_color", json!("#ff0000")).await;
    app.suspend_tenant(t.id, "Unpaid <invoice>").await.ok();

    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = diesel::sql_types::Uuid)]
        id: Uuid,
        #[diesel(sql_type = diesel::sql_types::Jsonb)]
        data: Value,
        #[diesel(sql_type = diesel::sql_types::Timestamptz)]
        created_at: chrono::DateTime<Utc>,
    }
    let mut c = app.db.superuser().await;
    let row: Row = diesel::sql_query(format!(
        "select id, data, created_at from notification_outbox
          where tenant_id = '{}' and event_type = 'tenant.suspended'",
        t.id
    ))
    .get_result(&mut c)
    .await
    .unwrap();
    let e = OutboxEvent {
        tenant_id: t.id.into(),
        id: row.id,
        event_type: EventType::TenantSuspended,
        data: row.data,
        created_at: row.created_at,
    };
    assert_eq!(
        deliver(&app, &e).await,
        Ok(MailOutcome::Sent { recipients: 2 })
    );
    let m = &sink.wait_for(1).await[0];
    assert!(m
        .header("Subject")
        .unwrap()
        .contains("Your tenant was suspended"));
    assert!(m
        .part("text/plain")
        .unwrap()
        .contains("Reason: Unpaid <invoice>"));
    let html = m.part("text/html").unwrap();
    assert!(html.contains("Unpaid &lt;invoice&gt;"), "{html}");
    assert!(
        !html.contains("#ff0000") && html.contains("background:#4f46e5"),
        "{html}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nobody_to_tell_and_deleted_tenants_are_skipped() {
    let (app, sink) = with_sink().await;
    let t = app.tenant().owner("owner-without-address").create().await;
    assert_eq!(
        deliver(&app, &plan_event(t.id)).await,
        Ok(MailOutcome::Skipped(mail::SKIP_NO_RECIPIENTS))
    );
    let deleted = app.tenant().create().await;
    add_members(&app, deleted.id).await;
    app.delete_tenant(deleted.id).await.ok();
    assert_eq!(
        deliver(&app, &plan_event(deleted.id)).await,
        Ok(MailOutcome::Skipped(mail::SKIP_TENANT_GONE))
    );
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(sink.messages().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trial_ending_in_three_days_is_told_once_per_trial_end() {
    let (app, sink) = with_sink().await;
    let t = app.tenant().plan("professional").create().await; // a 14-day trial
    let other = app.tenant().plan("professional").create().await;
    add_members(&app, t.id).await;
    let told = format!(
        "select count(*) as n from notification_outbox
          where tenant_id = '{}' and event_type = 'subscription.trial_ending'",
        t.id
    );
    let mut c = app.db.superuser().await;
    assert_eq!(
        jobs::run_once(&app.app, Job::TrialEnding).await.unwrap(),
        Outcome::Done(0),
        "14 days ahead is not yet"
    );

    sql(&app, &format!(
        "update billing_subscriptions set trial_end = now() + interval '2 days' where tenant_id = '{}'",
        t.id
    ))
    .await;
    for _ in 0..2 {
        jobs::run_once(&app.app, Job::TrialEnding).await.unwrap();
    }
    assert_eq!(
        count(&mut c, &told).await,
        1,
        "once, however often the job runs"
    );
    let other_told = told.replace(&t.id.to_string(), &other.id.to_string());
    assert_eq!(count(&mut c, &other_told).await, 0);

    // An extended trial ends later: told again, once.
    sql(&app, &format!(
        "update billing_subscriptions set trial_end = trial_end + interval '1 day' where tenant_id = '{}'",
        t.id
    ))
    .await;
    jobs::run_once(&app.app, Job::TrialEnding).await.unwrap();
    jobs::run_once(&app.app, Job::TrialEnding).await.unwrap();
    assert_eq!(count(&mut c, &told).await, 2);

    // Its data and its mail.
    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = diesel::sql_types::Uuid)]
        id: Uuid,
        #[diesel(sql_type = diesel::sql_types::Jsonb)]
        data: Value,
    }
    let row: Row = diesel::sql_query(format!(
        "select id, data from notification_outbox
          where tenant_id = '{}' and event_type = 'subscription.trial_ending' order by seq desc limit 1",
        t.id
    ))
    .get_result(&mut c)
    .await
    .unwrap();
    assert_eq!(row.data["plan"], json!("professional"));
    assert!(row.data["trialEnd"].as_str().is_some(), "{}", row.data);
    let e = OutboxEvent {
        tenant_id: t.id.into(),
        id: row.id,
        event_type: EventType::TrialEnding,
        data: row.data,
        created_at: Utc::now(),
    };
    assert_eq!(
        deliver(&app, &e).await,
        Ok(MailOutcome::Sent { recipients: 2 })
    );
    let subject = sink.wait_for(1).await[0].header("Subject").unwrap();
    assert!(
        subject.contains("Your professional trial ends on"),
        "{subject}"
    );

    // A trial that is no longer TRIALING is not told.
    sql(
        &app,
        &format!(
        "update billing_subscriptions set status = 'ACTIVE', trial_end = now() + interval '1 day',
                trial_ending_notified_for = null where tenant_id = '{}'",
        other.id
    ),
    )
    .await;
    jobs::run_once(&app.app, Job::TrialEnding).await.unwrap();
    assert_eq!(count(&mut c, &other_told).await, 0);
}
