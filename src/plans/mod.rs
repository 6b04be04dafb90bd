//! The plan catalogue (SPEC §4 "Plans"): plans, regional prices, included features and quotas.
//! Platform data: no tenant rows here, readable in every scope.

pub mod cache;
pub mod graphql;
pub mod loader;
pub mod model;
pub mod prices_graphql;
pub mod rollout;
pub mod service;
pub mod store;
