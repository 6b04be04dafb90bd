//! The integration tests: one test binary, one module per capability (each module was a test
//! binary of its own, and linking the whole crate thirty times was most of a cold build).
//!
//! Every test builds what it needs: its own database copied from a migrated template, its own
//! server on a random port, its own Redis key prefix (see `common`). Under cargo-nextest (what
//! `scripts/test.sh` runs) each test is a process of its own; under plain `cargo test` they
//! share one process, so the few tests that read process-wide state (the Prometheus recorder)
//! re-run themselves alone through `common::in_own_process`.

mod common;

mod admission;
mod api_keys;
mod architecture;
mod audit_trail;
mod auth;
mod billing_local;
mod billing_payments;
mod billing_stripe;
mod billing_versions;
mod caches;
mod catalogue;
mod catalogue_flow;
mod config_bounds;
mod cost_limits;
mod crash;
mod db_role;
mod entitlements;
mod features_config;
mod federation;
mod fuzz;
mod graphiql;
mod graphql_limits;
mod instances;
mod internal_api;
mod isolation;
mod isolation_generated;
mod jobs_export;
mod jwks;
mod members;
mod notifications_mail;
mod observability;
mod outage;
mod outbox;
mod plan_prices;
mod plan_rollouts;
mod platform_stats;
mod quotas;
mod rate_limits;
mod ready;
mod resource_types;
mod scheduler;
mod schema_drift;
mod seed_bulk;
mod sql_statements;
mod startup;
mod stripe_python;
mod subscriptions;
mod tenant_lifecycle;
mod tenant_resolution;
mod usage_bounds;
mod webhooks;
mod webhooks_delivery;
mod webhooks_safety;
