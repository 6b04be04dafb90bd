//! Members and invitations (SPEC §11): who belongs to a tenant, with which role. Identity stays
//! with the customer's identity provider (the JWT `sub`); Tenantry keeps the membership, its
//! role and status, who invited whom, and answers requests with it (`membership`).

pub mod graphql;
pub mod invitations;
pub mod membership;
pub mod model;
pub mod service;
pub mod store;
