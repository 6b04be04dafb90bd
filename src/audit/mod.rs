//! The audit log (SPEC §4): every mutation writes an entry in the same transaction as its
//! effect (`store::record`, the only writer); `service` decides who sees which entries and
//! `graphql` lists them behind `audit_logs`.

pub mod graphql;
pub mod model;
pub mod service;
pub mod store;

pub use store::{record, record_many, Change};
