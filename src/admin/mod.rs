//! Platform-admin views across tenants (`platformStats`): `store` reads the figures (SQL only),
//! `service` holds the rules (who may ask, what counts as recurring revenue) and `graphql` maps
//! them to types. Read-only, through the explicit platform scope.

pub mod graphql;
pub mod model;
pub mod service;
pub mod store;

pub use graphql::AdminQuery;
