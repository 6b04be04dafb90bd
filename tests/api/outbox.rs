//! The notification outbox (issue 16, first step; SPEC §12): each event is written in the
//! transaction of its cause, once, in order per tenant — a quota crossing under 64 racing
//! writers yields exactly one event per threshold, with SPEC §12's `data`.

use serde_json::{json, Value};

use crate::common::{count, TestApp};

async fn events(app: &TestApp, tenant: uuid::Uuid) -> Vec<(String, Value)> {
    use diesel_async::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = diesel::sql_types::Text)]
        event_type: String,
        #[diesel(sql_type = diesel::sql_types::Jsonb)]
        data: Value,
    }
    let mut c = app.db.superuser().await;
    let rows: Vec<Row> = diesel::sql_query(format!(
        "select event_type, data from notification_outbox where tenant_id = '{tenant}' order by seq"
    ))
    .load(&mut c)
    .await
    .unwrap();
    rows.into_iter().map(|r| (r.event_type, r.data)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn causes_write_their_events_once_and_in_order() {
    let app = TestApp::spawn().await;
    let admin = app.admin_token();
    let t = app
        .tenant()
        .plan("starter")
        .owner("events-owner")
        .create()
        .await;
    let limit = json!({ "t": t.id });
    app.gql(
        Some(&admin),
        "mutation($t: ID!) { setQuota(tenantId: $t, input: { resource: \"databases\", limit: 100, enforcement: HARD, alertThresholds: [25, 50] }) { limit } }",
        limit,
    )
    .await
    .ok();

    // 64 racing writers of 1 each: 25 and 50 are crossed once each.
    crate::common::domain::race_usage(&[&app.base], &t.admin, "databases", 64).await;
    // A plan change, an invitation, a suspension and a reactivation.
    app.gql(
        Some(&t.admin),
        "mutation { changePlan(planSlug: \"professional\", billingCycle: MONTHLY) { status } }",
        json!({}),
    )
    .await
    .ok();
    app.gql(
        Some(&t.admin),
        "mutation { inviteMember(input: { email: \"new@example.com\", role: MEMBER }) { id } }",
        json!({}),
    )
    .await
    .ok();
    for m in [
        "suspendTenant(id: $id, reason: \"audit\")",
        "reactivateTenant(id: $id)",
    ] {
        app.gql(
            Some(&admin),
            &format!("mutation($id: ID!) {{ {m} {{ status }} }}"),
            json!({ "id": t.id }),
        )
        .await
        .ok();
    }

    let got = events(&app, t.id).await;
    let types: Vec<&str> = got.iter().map(|(e, _)| e.as_str()).collect();
    assert_eq!(
        types,
        [
            "quota.threshold_reached",
            "quota.threshold_reached",
            "plan.changed",
            "member.invited",
            "tenant.suspended",
            "tenant.reactivated"
        ]
    );
    let q = &got[0].1;
    assert_eq!(
        (&q["resource"], &q["threshold"], &q["limit"]),
        (&json!("databases"), &json!(25), &json!(100))
    );
    assert!(
        q["used"].as_i64().unwrap() >= 25 && q["periodStart"].is_string(),
        "{q}"
    );
    assert!(q["percentUsed"].as_f64().unwrap() >= 25.0, "{q}");
    assert_eq!(got[1].1["threshold"], 50);
    assert_eq!(
        (&got[2].1["fromPlan"], &got[2].1["toPlan"]),
        (&json!("starter"), &json!("professional"))
    );
    assert_eq!(got[3].1["email"], "new@example.com");
    assert!(
        !got[3].1.to_string().contains("token"),
        "no secret in the event"
    );
    assert_eq!(got[4].1["reason"], "audit");

    // The event of an alert shares the alert's id (receivers deduplicate on it).
    let mut c = app.db.superuser().await;
    let same = format!(
        "select count(*) as n from notification_outbox o join quota_alerts a
           on a.tenant_id = o.tenant_id and a.id = o.id where o.tenant_id = '{}'",
        t.id
    );
    assert_eq!(count(&mut c, &same).await, 2);
}
