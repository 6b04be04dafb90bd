//! The resource types quotas and usage may name (SPEC §4 "Quotas", §13): platform catalogue
//! data, seeded by a migration with the nine of the design and extended by platform admins
//! (`createResourceType`). Every entry that takes a resource name asks
//! [`service::require_known`], answered from an in-memory set (no SQL on the metering path).

pub mod cache;
pub mod graphql;
pub mod model;
pub mod service;
pub mod store;
