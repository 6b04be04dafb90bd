//! The platform figures and their rules: platform admins only; monthly recurring revenue is
//! what ACTIVE and PAST_DUE subscriptions pay per month (a yearly price counts a twelfth,
//! rounded down per subscription), per currency.

use std::collections::BTreeMap;

use scoped_futures::ScopedFutureExt;

use super::model::{Counted, PricedSubscriptions};
use super::store;
use crate::auth::{Actor, Role};
use crate::billing::model::SubscriptionStatus;
use crate::db::{Db, Scope};
use crate::error::AppResult;
use crate::plans::model::BillingCycle;

/// Subscription statuses that bring recurring revenue.
pub const RECURRING_STATUSES: [SubscriptionStatus; 2] =
    [SubscriptionStatus::Active, SubscriptionStatus::PastDue];
/// The window of `alerts_last_24h`.
const ALERT_WINDOW_HOURS: i32 = 24;

/// Platform-wide figures, each list ordered by its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlatformStats {
    pub total_tenants: i64,
    pub tenants_by_status: Vec<Counted>,
    pub tenants_by_plan: Vec<Counted>,
    pub subscriptions_by_status: Vec<Counted>,
    /// Minor units per currency.
    pub mrr: Vec<(String, i64)>,
    pub alerts_last_24h: i64,
    pub webhook_failures: i64,
}

/// Monthly recurring revenue per currency of the priced subscriptions (summed in i128, so
/// no overflow; a sum beyond i64 saturates instead of wrapping).
pub fn mrr(priced: &[PricedSubscriptions]) -> Vec<(String, i64)> {
    let mut by_currency = BTreeMap::<String, i128>::new();
    for p in priced {
        let monthly = match p.billing_cycle {
            BillingCycle::Yearly => p.amount / 12,
            BillingCycle::Monthly => p.amount,
        };
        *by_currency.entry(p.currency.clone()).or_default() += monthly as i128 * p.n as i128;
    }
    let clamp = |v: i128| v.clamp(i64::MIN as i128, i64::MAX as i128) as i64;
    by_currency
        .into_iter()
        .map(|(c, v)| (c, clamp(v)))
        .collect()
}

pub async fn platform_stats(db: &Db, actor: &Actor) -> AppResult<PlatformStats> {
    actor.require(Role::PlatformAdmin)?;
    db.scoped(Scope::Platform("platform_stats"), |c| {
        async move {
            let tenants_by_status = store::tenants_by_status(c).await?;
            let tenants_by_plan = store::tenants_by_plan(c).await?;
            let subscriptions_by_status = store::subscriptions_by_status(c).await?;
            let priced = store::priced_subscriptions(c, &RECURRING_STATUSES).await?;
            let alerts_last_24h = store::alerts_within(c, ALERT_WINDOW_HOURS).await?;
            let webhook_failures = store::failed_webhook_events(c).await?;
            Ok(PlatformStats {
                total_tenants: tenants_by_status.iter().map(|p| p.n).sum(),
                tenants_by_status,
                tenants_by_plan,
                subscriptions_by_status,
                mrr: mrr(&priced),
                alerts_last_24h,
                webhook_failures,
            })
        }
        .scope_boxed()
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yearly_prices_count_a_twelfth_per_subscription() {
        let p = |currency: &str, cycle, amount, n| PricedSubscriptions {
            currency: currency.into(),
            billing_cycle: cycle,
            amount,
            n,
        };
        let rows = [
            p("eur", BillingCycle::Monthly, 1000, 2),
            p("usd", BillingCycle::Monthly, 2900, 1),
            p("usd", BillingCycle::Yearly, 29_005, 2),
        ];
        assert_eq!(
            mrr(&rows),
            vec![("eur".into(), 2000), ("usd".into(), 2900 + 2 * 2417)]
        );
    }
}
