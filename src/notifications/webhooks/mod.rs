//! Outbound webhooks (SPEC §12): tenants' endpoints, their signing secrets, the targets they
//! may name, and the POST of one event.
//!
//! - `model`: rows, statuses, the secret and `Tenantry-Signature`;
//! - `target`: URL and address checks (no private, loopback or link-local targets);
//! - `send`: one signed POST;
//! - `store`: SQL only; `service`: the rules; `graphql`: thin resolvers.
//!
//! The worker that delivers is `notifications::worker`.

pub mod graphql;
pub mod model;
pub mod send;
pub mod service;
pub mod store;
pub mod target;
