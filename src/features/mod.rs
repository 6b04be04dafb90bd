//! Feature flags (SPEC §4 "Features"): definitions are data; a tenant's effective flag is its
//! plan's entitlement, overridden by an unexpired per-tenant override. This step evaluates
//! flags read-only; overrides and guards arrive with the features issue.

pub mod catalogue;
pub mod graphql;
pub mod loader;
pub mod model;
pub mod service;
pub mod store;
