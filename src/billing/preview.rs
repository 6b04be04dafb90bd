//! `previewPlanChange`: what a switch to another plan changes (quotas, features) and costs
//! now for the rest of the period.

use chrono::Utc;
use scoped_futures::ScopedFutureExt;

use super::payments::Payments;
use super::prices::{active_plan, price};
use super::store;
use crate::auth::Actor;
use crate::db::Db;
use crate::error::{AppError, AppResult};
use crate::ids::{PlanId, TenantId};
use crate::plans;
use crate::plans::model::{BillingCycle, PlanPriceRow, PlanRow};
use crate::tenants;
use crate::tenants::service::target_scope;

pub struct Preview {
    pub from: PlanRow,
    pub to: PlanRow,
    pub cycle: BillingCycle,
    pub currency: String,
    /// What the switch costs now for the rest of the period (negative: a credit).
    pub proration_amount: i64,
    pub quota_changes: Vec<(String, Option<i64>, Option<i64>)>,
    pub features_added: Vec<String>,
    pub features_removed: Vec<String>,
}

/// `previewPlanChange`: the differences, and the prorated amount for the rest of the period
/// (LOCAL mode, `payments` = `None`, computes it from the catalogue prices).
pub async fn preview(
    db: &Db,
    payments: Option<&dyn Payments>,
    actor: &Actor,
    tenant_id: TenantId,
    plan_slug: &str,
    cycle: BillingCycle,
) -> AppResult<Preview> {
    let scope = target_scope(actor, tenant_id, "billing")?;
    let slug = plan_slug.to_owned();
    let (mut preview, stripe_ids) = db
        .scoped(scope, |c| {
            async move {
                let tenant = tenants::store::find(c, tenant_id)
                    .await?
                    .ok_or_else(|| AppError::not_found("tenant"))?;
                let to = active_plan(c, &slug).await?;
                let from = plans::store::by_ids(c, &[tenant.plan_id])
                    .await?
                    .pop()
                    .ok_or_else(|| AppError::not_found("plan"))?;
                let ids = [from.id, to.id];
                let prices = plans::store::prices_of(c, &ids).await?;
                let quotas = plans::store::quotas_of(c, &ids).await?;
                let features = plans::store::features_of(c, &ids).await?;
                let sub = store::subscriptions_of(c, &[tenant_id]).await?.pop();
                let from_cycle = sub
                    .as_ref()
                    .map_or(BillingCycle::Monthly, |s| s.billing_cycle);
                let old = price(&prices, from.id, &tenant.region, from_cycle);
                let new = price(&prices, to.id, &tenant.region, cycle);
                let now = Utc::now();
                let fraction = sub
                    .as_ref()
                    .and_then(|s| Some((s.current_period_start?, s.current_period_end?)))
                    .filter(|(a, b)| b > a && *b > now)
                    .map_or(1.0, |(a, b)| {
                        (b - now).num_seconds() as f64 / (b - a).num_seconds() as f64
                    });
                let stripe_ids = sub
                    .as_ref()
                    .and_then(|s| s.stripe_subscription_id.clone())
                    .zip(new.as_ref().and_then(|p| p.stripe_price_id.clone()));
                let amount = |p: &Option<PlanPriceRow>| p.as_ref().map_or(0, |p| p.amount) as f64;
                let proration = ((amount(&new) - amount(&old)) * fraction).round() as i64;
                let currency = new.or(old).map_or_else(|| "usd".into(), |p| p.currency);
                let mut resources: Vec<String> =
                    quotas.iter().map(|q| q.resource.clone()).collect();
                resources.sort();
                resources.dedup();
                let limit_of = |plan: PlanId, r: &str| {
                    quotas
                        .iter()
                        .find(|q| q.plan_id == plan && q.resource == r)
                        .map(|q| q.limit)
                };
                let quota_changes = resources
                    .into_iter()
                    .map(|r| (limit_of(from.id, &r), limit_of(to.id, &r), r))
                    .filter(|(a, b, _)| a != b)
                    .map(|(a, b, r)| (r, a, b))
                    .collect();
                let has =
                    |plan: PlanId, f: &str| features.iter().any(|(p, k)| *p == plan && k == f);
                let mut keys: Vec<&String> = features.iter().map(|(_, k)| k).collect();
                keys.sort();
                keys.dedup();
                let features_added = keys
                    .iter()
                    .filter(|k| has(to.id, k) && !has(from.id, k))
                    .map(|k| k.to_string())
                    .collect();
                let features_removed = keys
                    .iter()
                    .filter(|k| has(from.id, k) && !has(to.id, k))
                    .map(|k| k.to_string())
                    .collect();
                let preview = Preview {
                    from,
                    to,
                    cycle,
                    currency,
                    proration_amount: proration,
                    quota_changes,
                    features_added,
                    features_removed,
                };
                Ok((preview, stripe_ids))
            }
            .scope_boxed()
        })
        .await?;
    // With Stripe, the amount is Stripe's own invoice preview of the proration.
    if let (Some(api), Some((sub_id, price_id))) = (payments, stripe_ids) {
        let current = api.subscription(&sub_id).await?;
        let (amount, currency) = api.preview_change(&current, &price_id).await?;
        preview.proration_amount = amount;
        preview.currency = currency;
    }
    Ok(preview)
}
