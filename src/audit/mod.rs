//! The audit log (SPEC §4): every mutation writes an entry in the same transaction as its
//! effect (`store::record`, the only writer); `graphql` lists entries behind `audit_logs`.

pub mod graphql;
pub mod store;

pub use store::{record, Change};
