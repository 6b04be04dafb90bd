//! Layered configuration (SPEC §4 "Configuration"): `system` (read-only, from the binary and
//! environment) → `plan` (read-only, derived from the plan) → `tenant` (defaults, which are
//! data in `config_defaults`, overridden by the tenant's own entries). Encrypted values are
//! AES-256-GCM at rest, masked for tenant members.

pub mod bounds;
pub mod crypto;
pub mod graphql;
pub mod layers;
pub mod loader;
pub mod model;
pub mod service;
pub mod store;
