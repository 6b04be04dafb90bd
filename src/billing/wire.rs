//! Reading the objects inside Stripe webhook events, tolerant of the API version.
//!
//! A webhook endpoint receives events in the API version it is pinned to, not in the version
//! async-stripe's typed structs follow (the newest). The layouts that matter changed twice
//! since 2024-06-20:
//! - 2025-03-31.basil moved `current_period_start/end` from the subscription onto its items,
//!   and an invoice's `subscription` into `parent.subscription_details.subscription`;
//! - newer versions add required fields (`billing_mode`, `billing_schedules`, ...) that older
//!   payloads lack.
//!
//! So events are read with these small structs that take only the fields the billing rules
//! use, from either layout (every version from 2024-06-20 on). A field that is missing
//! or of the wrong type yields an error naming it; the caller stores the event FAILED with
//! that reason.

use std::collections::HashMap;

use serde::Deserialize;
use serde_json::Value;

use super::payments::{ts, InvoiceState, SubscriptionState};

/// The oldest API version whose events this reader is tested against.
pub const OLDEST_API_VERSION: &str = "2024-06-20";

/// An id, or the expanded object carrying it.
#[derive(Deserialize)]
#[serde(untagged)]
enum Expandable {
    Id(String),
    Object { id: String },
}

impl Expandable {
    fn into_id(self) -> String {
        match self {
            Expandable::Id(id) | Expandable::Object { id } => id,
        }
    }
}

#[derive(Deserialize)]
struct List<T> {
    data: Vec<T>,
}

#[derive(Deserialize)]
struct WithId {
    id: String,
}

#[derive(Deserialize)]
struct Item {
    id: String,
    price: Option<WithId>,
    /// The legacy `plan` of an item: its id is the price id.
    plan: Option<WithId>,
    current_period_start: Option<i64>,
    current_period_end: Option<i64>,
}

#[derive(Deserialize)]
struct Subscription {
    id: String,
    customer: Expandable,
    status: String,
    items: Option<List<Item>>,
    /// Up to 2025-02-24: the period is on the subscription.
    current_period_start: Option<i64>,
    current_period_end: Option<i64>,
    trial_end: Option<i64>,
    #[serde(default)]
    cancel_at_period_end: Option<bool>,
    canceled_at: Option<i64>,
    metadata: Option<HashMap<String, String>>,
}

#[derive(Deserialize)]
struct SubscriptionDetails {
    subscription: Option<Expandable>,
}

#[derive(Deserialize)]
struct InvoiceParent {
    subscription_details: Option<SubscriptionDetails>,
}

#[derive(Deserialize)]
struct StatusTransitions {
    paid_at: Option<i64>,
}

#[derive(Deserialize)]
struct Invoice {
    id: Option<String>,
    customer: Option<Expandable>,
    /// Up to 2025-02-24: the subscription is named at the top level.
    subscription: Option<Expandable>,
    /// From 2025-03-31: under `parent.subscription_details`.
    parent: Option<InvoiceParent>,
    status: Option<String>,
    amount_due: i64,
    amount_paid: i64,
    currency: String,
    period_start: Option<i64>,
    period_end: Option<i64>,
    due_date: Option<i64>,
    status_transitions: Option<StatusTransitions>,
    hosted_invoice_url: Option<String>,
}

#[derive(Deserialize)]
struct CheckoutSession {
    customer: Option<Expandable>,
    subscription: Option<Expandable>,
}

/// The customer and subscription of a completed Checkout session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckoutState {
    pub customer: Option<String>,
    pub subscription: Option<String>,
}

fn read<T: serde::de::DeserializeOwned>(object: &Value, what: &str) -> Result<T, String> {
    T::deserialize(object).map_err(|e| format!("the event's {what} object cannot be read: {e}"))
}

pub fn subscription(object: &Value) -> Result<SubscriptionState, String> {
    let s: Subscription = read(object, "subscription")?;
    let item = s.items.and_then(|l| l.data.into_iter().next());
    let (item_start, item_end) = item.as_ref().map_or((None, None), |i| {
        (i.current_period_start, i.current_period_end)
    });
    Ok(SubscriptionState {
        id: s.id,
        customer: s.customer.into_id(),
        status: s.status,
        item_id: item.as_ref().map(|i| i.id.clone()),
        price_id: item.and_then(|i| i.price.or(i.plan)).map(|p| p.id),
        period_start: item_start.or(s.current_period_start).and_then(ts),
        period_end: item_end.or(s.current_period_end).and_then(ts),
        trial_end: s.trial_end.and_then(ts),
        cancel_at_period_end: s.cancel_at_period_end.unwrap_or(false),
        canceled_at: s.canceled_at.and_then(ts),
        metadata: s.metadata.unwrap_or_default(),
    })
}

pub fn invoice(object: &Value) -> Result<InvoiceState, String> {
    let i: Invoice = read(object, "invoice")?;
    let id =
        i.id.ok_or("the event's invoice object has no id (a preview invoice)")?;
    let from_parent = i
        .parent
        .and_then(|p| p.subscription_details)
        .and_then(|d| d.subscription);
    Ok(InvoiceState {
        id,
        customer: i.customer.map(Expandable::into_id),
        subscription: i.subscription.or(from_parent).map(Expandable::into_id),
        status: i.status,
        amount_due: i.amount_due,
        amount_paid: i.amount_paid,
        currency: i.currency,
        period_start: i.period_start.and_then(ts),
        period_end: i.period_end.and_then(ts),
        due_date: i.due_date.and_then(ts),
        paid_at: i.status_transitions.and_then(|t| t.paid_at).and_then(ts),
        hosted_invoice_url: i.hosted_invoice_url,
    })
}

pub fn checkout(object: &Value) -> Result<CheckoutState, String> {
    let s: CheckoutSession = read(object, "checkout session")?;
    Ok(CheckoutState {
        customer: s.customer.map(Expandable::into_id),
        subscription: s.subscription.map(Expandable::into_id),
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// A `customer.subscription.*` object as an endpoint pinned to 2024-06-20 receives it:
    /// the period at the top level, no `billing_mode`, items with a legacy `plan`.
    fn subscription_2024_06_20() -> Value {
        json!({
            "id": "sub_old", "object": "subscription", "customer": "cus_1", "status": "past_due",
            "current_period_start": 1_700_000_000, "current_period_end": 1_702_592_000,
            "cancel_at_period_end": true, "canceled_at": null, "trial_end": null,
            "metadata": { "plan_change_intent": "x" },
            "items": { "object": "list", "data": [{
                "id": "si_1", "object": "subscription_item",
                "plan": { "id": "price_1", "object": "plan" },
                "price": { "id": "price_1", "object": "price" }
            }]}
        })
    }

    #[test]
    fn a_2024_06_20_subscription_reads_its_period_from_the_top_level() {
        let s = subscription(&subscription_2024_06_20()).unwrap();
        assert_eq!((s.id.as_str(), s.customer.as_str()), ("sub_old", "cus_1"));
        assert_eq!(s.status, "past_due");
        assert_eq!(s.price_id.as_deref(), Some("price_1"));
        assert_eq!(s.item_id.as_deref(), Some("si_1"));
        assert_eq!(s.period_start, ts(1_700_000_000));
        assert_eq!(s.period_end, ts(1_702_592_000));
        assert!(s.cancel_at_period_end);
        assert_eq!(s.metadata["plan_change_intent"], "x");
    }

    #[test]
    fn a_basil_subscription_reads_its_period_from_the_item() {
        let mut o = subscription_2024_06_20();
        let o = o.as_object_mut().unwrap();
        o.remove("current_period_start");
        o.remove("current_period_end");
        o.insert(
            "customer".into(),
            json!({ "id": "cus_2", "object": "customer" }),
        );
        let mut o = Value::Object(o.clone());
        o["items"]["data"][0]["current_period_start"] = json!(1_710_000_000);
        o["items"]["data"][0]["current_period_end"] = json!(1_712_000_000);
        let s = subscription(&o).unwrap();
        assert_eq!(s.customer, "cus_2");
        assert_eq!(s.period_start, ts(1_710_000_000));
        assert_eq!(s.period_end, ts(1_712_000_000));
    }

    #[test]
    fn invoices_of_either_layout_name_their_subscription() {
        let old = json!({
            "id": "in_1", "object": "invoice", "customer": "cus_1", "subscription": "sub_1",
            "status": "open", "amount_due": 4900, "amount_paid": 0, "currency": "usd",
            "period_start": 1, "period_end": 2, "due_date": null,
            "status_transitions": { "paid_at": null }, "hosted_invoice_url": null
        });
        assert_eq!(
            invoice(&old).unwrap().subscription.as_deref(),
            Some("sub_1")
        );
        let mut new = old.clone();
        new.as_object_mut().unwrap().remove("subscription");
        new["parent"] = json!({ "type": "subscription_details",
            "subscription_details": { "subscription": "sub_2" } });
        new["status_transitions"]["paid_at"] = json!(5);
        let i = invoice(&new).unwrap();
        assert_eq!(i.subscription.as_deref(), Some("sub_2"));
        assert_eq!(i.paid_at, ts(5));
        assert_eq!((i.amount_due, i.currency.as_str()), (4900, "usd"));
    }

    #[test]
    fn an_unreadable_object_names_the_field() {
        let err = subscription(&json!({ "id": "sub_1", "customer": "cus_1" })).unwrap_err();
        assert!(
            err.contains("subscription") && err.contains("status"),
            "{err}"
        );
        let err = invoice(&json!({ "id": "in_1", "amount_due": "lots" })).unwrap_err();
        assert!(err.contains("invoice"), "{err}");
        let err =
            invoice(&json!({ "amount_due": 1, "amount_paid": 0, "currency": "usd" })).unwrap_err();
        assert!(err.contains("no id"), "{err}");
    }

    #[test]
    fn checkout_sessions_with_expanded_or_plain_ids() {
        let c =
            checkout(&json!({ "customer": { "id": "cus_1" }, "subscription": "sub_1" })).unwrap();
        assert_eq!(c.customer.as_deref(), Some("cus_1"));
        assert_eq!(c.subscription.as_deref(), Some("sub_1"));
        assert_eq!(checkout(&json!({})).unwrap().customer, None);
    }
}
