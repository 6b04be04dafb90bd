//! API keys for a tenant's own back ends (SPEC §11, issue 15): `tnt_` secrets shown once and
//! stored as a SHA-256 hash, with a name, a tenant role, an expiry, revocation and rotation
//! with an overlap window.
//!
//! - `model`: the row, the stored role, the secret (generation, hash, display prefix) and the
//!   validated name;
//! - `store`: SQL only;
//! - `service`: who may create, list, revoke and rotate keys, in scoped transactions with
//!   their audit entries; caches are dropped after commit (here and on every instance);
//! - `auth`: turning `Authorization: Bearer tnt_...` into a caller (cached, invalidated
//!   through the bus), `last_used_at` without a write per request, and closing the sockets of
//!   a key that is revoked or rotated away;
//! - `graphql`: thin resolvers.
//!
//! Never log, audit, export or echo a secret or its hash: the secret lives in
//! [`model::Secret`] (its `Debug` is redacted) from generation to the one answer that shows it.

pub mod auth;
pub mod graphql;
pub mod model;
pub mod service;
pub mod store;

pub use auth::ApiKeys;
