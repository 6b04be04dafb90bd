//! Tenants (SPEC §4 "Tenant"): creation with provisioning, updates, and the lifecycle
//! suspend → reactivate, soft delete → restore.

pub mod bulk;
pub mod domains;
pub mod export;
pub mod graphql;
pub mod lifecycle;
pub mod loader;
pub mod model;
pub mod service;
pub mod store;
