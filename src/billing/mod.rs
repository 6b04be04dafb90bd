//! Billing (SPEC §4 "Billing"): the subscription mirror, invoices, plan changes through
//! intents, Checkout, cancel/resume, the Stripe webhook and usage reporting. Without
//! `STRIPE_SECRET_KEY` billing runs in LOCAL mode: plan changes apply at once and nothing
//! reaches Stripe (`billingMode: LOCAL`).
//!
//! Layers (see docs/architecture.md): `webhook` (HTTP) → `inbox` (exactly-once processing) →
//! `wire` (reading Stripe's objects) + `apply` (the one apply step) → `decide` (the pure state
//! machine). Services (`service`, `plan_change`, `checkout`, `preview`) share `plan_apply` and
//! `prices`; `store`/`events` hold the SQL; `stripe` the outbound calls. The catalogue's
//! prices (`setPlanPrice`) are `catalogue_prices`, which moves existing subscriptions through
//! `reprice` → `plan_change`.

pub mod apply;
pub mod catalogue_prices;
pub mod checkout;
pub mod decide;
pub mod events;
pub mod events_graphql;
pub mod graphql;
pub mod inbox;
pub mod invoices;
pub mod loader;
pub mod model;
pub mod payments;
pub mod plan_apply;
pub mod plan_change;
pub mod preview;
pub mod preview_cache;
pub mod prices;
pub mod reprice;
pub mod service;
pub mod signature;
pub mod store;
pub mod stripe;
pub mod usage;
pub mod webhook;
pub mod wire;
