//! Billing (SPEC §4 "Billing"): the subscription mirror, invoices, plan changes through
//! intents, Checkout, cancel/resume, the Stripe webhook and usage reporting. Without
//! `STRIPE_SECRET_KEY` billing runs in LOCAL mode: plan changes apply at once and nothing
//! reaches Stripe (`billingMode: LOCAL`).

pub mod events;
pub mod events_graphql;
pub mod graphql;
pub mod invoices;
pub mod model;
pub mod preview_cache;
pub mod service;
pub mod store;
pub mod stripe;
pub mod usage;
pub mod webhook;
