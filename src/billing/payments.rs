//! What billing needs from a payment provider, as a trait: the services hold a
//! `&dyn Payments` (Stripe through async-stripe in production, [`super::stripe::StripeApi`]),
//! so a signature says when it reaches the provider, and a rule can be exercised with a fake
//! provider and no HTTP. End-to-end tests keep the Stripe-compatible HTTP server.

use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;
use uuid::Uuid;

use super::stripe::{StripeApi, SubscriptionState};
use crate::error::AppResult;

/// A Checkout session to open for a new paid subscription.
#[derive(Debug, Clone, Copy)]
pub struct CheckoutRequest<'a> {
    pub tenant_id: Uuid,
    pub customer: &'a str,
    pub price_id: &'a str,
    pub plan_slug: &'a str,
    pub success_url: &'a str,
    pub cancel_url: &'a str,
    pub idempotency_key: Uuid,
}

/// The provider calls; every one is idempotent through its key (or read-only).
pub trait Payments: Send + Sync {
    /// A customer for a new tenant, keyed by the tenant id.
    fn create_customer<'a>(
        &'a self,
        tenant_id: Uuid,
        name: &'a str,
        slug: &'a str,
    ) -> BoxFuture<'a, AppResult<String>>;

    fn subscription<'a>(&'a self, id: &'a str) -> BoxFuture<'a, AppResult<SubscriptionState>>;

    /// Moves the subscription to `price_id` with prorations (the intent id is the key).
    fn change_price<'a>(
        &'a self,
        sub: &'a SubscriptionState,
        price_id: &'a str,
        intent_id: Uuid,
    ) -> BoxFuture<'a, AppResult<SubscriptionState>>;

    /// The prorated amount and currency of switching to `price_id` now.
    fn preview_change<'a>(
        &'a self,
        sub: &'a SubscriptionState,
        price_id: &'a str,
    ) -> BoxFuture<'a, AppResult<(i64, String)>>;

    /// Opens a Checkout session: (id, URL).
    fn checkout<'a>(
        &'a self,
        req: CheckoutRequest<'a>,
    ) -> BoxFuture<'a, AppResult<(String, String)>>;

    fn cancel<'a>(
        &'a self,
        sub_id: &'a str,
        at_period_end: bool,
        key: Uuid,
    ) -> BoxFuture<'a, AppResult<SubscriptionState>>;

    fn resume<'a>(
        &'a self,
        sub_id: &'a str,
        key: Uuid,
    ) -> BoxFuture<'a, AppResult<SubscriptionState>>;

    /// One usage report; `identifier` deduplicates.
    fn meter_event<'a>(
        &'a self,
        event_name: &'a str,
        customer: &'a str,
        value: i64,
        identifier: &'a str,
        at: DateTime<Utc>,
    ) -> BoxFuture<'a, AppResult<()>>;
}

impl Payments for StripeApi {
    fn create_customer<'a>(
        &'a self,
        tenant_id: Uuid,
        name: &'a str,
        slug: &'a str,
    ) -> BoxFuture<'a, AppResult<String>> {
        Box::pin(StripeApi::create_customer(self, tenant_id, name, slug))
    }

    fn subscription<'a>(&'a self, id: &'a str) -> BoxFuture<'a, AppResult<SubscriptionState>> {
        Box::pin(StripeApi::subscription(self, id))
    }

    fn change_price<'a>(
        &'a self,
        sub: &'a SubscriptionState,
        price_id: &'a str,
        intent_id: Uuid,
    ) -> BoxFuture<'a, AppResult<SubscriptionState>> {
        Box::pin(StripeApi::change_price(self, sub, price_id, intent_id))
    }

    fn preview_change<'a>(
        &'a self,
        sub: &'a SubscriptionState,
        price_id: &'a str,
    ) -> BoxFuture<'a, AppResult<(i64, String)>> {
        Box::pin(StripeApi::preview_change(self, sub, price_id))
    }

    fn checkout<'a>(
        &'a self,
        req: CheckoutRequest<'a>,
    ) -> BoxFuture<'a, AppResult<(String, String)>> {
        Box::pin(StripeApi::checkout(self, req))
    }

    fn cancel<'a>(
        &'a self,
        sub_id: &'a str,
        at_period_end: bool,
        key: Uuid,
    ) -> BoxFuture<'a, AppResult<SubscriptionState>> {
        Box::pin(StripeApi::cancel(self, sub_id, at_period_end, key))
    }

    fn resume<'a>(
        &'a self,
        sub_id: &'a str,
        key: Uuid,
    ) -> BoxFuture<'a, AppResult<SubscriptionState>> {
        Box::pin(StripeApi::resume(self, sub_id, key))
    }

    fn meter_event<'a>(
        &'a self,
        event_name: &'a str,
        customer: &'a str,
        value: i64,
        identifier: &'a str,
        at: DateTime<Utc>,
    ) -> BoxFuture<'a, AppResult<()>> {
        Box::pin(StripeApi::meter_event(
            self, event_name, customer, value, identifier, at,
        ))
    }
}
