//! `setPlanPrice(applyToExisting: true)` with Stripe: every live Stripe subscription of the
//! plan in that region and cycle moves to the plan's new price, each through the plan-change
//! path (`plan_change::reprice_stripe`: a PENDING intent, Stripe's update with prorations keyed
//! by the intent id, completed by the webhook). Runs after the price is committed (the webhook
//! must know the new price), in a task of its own so that a client disconnecting or a request
//! timeout cannot stop it halfway, `CONCURRENCY` subscriptions at a time; the mutation waits
//! for it up to `WAIT`, then answers while it goes on. Its outcome is one PRICE_APPLIED audit
//! entry (moved, already on the price, and each failure with its tenant and reason); a failed
//! move also leaves its FAILED intent with a PLAN_CHANGE_FAILED entry. Setting the same price
//! again with `applyToExisting` retries the ones left behind.

use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::{self, StreamExt};
use scoped_futures::ScopedFutureExt;
use serde_json::json;

use super::payments::Payments;
use super::plan_change::reprice_stripe;
use super::store;
use crate::audit;
use crate::auth::Actor;
use crate::db::{Db, Scope};
use crate::error::AppResult;
use crate::ids::{IntentId, TenantId};
use crate::plans::model::{BillingCycle, PlanRow};

/// Subscriptions moved at once (Stripe's rate limit is far above).
pub const CONCURRENCY: usize = 4;
/// How long the mutation waits for the moves before it answers (under the request timeout).
pub const WAIT: Duration = Duration::from_secs(20);

/// The subscriptions to move and the price they move to.
pub struct Target {
    pub plan: PlanRow,
    pub region: String,
    pub cycle: BillingCycle,
    pub price_id: String,
}

enum Outcome {
    Moved(IntentId),
    Already,
    Failed(String),
}

/// Moves the subscriptions in a task of its own, waiting for it at most `WAIT`.
pub async fn run(db: Db, api: Arc<dyn Payments>, actor: Actor, target: Target) {
    let plan = target.plan.slug.clone();
    let task = tokio::spawn(async move { apply(&db, api.as_ref(), &actor, &target).await });
    match tokio::time::timeout(WAIT, task).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => tracing::error!(plan, error = %e, "re-pricing subscriptions failed"),
        Ok(Err(e)) => tracing::error!(plan, error = %e, "re-pricing subscriptions stopped"),
        Err(_) => tracing::info!(plan, "re-pricing subscriptions goes on after the answer"),
    }
}

async fn apply(db: &Db, api: &dyn Payments, actor: &Actor, t: &Target) -> AppResult<()> {
    let (plan, region, cycle) = (t.plan.id, t.region.clone(), t.cycle);
    let subs = db
        .scoped(Scope::Platform("reprice"), |c| {
            async move { Ok(store::stripe_subscribers(c, plan, &region, cycle).await?) }
                .scope_boxed()
        })
        .await?;
    let outcomes: Vec<(TenantId, Outcome)> =
        stream::iter(subs)
            .map(|(tenant, sub)| async move {
                (tenant, move_one(db, api, actor, t, tenant, &sub).await)
            })
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
    let mut moved = Vec::new();
    let mut failed = Vec::new();
    let mut already = 0;
    for (tenant, o) in outcomes {
        match o {
            Outcome::Moved(intent) => moved.push(json!({ "tenantId": tenant, "intentId": intent })),
            Outcome::Already => already += 1,
            Outcome::Failed(error) => {
                tracing::warn!(%tenant, %error, "a subscription was not moved to the new price");
                failed.push(json!({ "tenantId": tenant, "error": error }));
            }
        }
    }
    let entry = audit::Change {
        tenant_id: None,
        entity_type: "plan",
        entity_id: t.plan.slug.clone(),
        action: "PRICE_APPLIED",
        before: serde_json::Value::Null,
        after: json!({ "region": t.region, "billingCycle": t.cycle.as_str(),
            "stripePriceId": t.price_id, "moved": moved.len(), "alreadyOnPrice": already,
            "failed": failed.len() }),
        metadata: json!({ "moved": moved, "failures": failed }),
    };
    let actor = actor.clone();
    db.scoped(Scope::Platform("catalogue_admin"), |c| {
        async move { Ok(audit::record(c, &actor, entry).await?) }.scope_boxed()
    })
    .await
}

/// One subscription: left alone when Stripe has it on the price already, else moved.
async fn move_one(
    db: &Db,
    api: &dyn Payments,
    actor: &Actor,
    t: &Target,
    tenant: TenantId,
    sub: &str,
) -> Outcome {
    match api.subscription(sub).await {
        Ok(s) if s.price_id.as_deref() == Some(t.price_id.as_str()) => return Outcome::Already,
        Ok(_) => {}
        Err(e) => return Outcome::Failed(e.to_string()),
    }
    match reprice_stripe(db, api, actor, tenant, (t.plan.id, t.cycle)).await {
        Ok(intent) => Outcome::Moved(intent),
        Err(e) => Outcome::Failed(e.to_string()),
    }
}
