//! The catalogue's Stripe calls (`setPlanPrice`): one Product per plan, an immutable Price per
//! catalogue price, and archiving a replaced Price. Same rules as the other calls: explicit
//! Idempotency-Key, per-attempt timeout, `BILLING_ERROR` on any failure.

use std::collections::HashMap;
use std::str::FromStr;

use ::stripe::StripeRequest;

use stripe_product::price::{
    CreatePrice, CreatePriceRecurring, CreatePriceRecurringInterval, UpdatePrice,
};
use stripe_product::product::CreateProduct;
use stripe_types::Currency;

use super::{billing_error, key, StripeApi};
use crate::billing::payments::NewPrice;
use crate::error::{AppError, AppResult};
use crate::ids::PlanId;
use crate::plans::model::BillingCycle;

/// Is `code` (lower case) a currency Stripe knows?
pub fn known_currency(code: &str) -> bool {
    !matches!(Currency::from_str(code), Ok(Currency::Unknown(_)) | Err(_))
}

impl StripeApi {
    /// The plan's Product; the plan id makes the Idempotency-Key (`product-<plan id>`) and
    /// goes into the metadata with the slug (which never changes).
    pub async fn create_product(
        &self,
        plan_id: PlanId,
        name: &str,
        slug: &str,
    ) -> AppResult<String> {
        let meta = HashMap::from([
            ("plan_id".to_owned(), plan_id.to_string()),
            ("plan_slug".to_owned(), slug.to_owned()),
        ]);
        let p = CreateProduct::new(name)
            .metadata(meta)
            .customize()
            .request_strategy(key(&format!("product-{plan_id}"))?)
            .send(&self.client)
            .await
            .map_err(billing_error)?;
        Ok(p.id.to_string())
    }

    /// A recurring Price (monthly or yearly, one unit) with the plan, region and cycle in its
    /// metadata.
    pub async fn create_price(&self, p: NewPrice<'_>) -> AppResult<String> {
        let currency = Currency::from_str(p.currency)
            .ok()
            .filter(|c| !matches!(c, Currency::Unknown(_)))
            .ok_or_else(|| AppError::bad_input("currency", "unknown currency"))?;
        let interval = match p.cycle {
            BillingCycle::Monthly => CreatePriceRecurringInterval::Month,
            BillingCycle::Yearly => CreatePriceRecurringInterval::Year,
        };
        let meta = HashMap::from([
            ("plan_slug".to_owned(), p.plan_slug.to_owned()),
            ("region".to_owned(), p.region.to_owned()),
            ("billing_cycle".to_owned(), p.cycle.as_str().to_owned()),
        ]);
        let price = CreatePrice::new(currency)
            .unit_amount(p.amount)
            .product(p.product)
            .recurring(CreatePriceRecurring::new(interval))
            .metadata(meta)
            .customize()
            .request_strategy(key(p.idempotency_key)?)
            .send(&self.client)
            .await
            .map_err(billing_error)?;
        Ok(price.id.to_string())
    }

    /// `active=false`: the Price takes no new subscriptions; those on it keep it.
    pub async fn archive_price(&self, price_id: &str) -> AppResult<()> {
        UpdatePrice::new(price_id)
            .active(false)
            .customize()
            .request_strategy(key(&format!("archive-{price_id}"))?)
            .send(&self.client)
            .await
            .map_err(billing_error)?;
        Ok(())
    }
}
