//! `platformStats`: the GraphQL shape of `service::platform_stats`.

use async_graphql::{Context, Object, Result, SimpleObject};

use super::model::Counted;
use super::service::{self, PlatformStats as Stats};
use crate::auth::Role;
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

impl From<Stats> for PlatformStats {
    fn from(s: Stats) -> Self {
        let pairs = |v: Vec<_>| {
            v.into_iter()
                .map(|p: Counted| CountBy {
                    key: p.key,
                    count: Big(p.n),
                })
                .collect()
        };
        PlatformStats {
            total_tenants: Big(s.total_tenants),
            tenants_by_status: pairs(s.tenants_by_status),
            tenants_by_plan: pairs(s.tenants_by_plan),
            subscriptions_by_status: pairs(s.subscriptions_by_status),
            mrr: s
                .mrr
                .into_iter()
                .map(|(currency, amount)| Money {
                    currency,
                    amount: Big(amount),
                })
                .collect(),
            alerts_last_24h: Big(s.alerts_last_24h),
            webhook_failures: Big(s.webhook_failures),
        }
    }
}

#[derive(Default)]
pub struct AdminQuery;

#[Object]
impl AdminQuery {
    /// Platform-wide figures (platform admins).
    #[graphql(guard = "RequireRole(Role::PlatformAdmin)")]
    async fn platform_stats(&self, ctx: &Context<'_>) -> Result<PlatformStats> {
        let req = ctx.req();
        Ok(service::platform_stats(&req.db, &req.actor()).await?.into())
    }
}
