//! The Stripe calls Tenantry makes, through async-stripe (only the request crates it needs:
//! customers, subscriptions, invoice previews, Checkout sessions and meter events; products
//! and prices in `catalogue`). Every call has a per-attempt timeout and an explicit
//! Idempotency-Key; every failure becomes `BILLING_ERROR` with Stripe's own message for the
//! user.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use stripe::{Client, ClientBuilder, IdempotencyKey, RequestStrategy, StripeError, StripeRequest};
use stripe_billing::billing_meter_event::CreateBillingMeterEvent;
use stripe_billing::invoice::{
    CreatePreviewInvoice, CreatePreviewInvoiceSubscriptionDetails,
    CreatePreviewInvoiceSubscriptionDetailsItems,
    CreatePreviewInvoiceSubscriptionDetailsProrationBehavior,
};
use stripe_billing::subscription::{
    CancelSubscription, RetrieveSubscription, UpdateSubscription, UpdateSubscriptionItems,
    UpdateSubscriptionProrationBehavior,
};
use stripe_checkout::checkout_session::{
    CreateCheckoutSession, CreateCheckoutSessionLineItems, CreateCheckoutSessionSubscriptionData,
};
use stripe_core::customer::CreateCustomer;
use stripe_shared::{CheckoutSessionMode, Invoice, Subscription};
use uuid::Uuid;

use futures_util::future::BoxFuture;

use super::payments::{ts, CheckoutRequest, InvoiceState, NewPrice, Payments, SubscriptionState};
use crate::config::Settings;
use crate::error::{AppError, AppResult};
use crate::ids::{IntentId, PlanId, TenantId};

pub mod catalogue;

impl From<Subscription> for SubscriptionState {
    fn from(s: Subscription) -> Self {
        let item = s.items.data.first();
        SubscriptionState {
            id: s.id.to_string(),
            customer: s.customer.id().to_string(),
            status: s.status.as_str().to_owned(),
            item_id: item.map(|i| i.id.to_string()),
            price_id: item.map(|i| i.price.id.to_string()),
            period_start: item.and_then(|i| ts(i.current_period_start)),
            period_end: item.and_then(|i| ts(i.current_period_end)),
            trial_end: s.trial_end.and_then(ts),
            cancel_at_period_end: s.cancel_at_period_end,
            canceled_at: s.canceled_at.and_then(ts),
            metadata: s.metadata,
        }
    }
}

impl InvoiceState {
    pub fn from_invoice(i: Invoice) -> Option<Self> {
        Some(InvoiceState {
            id: i.id?.to_string(),
            customer: i.customer.map(|c| c.id().to_string()),
            subscription: i.subscription.map(|s| s.id().to_string()).or_else(|| {
                i.parent
                    .and_then(|p| p.subscription_details)
                    .map(|d| d.subscription.id().to_string())
            }),
            status: i.status.map(|s| s.as_str().to_owned()),
            amount_due: i.amount_due,
            amount_paid: i.amount_paid,
            currency: i.currency.to_string(),
            period_start: ts(i.period_start),
            period_end: ts(i.period_end),
            due_date: i.due_date.and_then(ts),
            paid_at: i.status_transitions.paid_at.and_then(ts),
            hosted_invoice_url: i.hosted_invoice_url,
        })
    }
}

/// The Stripe API client of this process; `None` in LOCAL billing mode.
pub struct StripeApi {
    client: Client,
}

/// Turns a Stripe failure into the user-facing error: Stripe's message when it gave one.
fn billing_error(e: StripeError) -> AppError {
    let msg = match e {
        StripeError::Stripe(api, status) => {
            let m = api.message.unwrap_or_else(|| "request refused".into());
            format!("Stripe error ({status}): {m}")
        }
        StripeError::Timeout => "Stripe did not answer in time".into(),
        StripeError::ClientError(m) if m.contains("timed out") || m.contains("Timeout") => {
            "Stripe did not answer in time".into()
        }
        StripeError::ClientError(_) => "Stripe could not be reached".into(),
        StripeError::JSONDeserialize(_) => "Stripe sent an answer Tenantry cannot read".into(),
        StripeError::ConfigError(_) => "Stripe is not configured correctly".into(),
    };
    tracing::warn!(error = %msg, "stripe call failed");
    metrics::counter!("tenantry_stripe_errors_total").increment(1);
    AppError::Billing(msg)
}

fn key(k: &str) -> AppResult<RequestStrategy> {
    IdempotencyKey::new(k)
        .map(RequestStrategy::Idempotent)
        .map_err(|e| AppError::Internal(std::sync::Arc::new(anyhow::anyhow!("{e:?}"))))
}

impl StripeApi {
    pub fn from_settings(s: &Settings) -> anyhow::Result<Option<StripeApi>> {
        let Some(secret) = &s.stripe_secret_key else {
            return Ok(None);
        };
        let mut b = ClientBuilder::new(secret.clone())
            .timeout(Duration::from_millis(s.stripe_timeout_ms))
            .app_info("tenantry", Some(env!("CARGO_PKG_VERSION").into()), None);
        if let Some(base) = &s.stripe_api_base {
            // async-stripe appends `v1/...` to the base.
            let base = format!("{}/", base.trim_end_matches('/'));
            b = b.url(base);
        }
        let client = b
            .build()
            .map_err(|e| anyhow::anyhow!("stripe client: {e}"))?;
        Ok(Some(StripeApi { client }))
    }

    /// A customer for a new tenant; the tenant id is the Idempotency-Key and in the metadata.
    pub async fn create_customer(
        &self,
        tenant_id: TenantId,
        name: &str,
        slug: &str,
    ) -> AppResult<String> {
        let meta = HashMap::from([
            ("tenant_id".to_owned(), tenant_id.to_string()),
            ("tenant_slug".to_owned(), slug.to_owned()),
        ]);
        let c = CreateCustomer::new()
            .name(name)
            .metadata(meta)
            .customize()
            .request_strategy(key(&format!("customer-{tenant_id}"))?)
            .send(&self.client)
            .await
            .map_err(billing_error)?;
        Ok(c.id.to_string())
    }

    pub async fn subscription(&self, id: &str) -> AppResult<SubscriptionState> {
        RetrieveSubscription::new(id)
            .customize()
            .request_strategy(RequestStrategy::Once)
            .send(&self.client)
            .await
            .map(SubscriptionState::from)
            .map_err(billing_error)
    }

    /// Swaps the subscription's item to `price_id` with prorations; the intent id is the
    /// Idempotency-Key and goes into the metadata so the webhook can find the intent.
    pub async fn change_price(
        &self,
        sub: &SubscriptionState,
        price_id: &str,
        intent_id: IntentId,
    ) -> AppResult<SubscriptionState> {
        let item = UpdateSubscriptionItems {
            id: sub.item_id.clone(),
            price: Some(price_id.to_owned()),
            ..UpdateSubscriptionItems::new()
        };
        let meta = HashMap::from([("plan_change_intent".to_owned(), intent_id.to_string())]);
        UpdateSubscription::new(sub.id.as_str())
            .items(vec![item])
            .proration_behavior(UpdateSubscriptionProrationBehavior::CreateProrations)
            .metadata(meta)
            .customize()
            .request_strategy(key(&intent_id.to_string())?)
            .send(&self.client)
            .await
            .map(SubscriptionState::from)
            .map_err(billing_error)
    }

    /// Stripe's invoice preview for switching to `price_id` now: the prorated amount (the sum
    /// of the proration lines; the total when Stripe marks none) and its currency.
    pub async fn preview_change(
        &self,
        sub: &SubscriptionState,
        price_id: &str,
    ) -> AppResult<(i64, String)> {
        let details = CreatePreviewInvoiceSubscriptionDetails {
            items: Some(vec![CreatePreviewInvoiceSubscriptionDetailsItems {
                id: sub.item_id.clone(),
                price: Some(price_id.to_owned()),
                ..CreatePreviewInvoiceSubscriptionDetailsItems::new()
            }]),
            proration_behavior: Some(
                CreatePreviewInvoiceSubscriptionDetailsProrationBehavior::CreateProrations,
            ),
            proration_date: Some(Utc::now().timestamp()),
            ..CreatePreviewInvoiceSubscriptionDetails::new()
        };
        let inv = CreatePreviewInvoice::new()
            .customer(sub.customer.as_str())
            .subscription(sub.id.as_str())
            .subscription_details(details)
            .customize()
            .request_strategy(RequestStrategy::Once)
            .send(&self.client)
            .await
            .map_err(billing_error)?;
        let prorations: Vec<i64> = inv
            .lines
            .data
            .iter()
            .filter(|l| {
                l.parent
                    .as_ref()
                    .and_then(|p| p.subscription_item_details.as_ref())
                    .is_some_and(|d| d.proration)
            })
            .map(|l| l.amount)
            .collect();
        let amount = if prorations.is_empty() {
            inv.total
        } else {
            prorations.iter().sum()
        };
        Ok((amount, inv.currency.to_string()))
    }

    /// A Checkout session for a new paid subscription; returns its id and Stripe's URL.
    pub async fn checkout(&self, req: CheckoutRequest<'_>) -> AppResult<(String, String)> {
        let CheckoutRequest {
            tenant_id,
            customer,
            price_id,
            plan_slug,
            success_url,
            cancel_url,
            idempotency_key,
        } = req;
        let meta = HashMap::from([
            ("tenant_id".to_owned(), tenant_id.to_string()),
            ("plan".to_owned(), plan_slug.to_owned()),
        ]);
        let line = CreateCheckoutSessionLineItems {
            price: Some(price_id.to_owned()),
            quantity: Some(1),
            ..CreateCheckoutSessionLineItems::new()
        };
        let sub_data = CreateCheckoutSessionSubscriptionData {
            metadata: Some(meta.clone()),
            ..CreateCheckoutSessionSubscriptionData::new()
        };
        let s = CreateCheckoutSession::new()
            .mode(CheckoutSessionMode::Subscription)
            .customer(customer)
            .client_reference_id(tenant_id.to_string())
            .line_items(vec![line])
            .subscription_data(sub_data)
            .metadata(meta)
            .success_url(success_url)
            .cancel_url(cancel_url)
            .customize()
            .request_strategy(key(&idempotency_key.to_string())?)
            .send(&self.client)
            .await
            .map_err(billing_error)?;
        let url = s.url.ok_or_else(|| {
            AppError::Billing("Stripe returned a Checkout session without URL".into())
        })?;
        Ok((s.id.to_string(), url))
    }

    /// Cancels at period end (reversible with [`Self::resume`]) or at once.
    pub async fn cancel(
        &self,
        sub_id: &str,
        at_period_end: bool,
        idempotency_key: Uuid,
    ) -> AppResult<SubscriptionState> {
        let strategy = key(&idempotency_key.to_string())?;
        let out = if at_period_end {
            UpdateSubscription::new(sub_id)
                .cancel_at_period_end(true)
                .customize()
                .request_strategy(strategy)
                .send(&self.client)
                .await
        } else {
            CancelSubscription::new(sub_id)
                .customize()
                .request_strategy(strategy)
                .send(&self.client)
                .await
        };
        out.map(SubscriptionState::from).map_err(billing_error)
    }

    pub async fn resume(
        &self,
        sub_id: &str,
        idempotency_key: Uuid,
    ) -> AppResult<SubscriptionState> {
        UpdateSubscription::new(sub_id)
            .cancel_at_period_end(false)
            .customize()
            .request_strategy(key(&idempotency_key.to_string())?)
            .send(&self.client)
            .await
            .map(SubscriptionState::from)
            .map_err(billing_error)
    }

    /// One meter event; Stripe deduplicates on `identifier`, which doubles as Idempotency-Key.
    pub async fn meter_event(
        &self,
        event_name: &str,
        customer: &str,
        value: i64,
        identifier: &str,
        at: DateTime<Utc>,
    ) -> AppResult<()> {
        let payload = HashMap::from([
            ("stripe_customer_id".to_owned(), customer.to_owned()),
            ("value".to_owned(), value.to_string()),
        ]);
        CreateBillingMeterEvent::new(event_name, payload)
            .identifier(identifier)
            .timestamp(at.timestamp())
            .customize()
            .request_strategy(key(identifier)?)
            .send(&self.client)
            .await
            .map_err(billing_error)?;
        Ok(())
    }
}

impl Payments for StripeApi {
    fn create_customer<'a>(
        &'a self,
        tenant_id: TenantId,
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
        intent_id: IntentId,
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

    fn create_product<'a>(
        &'a self,
        plan_id: PlanId,
        name: &'a str,
        slug: &'a str,
    ) -> BoxFuture<'a, AppResult<String>> {
        Box::pin(StripeApi::create_product(self, plan_id, name, slug))
    }

    fn create_price<'a>(&'a self, price: NewPrice<'a>) -> BoxFuture<'a, AppResult<String>> {
        Box::pin(StripeApi::create_price(self, price))
    }

    fn archive_price<'a>(&'a self, price_id: &'a str) -> BoxFuture<'a, AppResult<()>> {
        Box::pin(StripeApi::archive_price(self, price_id))
    }
}
