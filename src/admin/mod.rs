//! Platform-admin views across tenants (`platformStats`). Read-only, through the explicit
//! platform scope.

use async_graphql::{Context, Object, Result, SimpleObject};
use diesel::sql_types::{BigInt, Text};
use diesel_async::RunQueryDsl;
use scoped_futures::ScopedFutureExt;

use crate::auth::Role;
use crate::db::{Conn, Scope};
use crate::graphql::context::CtxExt;
use crate::graphql::guards::RequireRole;
use crate::graphql::scalars::BigInt as Big;

#[derive(SimpleObject, Debug, Clone, PartialEq, Eq)]
pub struct CountBy {
    pub key: String,
    pub count: Big,
}

#[derive(SimpleObject, Debug, Clone, PartialEq, Eq)]
pub struct Money {
    pub currency: String,
    /// Minor units.
    pub amount: Big,
}

#[derive(SimpleObject)]
pub struct PlatformStats {
    pub total_tenants: Big,
    pub tenants_by_status: Vec<CountBy>,
    /// Tenants not deleted, by plan slug.
    pub tenants_by_plan: Vec<CountBy>,
    pub subscriptions_by_status: Vec<CountBy>,
    /// Monthly recurring revenue of ACTIVE and PAST_DUE subscriptions (yearly prices / 12),
    /// by currency, in minor units.
    pub mrr: Vec<Money>,
    #[graphql(name = "alertsLast24h")]
    pub alerts_last_24h: Big,
    pub webhook_failures: Big,
}

#[derive(diesel::QueryableByName)]
struct Row {
    #[diesel(sql_type = Text)]
    key: String,
    #[diesel(sql_type = BigInt)]
    n: i64,
}

async fn pairs(c: &mut Conn, sql: &str) -> diesel::QueryResult<Vec<CountBy>> {
    let rows: Vec<Row> = diesel::sql_query(sql).load(c).await?;
    Ok(rows
        .into_iter()
        .map(|r| CountBy {
            key: r.key,
            count: Big(r.n),
        })
        .collect())
}

async fn single(c: &mut Conn, sql: &str) -> diesel::QueryResult<i64> {
    let rows: Vec<Row> = diesel::sql_query(sql).load(c).await?;
    Ok(rows.into_iter().next().map_or(0, |r| r.n))
}

#[derive(Default)]
pub struct AdminQuery;

#[Object]
impl AdminQuery {
    /// Platform-wide figures (platform admins).
    #[graphql(guard = "RequireRole(Role::PlatformAdmin)")]
    async fn platform_stats(&self, ctx: &Context<'_>) -> Result<PlatformStats> {
        let stats = ctx
            .req()
            .db
            .scoped(Scope::Platform("platform_stats"), |c| {
                async move {
                    let by_status = pairs(c, "select status as key, count(*) as n from tenants group by 1 order by 1").await?;
                    let by_plan = pairs(
                        c,
                        "select p.slug as key, count(*) as n from tenants t join plans p on p.id = t.plan_id
                          where t.status <> 'DELETED' group by 1 order by 1",
                    )
                    .await?;
                    let subs = pairs(
                        c,
                        "select s.status as key, count(*) as n from billing_subscriptions s
                           join tenants t on t.id = s.tenant_id where t.status <> 'DELETED' group by 1 order by 1",
                    )
                    .await?;
                    let mrr = pairs(
                        c,
                        "select pp.currency as key,
                                sum(case when s.billing_cycle = 'YEARLY' then pp.amount / 12 else pp.amount end)::bigint as n
                           from billing_subscriptions s
                           join tenants t on t.id = s.tenant_id
                           join plan_prices pp on pp.plan_id = s.plan_id and pp.region = t.region
                                              and pp.billing_cycle = s.billing_cycle
                          where s.status in ('ACTIVE', 'PAST_DUE') and t.status <> 'DELETED' and pp.amount > 0
                          group by 1 order by 1",
                    )
                    .await?;
                    let alerts = single(c, "select '' as key, count(*) as n from quota_alerts where created_at > now() - interval '24 hours'").await?;
                    let failures = single(c, "select '' as key, count(*) as n from stripe_events where status = 'FAILED'").await?;
                    let total = by_status.iter().map(|p| p.count.0).sum();
                    Ok(PlatformStats {
                        total_tenants: Big(total),
                        tenants_by_status: by_status,
                        tenants_by_plan: by_plan,
                        subscriptions_by_status: subs,
                        mrr: mrr.into_iter().map(|p| Money { currency: p.key, amount: p.count }).collect(),
                        alerts_last_24h: Big(alerts),
                        webhook_failures: Big(failures),
                    })
                }
                .scope_boxed()
            })
            .await?;
        Ok(stats)
    }
}
