//! What billing needs from a payment provider, as a trait: the services hold a
//! `&dyn Payments` (Stripe through async-stripe in production: `stripe::StripeApi`),
//! so a signature says when it reaches the provider, and a rule can be exercised with a fake
//! provider and no HTTP. End-to-end tests keep the Stripe-compatible HTTP server.

use std::collections::HashMap;

use chrono::{DateTime, TimeZone, Utc};
use futures_util::future::BoxFuture;
use uuid::Uuid;

use crate::error::AppResult;
use crate::ids::{IntentId, PlanId, TenantId};
use crate::plans::model::BillingCycle;

/// Stripe's state of one subscription, as Tenantry mirrors it. Built from API answers and from
/// webhook payloads alike.
#[derive(Debug, Clone)]
pub struct SubscriptionState {
    pub id: String,
    pub customer: String,
    /// Stripe's status (`active`, `past_due`, ...).
    pub status: String,
    pub item_id: Option<String>,
    pub price_id: Option<String>,
    pub period_start: Option<DateTime<Utc>>,
    pub period_end: Option<DateTime<Utc>>,
    pub trial_end: Option<DateTime<Utc>>,
    pub cancel_at_period_end: bool,
    pub canceled_at: Option<DateTime<Utc>>,
    pub metadata: HashMap<String, String>,
}

pub fn ts(secs: i64) -> Option<DateTime<Utc>> {
    Utc.timestamp_opt(secs, 0).single()
}

/// Stripe's state of one invoice.
#[derive(Debug, Clone)]
pub struct InvoiceState {
    pub id: String,
    pub customer: Option<String>,
    /// The subscription the invoice bills, if any.
    pub subscription: Option<String>,
    pub status: Option<String>,
    pub amount_due: i64,
    pub amount_paid: i64,
    pub currency: String,
    pub period_start: Option<DateTime<Utc>>,
    pub period_end: Option<DateTime<Utc>>,
    pub due_date: Option<DateTime<Utc>>,
    pub paid_at: Option<DateTime<Utc>>,
    pub hosted_invoice_url: Option<String>,
}

/// A Checkout session to open for a new paid subscription.
#[derive(Debug, Clone, Copy)]
pub struct CheckoutRequest<'a> {
    pub tenant_id: TenantId,
    pub customer: &'a str,
    pub price_id: &'a str,
    pub plan_slug: &'a str,
    pub success_url: &'a str,
    pub cancel_url: &'a str,
    pub idempotency_key: Uuid,
}

/// A recurring Stripe Price to create for one catalogue price (`setPlanPrice`).
#[derive(Debug, Clone, Copy)]
pub struct NewPrice<'a> {
    /// The plan's Stripe Product.
    pub product: &'a str,
    pub plan_slug: &'a str,
    pub region: &'a str,
    pub cycle: BillingCycle,
    /// Lower-case ISO code.
    pub currency: &'a str,
    /// In the currency's smallest unit.
    pub amount: i64,
    pub idempotency_key: &'a str,
}

/// The provider calls; every one is idempotent through its key (or read-only).
pub trait Payments: Send + Sync {
    /// A customer for a new tenant, keyed by the tenant id.
    fn create_customer<'a>(
        &'a self,
        tenant_id: TenantId,
        name: &'a str,
        slug: &'a str,
    ) -> BoxFuture<'a, AppResult<String>>;

    fn subscription<'a>(&'a self, id: &'a str) -> BoxFuture<'a, AppResult<SubscriptionState>>;

    /// Moves the subscription to `price_id` with prorations (the intent id is the key).
    fn change_price<'a>(
        &'a self,
        sub: &'a SubscriptionState,
        price_id: &'a str,
        intent_id: IntentId,
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

    /// The plan's Product (prices belong to one), keyed by the plan id.
    fn create_product<'a>(
        &'a self,
        plan_id: PlanId,
        name: &'a str,
        slug: &'a str,
    ) -> BoxFuture<'a, AppResult<String>>;

    /// A new recurring Price; returns its id.
    fn create_price<'a>(&'a self, price: NewPrice<'a>) -> BoxFuture<'a, AppResult<String>>;

    /// Deactivates a Price (`active=false`): no new subscriptions, existing ones keep it.
    fn archive_price<'a>(&'a self, price_id: &'a str) -> BoxFuture<'a, AppResult<()>>;
}
