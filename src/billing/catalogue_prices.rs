//! `setPlanPrice` (issue 14): a plan's price for one region and billing cycle, set by platform
//! admins. LOCAL mode stores the amount and currency. With Stripe, whose Prices are immutable,
//! a new or changed price is a new Stripe Price on the plan's one Stripe Product, created
//! BEFORE our transaction (keyed so a retried mutation finds the same Price) and stored with
//! the price only if Stripe made it: a Stripe failure leaves our database as it was. The
//! replaced Price is archived in Stripe after the commit and stays in `plan_stripe_prices`,
//! so subscriptions still on it keep mapping to their plan. `applyToExisting` then moves the
//! plan's subscriptions in that region and cycle to the new price (`reprice`).

use chrono::Utc;
use scoped_futures::ScopedFutureExt;
use serde_json::{json, Value};
use uuid::Uuid;

use super::payments::{NewPrice, Payments};
use super::reprice;
use super::stripe::catalogue::known_currency;
use crate::app::App;
use crate::audit;
use crate::auth::{Actor, Role};
use crate::db::{Db, Scope};
use crate::error::{AppError, AppResult};
use crate::plans;
use crate::plans::model::{BillingCycle, NewPlanPrice, PlanPriceRow, PlanRow, StripePriceRow};
use crate::tenants::service::REGIONS;

/// Highest amount a price may have, in the currency's smallest unit (Stripe's own limit for
/// `unit_amount`: eight digits).
pub const MAX_AMOUNT: i64 = 99_999_999;

/// `setPlanPrice`'s input.
pub struct PriceInput {
    pub region: String,
    pub cycle: BillingCycle,
    pub currency: String,
    pub amount: i64,
    pub apply_to_existing: bool,
}

/// A validated price: region upper case, currency lower case.
#[derive(Debug, Clone)]
struct Wanted {
    region: String,
    cycle: BillingCycle,
    currency: String,
    amount: i64,
}

fn validate(input: &PriceInput) -> AppResult<Wanted> {
    let region = input.region.to_ascii_uppercase();
    if !REGIONS.contains(&region.as_str()) {
        return Err(AppError::bad_input(
            "region",
            format!("region must be one of {}", REGIONS.join(", ")),
        ));
    }
    let currency = input.currency.to_ascii_lowercase();
    let letters = currency.len() == 3 && currency.bytes().all(|b| b.is_ascii_lowercase());
    if !letters || !known_currency(&currency) {
        return Err(AppError::bad_input(
            "currency",
            "currency must be a three-letter ISO 4217 code Stripe supports (e.g. usd)",
        ));
    }
    if !(0..=MAX_AMOUNT).contains(&input.amount) {
        return Err(AppError::bad_input(
            "amount",
            format!("amount must be 0-{MAX_AMOUNT} in the currency's smallest unit"),
        ));
    }
    Ok(Wanted {
        region,
        cycle: input.cycle,
        currency,
        amount: input.amount,
    })
}

/// What the catalogue holds before the change.
#[derive(Clone)]
struct Snapshot {
    plan: PlanRow,
    current: Option<PlanPriceRow>,
    product: Option<String>,
}

/// Sets the plan's price for a region and cycle (platform admins); an unknown plan is
/// NOT_FOUND, archived plans may be priced (their tenants still pay). Setting the price it
/// has writes nothing. Returns the plan.
pub async fn set_plan_price(
    app: &App,
    actor: &Actor,
    plan_slug: &str,
    input: PriceInput,
) -> AppResult<PlanRow> {
    actor.require(Role::PlatformAdmin)?;
    let wanted = validate(&input)?;
    let snap = read(&app.db, plan_slug, &wanted).await?;
    let live = app.payments.clone();
    let unchanged = snap.current.as_ref().is_some_and(|p| {
        p.amount == wanted.amount
            && p.currency == wanted.currency
            && (live.is_none() || p.stripe_price_id.is_some())
    });
    let price = match snap.current.clone() {
        Some(p) if unchanged => p,
        _ => {
            let created = match live.as_deref() {
                Some(api) => Some(create_in_stripe(&app.db, api, &snap, &wanted).await?),
                None => None,
            };
            let apply = input.apply_to_existing;
            // A failed commit leaves the new Price unreferenced (and active: a retry gets it
            // back through the same Idempotency-Key and must be able to use it).
            let new_price = created.as_ref().map(|(_, price)| price.clone());
            let saved = match commit(&app.db, actor, &snap, &wanted, created, apply).await {
                Ok(saved) => saved,
                // The price changed meanwhile: this Price will never be used (a retry names
                // another replaced price, so another key): archived rather than left active.
                Err(e @ AppError::Conflict { .. }) => {
                    if let (Some(api), Some(p)) = (live.as_deref(), new_price) {
                        if api.archive_price(&p).await.is_err() {
                            tracing::warn!(price = %p, "an unused Stripe price stays active");
                        }
                    }
                    return Err(e);
                }
                Err(e) => return Err(e),
            };
            let old = snap
                .current
                .as_ref()
                .and_then(|p| p.stripe_price_id.clone());
            if let (Some(api), Some(old)) = (live.as_deref(), old) {
                if saved.stripe_price_id.as_deref() != Some(old.as_str()) {
                    // After the commit; a failure leaves the old Price active in Stripe,
                    // which nothing of ours offers any more (logged by billing_error).
                    if api.archive_price(&old).await.is_err() {
                        tracing::warn!(price = %old, "the replaced Stripe price stays active");
                    }
                }
            }
            app.plans_changed().await;
            saved
        }
    };
    if let (true, Some(api), Some(price_id)) =
        (input.apply_to_existing, live, price.stripe_price_id)
    {
        let target = reprice::Target {
            plan: snap.plan.clone(),
            region: wanted.region,
            cycle: wanted.cycle,
            price_id,
        };
        reprice::run(app.db.clone(), api, actor.clone(), target).await;
    }
    Ok(snap.plan)
}

async fn read(db: &Db, plan_slug: &str, w: &Wanted) -> AppResult<Snapshot> {
    let (slug, region, cycle) = (plan_slug.to_owned(), w.region.clone(), w.cycle);
    db.scoped(Scope::Anonymous, |c| {
        async move {
            let plan = plans::store::find_by_slug(c, &slug)
                .await?
                .ok_or_else(|| AppError::not_found("plan"))?;
            let current = plans::store::price_for(c, plan.id, &region, cycle).await?;
            let product = plans::store::stripe_product_id(c, plan.id).await?;
            Ok(Snapshot {
                plan,
                current,
                product,
            })
        }
        .scope_boxed()
    })
    .await
}

/// The plan's Product (created on first need) and a new Price: (product id, price id). The
/// Price's Idempotency-Key names the plan, region, cycle, currency, amount and the Price it
/// replaces, so a retried mutation gets the same Price and a later change back to an earlier
/// amount a new one.
async fn create_in_stripe(
    db: &crate::db::Db,
    api: &dyn Payments,
    snap: &Snapshot,
    w: &Wanted,
) -> AppResult<(String, String)> {
    let product = match &snap.product {
        Some(p) => p.clone(),
        None => {
            let p = &snap.plan;
            let product = api.create_product(p.id, &p.name, &p.slug).await?;
            // Kept at once, in its own transaction: a retry after a later failure reuses
            // the Product instead of depending on Stripe's 24-hour Idempotency-Key memory.
            let (plan_id, kept) = (p.id, product.clone());
            db.scoped(crate::db::Scope::Platform("catalogue_admin"), |c| {
                async move { Ok(plans::store::set_stripe_product_id(c, plan_id, &kept).await?) }
                    .scope_boxed()
            })
            .await?;
            product
        }
    };
    let replaces = snap
        .current
        .as_ref()
        .and_then(|p| p.stripe_price_id.as_deref())
        .unwrap_or("none");
    let key = format!(
        "price-{}-{}-{}-{}-{}-{replaces}",
        snap.plan.id,
        w.region,
        w.cycle.as_str(),
        w.currency,
        w.amount
    );
    let price = NewPrice {
        product: &product,
        plan_slug: &snap.plan.slug,
        region: &w.region,
        cycle: w.cycle,
        currency: &w.currency,
        amount: w.amount,
        idempotency_key: &key,
    };
    let price_id = api.create_price(price).await?;
    Ok((product, price_id))
}

fn view(p: Option<&PlanPriceRow>) -> Value {
    p.map_or(Value::Null, |p| {
        json!({ "region": p.region, "billingCycle": p.billing_cycle.as_str(),
            "currency": p.currency, "amount": p.amount, "stripePriceId": p.stripe_price_id })
    })
}

/// One transaction: the price row, the Stripe price history, the plan's Product and the
/// PRICE_SET audit entry. A price that changed since `snap` was read is CONFLICT.
async fn commit(
    db: &Db,
    actor: &Actor,
    snap: &Snapshot,
    w: &Wanted,
    created: Option<(String, String)>,
    apply_to_existing: bool,
) -> AppResult<PlanPriceRow> {
    let (actor, snap, w) = (actor.clone(), snap.clone(), w.clone());
    db.scoped(Scope::Platform("catalogue_admin"), |c| {
        async move {
            let plan = plans::store::lock_by_slug(c, &snap.plan.slug)
                .await?
                .ok_or_else(|| AppError::not_found("plan"))?;
            let now_current = plans::store::price_for(c, plan.id, &w.region, w.cycle).await?;
            let key = |p: &Option<PlanPriceRow>| {
                p.as_ref()
                    .map(|p| (p.amount, p.currency.clone(), p.stripe_price_id.clone()))
            };
            if key(&now_current) != key(&snap.current) {
                return Err(AppError::conflict(
                    None,
                    "the price was changed meanwhile: read it again and retry",
                ));
            }
            let now = Utc::now();
            let history = |id: String, currency: &str, amount: i64, archived| StripePriceRow {
                stripe_price_id: id,
                plan_id: plan.id,
                region: w.region.clone(),
                billing_cycle: w.cycle,
                currency: currency.to_owned(),
                amount,
                archived_at: archived,
            };
            if let Some(old) = &snap.current {
                if let Some(id) = &old.stripe_price_id {
                    let row = history(id.clone(), &old.currency, old.amount, Some(now));
                    plans::store::save_stripe_price(c, &row).await?;
                }
            }
            let new_price_id = match created {
                Some((product, price_id)) => {
                    plans::store::set_stripe_product_id(c, plan.id, &product).await?;
                    let row = history(price_id.clone(), &w.currency, w.amount, None);
                    plans::store::save_stripe_price(c, &row).await?;
                    Some(price_id)
                }
                // LOCAL mode: a Stripe id of another amount would be wrong; the replaced one
                // stays in the history above.
                None => None,
            };
            let row = NewPlanPrice {
                id: Uuid::now_v7(),
                plan_id: plan.id,
                region: w.region.clone(),
                currency: w.currency.clone(),
                billing_cycle: w.cycle,
                amount: w.amount,
                stripe_price_id: new_price_id,
            };
            let saved = plans::store::upsert_price(c, &row).await?;
            let entry = audit::Change {
                tenant_id: None,
                entity_type: "plan",
                entity_id: plan.slug.clone(),
                action: "PRICE_SET",
                before: view(snap.current.as_ref()),
                after: view(Some(&saved)),
                metadata: json!({ "applyToExisting": apply_to_existing }),
            };
            audit::record(c, &actor, entry).await?;
            Ok(saved)
        }
        .scope_boxed()
    })
    .await
}
