//! Quotas (SPEC §4 "Quotas"): per-tenant limits and usage. This step provisions quotas from
//! the plan and exposes them read-only; metering arrives with the quotas issue.

pub mod graphql;
pub mod history;
pub mod loader;
pub mod metering;
pub mod model;
pub mod service;
pub mod store;
pub mod subscription;
