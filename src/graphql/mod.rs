//! Schema assembly: the merged roots, protections (depth, complexity, aliases, introspection)
//! and APQ. Per-request data (context, loaders) is attached by [`http`], never here.

pub mod admission;
pub mod context;
pub mod guards;
pub mod http;
pub mod loaders;
pub mod pagination;
pub mod scalars;
pub mod ws;

use std::sync::Arc;

use async_graphql::{MergedObject, MergedSubscription, Schema};

use crate::app::App;
use async_graphql::{Context, ID};

use crate::admin::AdminQuery;
use crate::api_keys::graphql::ApiKeyMutation;
use crate::audit::graphql::AuditQuery;
use crate::billing::events_graphql::{WebhookEventMutation, WebhookEventQuery};
use crate::billing::graphql::{BillingMutation, BillingQuery};
use crate::configs::graphql::ConfigMutation;
use crate::error::AppError;
use crate::features::graphql::FeatureMutation;
use crate::ids::TenantId;
use crate::plans::graphql::{PlanMutation, PlanQuery};
use crate::plans::prices_graphql::PlanPriceMutation;
use crate::quotas::graphql::{QuotaMutation, QuotaQuery};
use crate::quotas::subscription::QuotaSubscription;
use crate::resource_types::graphql::{ResourceTypeMutation, ResourceTypeQuery};
use crate::tenants::graphql::{TenantMutation, TenantQuery};
use context::CtxExt;

/// The root types are named `Query`, `Mutation` and `Subscription` (SPEC §13): the names
/// client fragments (`on Query`) and federation tooling expect.
#[derive(MergedObject, Default)]
#[graphql(name = "Query")]
pub struct QueryRoot(
    TenantQuery,
    PlanQuery,
    QuotaQuery,
    BillingQuery,
    AuditQuery,
    AdminQuery,
    WebhookEventQuery,
    ResourceTypeQuery,
);

#[derive(MergedObject, Default)]
#[graphql(name = "Mutation")]
pub struct MutationRoot(
    TenantMutation,
    FeatureMutation,
    ConfigMutation,
    QuotaMutation,
    BillingMutation,
    WebhookEventMutation,
    ResourceTypeMutation,
    PlanMutation,
    PlanPriceMutation,
    crate::members::graphql::MemberMutation,
    ApiKeyMutation,
    crate::notifications::webhooks::graphql::WebhookEndpointMutation,
);

#[derive(MergedSubscription, Default)]
#[graphql(name = "Subscription")]
pub struct SubscriptionRoot(QuotaSubscription);

pub type AppSchema = Schema<QueryRoot, MutationRoot, SubscriptionRoot>;

/// The schema is an Apollo Federation v2 subgraph (SPEC §13): `Tenant @key(fields: "id")`,
/// `Plan @key(fields: "slug")`, `_service { sdl }` and `_entities`.
fn builder() -> async_graphql::SchemaBuilder<QueryRoot, MutationRoot, SubscriptionRoot> {
    Schema::build(
        QueryRoot::default(),
        MutationRoot::default(),
        SubscriptionRoot::default(),
    )
    .enable_federation()
}

pub fn build_schema(app: Arc<App>) -> AppSchema {
    let limits = app.settings.graphql.clone();
    let mut b = builder()
        // Depth and complexity are checked by admission (depth without introspection's
        // `ofType` chain; complexity from validation's own figure, named in the refusal).
        .limit_recursive_depth(64)
        .limit_directives(16)
        // Admission also serves APQ, so a persisted query passes every limit as text.
        .extension(admission::Admission::new(
            limits.apq_cache_bytes,
            app.redis.clone(),
            &app.settings.redis_prefix,
        ))
        .data(app);
    if !limits.introspection {
        b = b.disable_introspection().disable_suggestions();
    }
    b.finish()
}

/// The SDL that `schema.graphql` must equal (`tenantry schema`).
pub fn sdl() -> String {
    builder().finish().sdl()
}

/// The subgraph SDL, with federation directives, that `_service { sdl }` answers and
/// `schema.subgraph.graphql` must equal (`tenantry schema --federation`).
pub fn federation_sdl() -> String {
    builder().finish().sdl_with_options(
        async_graphql::SDLExportOptions::new()
            .federation()
            .compose_directive(),
    )
}

/// The tenant a mutation acts on: the `tenantId` argument, else the request's tenant.
pub fn target_tenant(ctx: &Context<'_>, tenant_id: Option<&ID>) -> Result<TenantId, AppError> {
    match tenant_id {
        Some(id) => TenantId::parse("tenantId", id.as_str()),
        None => ctx.req().tenant_id().ok_or_else(|| {
            AppError::bad_input("tenantId", "tenantId is required without a tenant scope")
        }),
    }
}
