//! Tenantry: the control plane of a multi-tenant SaaS, served as one GraphQL API.

pub mod admin;
pub mod api_keys;
pub mod app;
pub mod audit;
pub mod auth;
pub mod billing;
pub mod bus;
pub mod catalogue;
pub mod cli;
pub mod config;
pub mod configs;
pub mod db;
pub mod error;
pub mod features;
pub mod graphql;
pub mod http;
pub mod ids;
pub mod jobs;
pub mod members;
pub mod notifications;
pub mod plans;
pub mod quotas;
pub mod resource_types;
pub mod seed;
pub mod telemetry;
pub mod tenants;
