//! A local Stripe-compatible HTTP server for the tests: it answers the endpoints Tenantry calls
//! with Stripe-shaped JSON (the shapes of API version 2026-09-30, which async-stripe parses),
//! keeps subscriptions and prices in memory, replays answers for a repeated Idempotency-Key as
//! Stripe does, records every request, can fail or stall on demand, and builds and signs
//! webhook events exactly as Stripe does (`t=..,v1=HMAC-SHA256(secret, "{t}.{body}")`).

#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub idempotency_key: Option<String>,
    pub authorization: Option<String>,
    pub form: Vec<(String, String)>,
}

impl Recorded {
    pub fn param(&self, key: &str) -> Option<&str> {
        self.form
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Default)]
struct Inner {
    requests: Vec<Recorded>,
    failure: Option<(u16, String)>,
    delay: Option<Duration>,
    subscriptions: HashMap<String, Value>,
    replies: HashMap<String, (u16, Value)>,
    prices: HashMap<String, Value>,
    seq: u64,
}

#[derive(Clone)]
pub struct FakeStripe {
    pub base: String,
    inner: Arc<Mutex<Inner>>,
}

pub fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

impl FakeStripe {
    pub async fn start() -> FakeStripe {
        let inner = Arc::new(Mutex::new(Inner::default()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let router = axum::Router::new()
            .fallback(handle)
            .with_state(inner.clone());
        tokio::spawn(async move {
            axum::serve(listener, router).await.unwrap();
        });
        FakeStripe { base, inner }
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.inner.lock().unwrap().requests.clone()
    }

    pub fn requests_to(&self, method: &str, path_prefix: &str) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.method == method && r.path.starts_with(path_prefix))
            .collect()
    }

    /// Every following request answers `status` with a Stripe error carrying `message`.
    pub fn fail_with(&self, status: u16, message: &str) {
        self.inner.lock().unwrap().failure = Some((status, message.to_owned()));
    }

    /// Every following request waits `d` before answering.
    pub fn stall(&self, d: Duration) {
        self.inner.lock().unwrap().delay = Some(d);
    }

    pub fn heal(&self) {
        let mut g = self.inner.lock().unwrap();
        g.failure = None;
        g.delay = None;
    }

    /// A subscription as Stripe holds it after a completed Checkout.
    pub fn create_subscription(&self, customer: &str, price: &str, status: &str) -> Value {
        let mut g = self.inner.lock().unwrap();
        g.seq += 1;
        let id = format!("sub_test{}", g.seq);
        let sub = subscription(&id, customer, price, status);
        g.subscriptions.insert(id, sub.clone());
        sub
    }

    pub fn subscription(&self, id: &str) -> Value {
        self.inner.lock().unwrap().subscriptions[id].clone()
    }

    /// A Price created through `POST /v1/prices`, as the fake holds it now.
    pub fn price(&self, id: &str) -> Value {
        self.inner.lock().unwrap().prices[id].clone()
    }
}

pub fn price(id: &str, amount: i64) -> Value {
    json!({
        "id": id, "object": "price", "active": true, "billing_scheme": "per_unit",
        "created": 1_700_000_000, "currency": "usd", "custom_unit_amount": null,
        "livemode": false, "lookup_key": null, "metadata": {}, "nickname": null,
        "product": "prod_tenantry",
        "recurring": { "interval": "month", "interval_count": 1, "meter": null,
                       "trial_period_days": null, "usage_type": "licensed" },
        "tax_behavior": "unspecified", "tiers_mode": null, "transform_quantity": null,
        "type": "recurring", "unit_amount": amount, "unit_amount_decimal": amount.to_string()
    })
}

fn plan(id: &str, amount: i64) -> Value {
    json!({
        "id": id, "object": "plan", "active": true, "amount": amount,
        "amount_decimal": amount.to_string(), "billing_scheme": "per_unit",
        "created": 1_700_000_000, "currency": "usd", "interval": "month", "interval_count": 1,
        "livemode": false, "metadata": {}, "meter": null, "nickname": null,
        "product": "prod_tenantry", "tiers_mode": null, "transform_usage": null,
        "trial_period_days": null, "usage_type": "licensed"
    })
}

pub fn subscription(id: &str, customer: &str, price_id: &str, status: &str) -> Value {
    let t = now();
    let item = json!({
        "id": format!("si_{id}"), "object": "subscription_item",
        "billing_thresholds": null, "created": t,
        "current_period_end": t + 30 * 86_400, "current_period_start": t,
        "discounts": [], "metadata": {}, "plan": plan(price_id, 4900),
        "price": price(price_id, 4900), "quantity": 1, "subscription": id,
        "tax_rates": []
    });
    let mut sub = json!({
        "id": id, "object": "subscription",
        "automatic_tax": { "disabled_reason": null, "enabled": false, "liability": null },
        "billing_cycle_anchor": t,
        "billing_mode": { "flexible": null, "type": "classic", "updated_at": null },
        "billing_schedules": [], "cancel_at_period_end": false,
        "cancellation_details": { "comment": null, "feedback": null, "reason": null },
        "collection_method": "charge_automatically", "created": t, "currency": "usd",
        "customer": customer, "default_tax_rates": [], "discounts": [],
        "invoice_settings": { "account_tax_ids": null, "issuer": { "type": "self" } },
        "items": {
            "object": "list", "has_more": false, "total_count": 1,
            "url": format!("/v1/subscription_items?subscription={id}"),
            "data": [item]
        },
        "livemode": false, "metadata": {}, "start_date": t, "status": status
    });
    // Stripe sends every nullable field, as null when unset.
    for k in [
        "application",
        "application_fee_percent",
        "billing_cycle_anchor_config",
        "billing_thresholds",
        "cancel_at",
        "canceled_at",
        "customer_account",
        "days_until_due",
        "default_payment_method",
        "default_source",
        "description",
        "ended_at",
        "latest_invoice",
        "next_pending_invoice_item_invoice",
        "on_behalf_of",
        "pause_collection",
        "payment_settings",
        "pending_invoice_item_interval",
        "pending_setup_intent",
        "pending_update",
        "schedule",
        "test_clock",
        "transfer_data",
        "trial_end",
        "trial_settings",
        "trial_start",
    ] {
        sub[k] = Value::Null;
    }
    sub
}

fn line(id: &str, amount: i64, proration: bool, sub: &str) -> Value {
    let t = now();
    json!({
        "id": id, "object": "line_item", "amount": amount, "currency": "usd",
        "description": if proration { "Prorated change" } else { "Next period" },
        "discount_amounts": [], "discountable": !proration, "discounts": [], "invoice": null,
        "livemode": false, "metadata": {},
        "parent": {
            "type": "subscription_item_details", "invoice_item_details": null,
            "subscription_item_details": {
                "invoice_item": null, "proration": proration, "proration_details": null,
                "subscription": sub, "subscription_item": format!("si_{sub}")
            }
        },
        "period": { "end": t + 30 * 86_400, "start": t },
        "pretax_credit_amounts": [], "pricing": null, "quantity": 1, "subtotal": amount,
        "taxes": []
    })
}

/// An invoice object; `status` is Stripe's (`draft`, `open`, `paid`, ...).
pub fn invoice(id: &str, customer: &str, sub: &str, status: &str, amount: i64) -> Value {
    let t = now();
    let paid = status == "paid";
    json!({
        "id": id, "object": "invoice", "account_country": "US", "account_name": "Tenantry",
        "amount_due": amount, "amount_overpaid": 0, "amount_paid": if paid { amount } else { 0 },
        "amount_remaining": if paid { 0 } else { amount }, "amount_shipping": 0,
        "attempt_count": 1, "attempted": true,
        "automatic_tax": { "disabled_reason": null, "enabled": false, "liability": null,
                           "provider": null, "status": null },
        "billing_reason": "subscription_cycle", "collection_method": "charge_automatically",
        "created": t, "currency": "usd", "customer": customer, "default_tax_rates": [],
        "description": null, "discounts": [], "due_date": null,
        "hosted_invoice_url": format!("https://invoice.stripe.test/{id}"),
        "issuer": { "type": "self" },
        "lines": { "object": "list", "has_more": false, "url": format!("/v1/invoices/{id}/lines"),
                   "data": [line(&format!("il_{id}"), amount, false, sub)] },
        "livemode": false, "metadata": {},
        "parent": { "type": "subscription_details", "quote_details": null,
                    "subscription_details": { "metadata": {}, "subscription": sub,
                                              "subscription_proration_date": null } },
        "payment_settings": { "default_mandate": null, "payment_method_options": null,
                              "payment_method_types": null },
        "period_end": t, "period_start": t - 30 * 86_400,
        "post_payment_credit_notes_amount": 0, "pre_payment_credit_notes_amount": 0,
        "starting_balance": 0, "status": status,
        "status_transitions": { "finalized_at": t, "marked_uncollectible_at": null,
                                "paid_at": if paid { Value::from(t) } else { Value::Null },
                                "voided_at": null },
        "subtotal": amount, "total": amount
    })
}

/// `subscription(...)` as an endpoint pinned to API version 2024-06-20 receives it: the period
/// on the subscription, not on its items, and none of the fields newer versions added.
pub fn subscription_2024_06_20(id: &str, customer: &str, price_id: &str, status: &str) -> Value {
    let mut s = subscription(id, customer, price_id, status);
    let item = s["items"]["data"][0].as_object_mut().unwrap();
    let start = item.remove("current_period_start").unwrap();
    let end = item.remove("current_period_end").unwrap();
    let o = s.as_object_mut().unwrap();
    o.insert("current_period_start".into(), start);
    o.insert("current_period_end".into(), end);
    for k in ["billing_mode", "billing_schedules", "customer_account"] {
        o.remove(k);
    }
    s
}

/// `invoice(...)` in the 2024-06-20 layout: `subscription` at the top level, no `parent`.
pub fn invoice_2024_06_20(id: &str, customer: &str, sub: &str, status: &str, amount: i64) -> Value {
    let mut i = invoice(id, customer, sub, status, amount);
    let o = i.as_object_mut().unwrap();
    o.remove("parent");
    o.insert("subscription".into(), Value::from(sub));
    i
}

/// An event rendered in `api_version`.
pub fn event_in(version: &str, id: &str, kind: &str, created: i64, object: Value) -> Value {
    let mut e = event(id, kind, created, object);
    e["api_version"] = Value::from(version);
    e
}

/// A Stripe event envelope around `object`.
pub fn event(id: &str, kind: &str, created: i64, object: Value) -> Value {
    json!({
        "id": id, "object": "event", "api_version": "2026-09-30.endive", "created": created,
        "data": { "object": object }, "livemode": false, "pending_webhooks": 1,
        "request": { "id": null, "idempotency_key": null }, "type": kind
    })
}

/// The `Stripe-Signature` header Stripe sends for `body`, signed at `t` with `secret`.
pub fn signature(secret: &str, t: i64, body: &str) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    let tag = ring::hmac::sign(&key, format!("{t}.{body}").as_bytes());
    let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("t={t},v1={hex}")
}

/// POSTs `event` to `base/webhooks/stripe` signed with `secret` now; returns (status, body).
pub async fn deliver(base: &str, event: &Value, secret: &str) -> (u16, Value) {
    let body = event.to_string();
    deliver_raw(base, &body, &signature(secret, now(), &body)).await
}

pub async fn deliver_raw(base: &str, body: &str, header: &str) -> (u16, Value) {
    let resp = reqwest::Client::new()
        .post(format!("{base}/webhooks/stripe"))
        .header("content-type", "application/json")
        .header("stripe-signature", header)
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

fn parse_form(body: &[u8]) -> Vec<(String, String)> {
    let s = String::from_utf8_lossy(body);
    s.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let h = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("3f");
                out.push(u8::from_str_radix(h, 16).unwrap_or(b'?'));
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The `prefix[key]=value` form fields as an object.
fn form_map(r: &Recorded, prefix: &str) -> Value {
    let mut m = serde_json::Map::new();
    for (k, v) in &r.form {
        if let Some(key) = k
            .strip_prefix(prefix)
            .and_then(|k| k.strip_prefix('['))
            .and_then(|k| k.strip_suffix(']'))
        {
            m.insert(key.to_owned(), json!(v));
        }
    }
    Value::Object(m)
}

fn error(status: u16, message: &str) -> (u16, Value) {
    let kind = if status >= 500 {
        "api_error"
    } else {
        "invalid_request_error"
    };
    (
        status,
        json!({ "error": { "type": kind, "message": message } }),
    )
}

async fn handle(
    State(inner): State<Arc<Mutex<Inner>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form = match method {
        Method::GET | Method::DELETE => parse_form(uri.query().unwrap_or_default().as_bytes()),
        _ => parse_form(&body),
    };
    let header = |k: &str| {
        headers
            .get(k)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let rec = Recorded {
        method: method.to_string(),
        path: uri.path().to_owned(),
        idempotency_key: header("idempotency-key"),
        authorization: header("authorization"),
        form,
    };
    let delay = {
        let mut g = inner.lock().unwrap();
        g.requests.push(rec.clone());
        g.delay
    };
    if let Some(d) = delay {
        tokio::time::sleep(d).await;
    }
    let (status, value) = answer(&inner, &rec);
    (StatusCode::from_u16(status).unwrap(), axum::Json(value)).into_response()
}

fn answer(inner: &Mutex<Inner>, r: &Recorded) -> (u16, Value) {
    let mut g = inner.lock().unwrap();
    if let Some((status, msg)) = g.failure.clone() {
        return error(status, &msg);
    }
    let replay_key = r
        .idempotency_key
        .as_ref()
        .map(|k| format!("{} {} {k}", r.method, r.path));
    if let Some(k) = &replay_key {
        if let Some(prev) = g.replies.get(k) {
            return prev.clone();
        }
    }
    g.seq += 1;
    let n = g.seq;
    let t = now();
    let parts: Vec<&str> = r.path.trim_start_matches("/v1/").split('/').collect();
    let out = match (r.method.as_str(), parts.as_slice()) {
        ("POST", ["customers"]) => (
            200,
            json!({
                "id": format!("cus_test{n}"), "object": "customer", "address": null,
                "balance": 0, "created": t, "currency": null, "default_source": null,
                "delinquent": false, "description": null, "email": null,
                "invoice_prefix": format!("T{n}"), "livemode": false,
                "metadata": { "tenant_id": r.param("metadata[tenant_id]") },
                "name": r.param("name"), "phone": null, "preferred_locales": [],
                "shipping": null, "tax_exempt": "none", "test_clock": null
            }),
        ),
        ("GET", ["subscriptions", id]) => match g.subscriptions.get(*id) {
            Some(s) => (200, s.clone()),
            None => error(404, &format!("No such subscription: '{id}'")),
        },
        ("POST", ["subscriptions", id]) => match g.subscriptions.get_mut(*id) {
            None => error(404, &format!("No such subscription: '{id}'")),
            Some(s) => {
                if let Some(p) = r.param("items[0][price]") {
                    let item = &mut s["items"]["data"][0];
                    item["price"] = price(p, 9900);
                    item["plan"] = plan(p, 9900);
                }
                if let Some(c) = r.param("cancel_at_period_end") {
                    s["cancel_at_period_end"] = json!(c == "true");
                }
                for (k, v) in &r.form {
                    if let Some(key) = k
                        .strip_prefix("metadata[")
                        .and_then(|k| k.strip_suffix(']'))
                    {
                        s["metadata"][key] = json!(v);
                    }
                }
                (200, s.clone())
            }
        },
        ("DELETE", ["subscriptions", id]) => match g.subscriptions.get_mut(*id) {
            None => error(404, &format!("No such subscription: '{id}'")),
            Some(s) => {
                s["status"] = json!("canceled");
                s["canceled_at"] = json!(t);
                s["ended_at"] = json!(t);
                (200, s.clone())
            }
        },
        ("POST", ["invoices", "create_preview"]) => {
            let sub = r.param("subscription").unwrap_or("sub_none").to_owned();
            let mut inv = invoice(
                &format!("upcoming_in_{n}"),
                r.param("customer").unwrap_or(""),
                &sub,
                "draft",
                0,
            );
            // Unused time on the old price (credit), remaining time on the new one, and the
            // next regular period: the proration is -1000 + 2500 = 1500.
            inv["id"] = Value::Null;
            inv["lines"]["data"] = json!([
                line("il_unused", -1000, true, &sub),
                line("il_remaining", 2500, true, &sub),
                line("il_next", 9900, false, &sub),
            ]);
            inv["subtotal"] = json!(11_400);
            inv["total"] = json!(11_400);
            inv["amount_due"] = json!(11_400);
            (200, inv)
        }
        ("POST", ["checkout", "sessions"]) => {
            let id = format!("cs_test_{n}");
            (
                200,
                json!({
                    "id": id, "object": "checkout.session", "allow_promotion_codes": null,
                    "amount_subtotal": 4900, "amount_total": 4900,
                    "automatic_tax": { "enabled": false, "liability": null, "provider": null, "status": null },
                    "billing_address_collection": null, "cancel_url": r.param("cancel_url"),
                    "client_reference_id": r.param("client_reference_id"), "created": t,
                    "currency": "usd", "custom_fields": [],
                    "custom_text": { "after_submit": null, "shipping_address": null, "submit": null, "terms_of_service_acceptance": null },
                    "customer": r.param("customer"), "customer_email": null,
                    "expires_at": t + 86_400, "livemode": false, "metadata": {},
                    "mode": "subscription", "payment_intent": null,
                    "payment_method_types": ["card"], "payment_status": "unpaid",
                    "shipping_options": [], "status": "open",
                    "subscription": null, "success_url": r.param("success_url"),
                    "ui_mode": "hosted",
                    "url": format!("https://checkout.stripe.test/c/pay/{id}")
                }),
            )
        }
        ("POST", ["products"]) => (
            200,
            json!({
                "id": format!("prod_test{n}"), "object": "product", "active": true,
                "created": t, "default_price": null, "description": null, "images": [],
                "livemode": false, "marketing_features": [],
                "metadata": form_map(r, "metadata"), "name": r.param("name"),
                "package_dimensions": null, "shippable": null, "statement_descriptor": null,
                "tax_code": null, "type": "service", "unit_label": null, "updated": t,
                "url": null
            }),
        ),
        ("POST", ["prices"]) => {
            let amount = r.param("unit_amount").and_then(|a| a.parse::<i64>().ok());
            let mut p = price(&format!("price_test{n}"), amount.unwrap_or(0));
            p["currency"] = json!(r.param("currency"));
            p["product"] = json!(r.param("product"));
            p["recurring"]["interval"] = json!(r.param("recurring[interval]"));
            p["metadata"] = form_map(r, "metadata");
            g.prices
                .insert(p["id"].as_str().unwrap().to_owned(), p.clone());
            (200, p)
        }
        ("POST", ["prices", id]) => match g.prices.get_mut(*id) {
            None => error(404, &format!("No such price: '{id}'")),
            Some(p) => {
                if let Some(a) = r.param("active") {
                    p["active"] = json!(a == "true");
                }
                (200, p.clone())
            }
        },
        ("POST", ["billing", "meter_events"]) => (
            200,
            json!({
                "object": "billing.meter_event", "created": t,
                "event_name": r.param("event_name"), "identifier": r.param("identifier"),
                "livemode": false,
                "payload": {
                    "stripe_customer_id": r.param("payload[stripe_customer_id]"),
                    "value": r.param("payload[value]")
                },
                "timestamp": r.param("timestamp").and_then(|v| v.parse::<i64>().ok()).unwrap_or(t)
            }),
        ),
        _ => error(
            404,
            &format!("Unrecognized request URL ({} {})", r.method, r.path),
        ),
    };
    if let Some(k) = replay_key {
        g.replies.insert(k, out.clone());
    }
    out
}
