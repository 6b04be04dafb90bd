//! SQL of the platform figures. No rules: the caller chooses the statuses and the window, and
//! the platform scope is applied by the caller's transaction.

use diesel::sql_types::{Array, Integer, Text};
use diesel_async::RunQueryDsl;

use super::model::{Counted, PricedSubscriptions};
use crate::billing::model::SubscriptionStatus;
use crate::db::Conn;

async fn counted(c: &mut Conn, sql: &str) -> diesel::QueryResult<Vec<Counted>> {
    diesel::sql_query(sql).load(c).await
}

fn single(rows: Vec<Counted>) -> i64 {
    rows.into_iter().next().map_or(0, |r| r.n)
}

/// Tenants per status (deleted ones included).
pub async fn tenants_by_status(c: &mut Conn) -> diesel::QueryResult<Vec<Counted>> {
    counted(
        c,
        "select status as key, count(*) as n from tenants group by 1 order by 1",
    )
    .await
}

/// Tenants not deleted, per plan slug.
pub async fn tenants_by_plan(c: &mut Conn) -> diesel::QueryResult<Vec<Counted>> {
    counted(
        c,
        "select p.slug as key, count(*) as n from tenants t join plans p on p.id = t.plan_id
          where t.status <> 'DELETED' group by 1 order by 1",
    )
    .await
}

/// Subscriptions of tenants not deleted, per subscription status.
pub async fn subscriptions_by_status(c: &mut Conn) -> diesel::QueryResult<Vec<Counted>> {
    counted(
        c,
        "select s.status as key, count(*) as n from billing_subscriptions s
           join tenants t on t.id = s.tenant_id where t.status <> 'DELETED' group by 1 order by 1",
    )
    .await
}

/// Subscriptions in `statuses` of tenants not deleted, grouped by the non-zero price they pay
/// (the plan's price in the tenant's region for the subscription's cycle).
pub async fn priced_subscriptions(
    c: &mut Conn,
    statuses: &[SubscriptionStatus],
) -> diesel::QueryResult<Vec<PricedSubscriptions>> {
    diesel::sql_query(
        "select pp.currency, s.billing_cycle, pp.amount, count(*) as n
           from billing_subscriptions s
           join tenants t on t.id = s.tenant_id
           join plan_prices pp on pp.plan_id = s.plan_id and pp.region = t.region
                              and pp.billing_cycle = s.billing_cycle
          where s.status = any($1) and t.status <> 'DELETED' and pp.amount > 0
          group by 1, 2, 3 order by 1, 2, 3",
    )
    .bind::<Array<Text>, _>(statuses)
    .load(c)
    .await
}

/// Quota alerts raised in the last `hours` hours (database clock).
pub async fn alerts_within(c: &mut Conn, hours: i32) -> diesel::QueryResult<i64> {
    let rows: Vec<Counted> = diesel::sql_query(
        "select '' as key, count(*) as n from quota_alerts
          where created_at > now() - make_interval(hours => $1)",
    )
    .bind::<Integer, _>(hours)
    .load(c)
    .await?;
    Ok(single(rows))
}

/// Stripe events whose processing failed.
pub async fn failed_webhook_events(c: &mut Conn) -> diesel::QueryResult<i64> {
    let rows = counted(
        c,
        "select '' as key, count(*) as n from stripe_events where status = 'FAILED'",
    )
    .await?;
    Ok(single(rows))
}
