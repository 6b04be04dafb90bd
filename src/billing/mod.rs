//! Billing (SPEC §4 "Billing"): the subscription mirror, invoices, plan changes through
//! intents, cancel/resume. This step implements LOCAL mode (no `STRIPE_SECRET_KEY`): plan
//! changes apply at once and nothing reaches Stripe; `billingMode` says so. The Stripe path
//! (async-stripe, Checkout, webhook) plugs into the same service functions.

pub mod graphql;
pub mod model;
pub mod service;
pub mod store;
