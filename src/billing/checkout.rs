//! Stripe Checkout for a tenant's first paid subscription, and the tenant's Stripe customer.

use scoped_futures::ScopedFutureExt;
use serde_json::{json, Value};
use uuid::Uuid;

use super::payments::{CheckoutRequest, Payments};
use super::plan_change::change_plan;
use super::prices::{active_plan, stripe_price};
use super::store::{self, SubscriptionChanges};
use crate::app::App;
use crate::audit;
use crate::auth::{Actor, Role};
use crate::db::{Conn, Db, Scope};
use crate::error::{AppError, AppResult};
use crate::ids::TenantId;
use crate::plans::model::BillingCycle;
use crate::tenants;
use crate::tenants::lifecycle::lock_live;
use crate::tenants::model::TenantRow;
use crate::tenants::service::target_scope;

/// The pages Checkout sends the customer back to.
#[derive(Clone, Copy)]
pub struct Urls<'a> {
    pub success: &'a str,
    pub cancel: &'a str,
}

/// `createCheckoutSession`: with Stripe a Checkout session (id, URL to redirect to); in LOCAL
/// mode the plan applies at once and the URL is the success page.
pub async fn start(
    app: &App,
    actor: &Actor,
    tenant_id: TenantId,
    plan_slug: &str,
    cycle: BillingCycle,
    urls: Urls<'_>,
) -> AppResult<(String, String)> {
    for (field, url) in [("successUrl", urls.success), ("cancelUrl", urls.cancel)] {
        if !(url.starts_with("https://") || url.starts_with("http://")) || url.len() > 2048 {
            return Err(AppError::bad_input(field, "must be an http(s) URL"));
        }
    }
    if let Some(api) = app.payments.as_deref() {
        let choice = (tenant_id, plan_slug, cycle);
        return checkout_stripe(&app.db, api, actor, choice, urls).await;
    }
    let (i, _, _) = change_plan(app, actor, tenant_id, plan_slug, cycle).await?;
    Ok((
        format!("local_{}", i.id.as_uuid().simple()),
        urls.success.to_owned(),
    ))
}

/// `createCheckoutSession` with Stripe: a subscription-mode Checkout session for the tenant's
/// customer and the plan's price. Returns (session id, URL). The plan applies when Stripe's
/// webhook reports the new subscription.
async fn checkout_stripe(
    db: &Db,
    api: &dyn Payments,
    actor: &Actor,
    (tenant_id, plan_slug, cycle): (TenantId, &str, BillingCycle),
    urls: Urls<'_>,
) -> AppResult<(String, String)> {
    actor.require(Role::TenantAdmin)?;
    let scope = target_scope(actor, tenant_id, "billing")?;
    let slug = plan_slug.to_owned();
    let (tenant, plan, price_id) = db
        .scoped(scope, |c| {
            async move {
                let tenant = lock_live(c, tenant_id).await?;
                let plan = active_plan(c, &slug).await?;
                let sub = store::subscriptions_of(c, &[tenant_id]).await?.pop();
                let paid = sub.as_ref().is_some_and(|s| {
                    s.stripe_subscription_id.is_some() && super::decide::is_live(s.status)
                });
                if paid {
                    return Err(AppError::conflict(
                        Some("planSlug"),
                        "the tenant already has a paid subscription: use changePlan",
                    ));
                }
                let price_id = stripe_price(c, &plan, &tenant.region, cycle).await?;
                Ok((tenant, plan, price_id))
            }
            .scope_boxed()
        })
        .await?;
    let customer = match tenant.stripe_customer_id.clone() {
        Some(c) => c,
        None => ensure_customer(db, api, &tenant).await?,
    };
    let session = api
        .checkout(CheckoutRequest {
            tenant_id,
            customer: &customer,
            price_id: &price_id,
            plan_slug: &plan.slug,
            success_url: urls.success,
            cancel_url: urls.cancel,
            idempotency_key: Uuid::new_v4(),
        })
        .await?;
    let (actor_c, slug) = (actor.clone(), plan.slug.clone());
    db.scoped(Scope::Tenant(tenant_id), |c| {
        async move {
            audit::record(
                c,
                &actor_c,
                audit::Change::new(
                    tenant_id,
                    "subscription",
                    tenant_id,
                    "CHECKOUT",
                    Value::Null,
                    json!({ "plan": slug, "billingCycle": cycle.as_str() }),
                ),
            )
            .await?;
            Ok(())
        }
        .scope_boxed()
    })
    .await?;
    Ok(session)
}

/// The tenant's Stripe customer, created (idempotently, keyed by the tenant id) when the
/// tenant predates live billing.
pub async fn ensure_customer(db: &Db, api: &dyn Payments, tenant: &TenantRow) -> AppResult<String> {
    let customer = api
        .create_customer(tenant.id, &tenant.name, &tenant.slug)
        .await?;
    let (id, cust) = (tenant.id, customer.clone());
    db.scoped(Scope::Platform("stripe_customer"), |c| {
        async move { link_customer(c, id, &cust).await }.scope_boxed()
    })
    .await?;
    Ok(customer)
}

/// Stores the customer → tenant mapping the webhook relies on.
pub async fn link_customer(c: &mut Conn, tenant_id: TenantId, customer: &str) -> AppResult<()> {
    tenants::store::update(
        c,
        tenant_id,
        &tenants::store::TenantChanges {
            stripe_customer_id: Some(Some(customer.to_owned())),
            ..Default::default()
        },
    )
    .await?;
    store::update_subscription(
        c,
        tenant_id,
        &SubscriptionChanges {
            stripe_customer_id: Some(Some(customer.to_owned())),
            ..Default::default()
        },
    )
    .await?;
    Ok(())
}
