//! The `Tenant` object and its nested fields. Nested lists load for every tenant of a page at
//! once ([`TenantPage`]); connections and series come from their aggregates' services.

use std::sync::Arc;

use async_graphql::connection::Connection;
use async_graphql::{Context, Object, Result, SimpleObject, ID};
use chrono::{DateTime, Utc};

use crate::auth::Role;
use crate::billing::graphql::{BillingSubscription, Invoice, SubscriptionOfTenant};
use crate::billing::invoices;
use crate::billing::model::{InvoiceStatus, SubscriptionRow};
use crate::configs::graphql::ConfigEntry;
use crate::configs::loader::ConfigOfTenant;
use crate::configs::service::{self as configs, TenantConfig};
use crate::error::AppError;
use crate::features::graphql::Feature;
use crate::features::loader::FeaturesOfTenant;
use crate::features::model::EffectiveFeature;
use crate::graphql::admission::{self, cost::ApiUsage};
use crate::graphql::context::CtxExt;
use crate::graphql::guards::{RequireFeature, RequireRole};
use crate::graphql::loaders::SiblingBatch;
use crate::graphql::pagination::{connection, page_args, KeysetCursor, TotalCount};
use crate::ids::PlanId;
use crate::plans::graphql::{Plan, PlanPage};
use crate::plans::loader::PlanById;
use crate::plans::model::PlanRow;
use crate::quotas::graphql::{Granularity, Quota, QuotaAlert, UsagePoint};
use crate::quotas::history;
use crate::quotas::loader::QuotasOfTenant;
use crate::quotas::model::QuotaRow;
use crate::tenants::domains::txt_record_name;
use crate::tenants::loader::PendingDomainOf;
use crate::tenants::model::{DomainClaim, TenantRow, TenantStatus};

/// The tenants of one list: plans, quotas and features load for all of them at once.
pub struct TenantPage {
    plans: SiblingBatch<PlanById, PlanRow>,
    plan_page: Arc<PlanPage>,
    quotas: SiblingBatch<QuotasOfTenant, Vec<QuotaRow>>,
    features: SiblingBatch<FeaturesOfTenant, Vec<EffectiveFeature>>,
    configs: SiblingBatch<ConfigOfTenant, Arc<TenantConfig>>,
    subscriptions: SiblingBatch<SubscriptionOfTenant, SubscriptionRow>,
    pending_domains: SiblingBatch<PendingDomainOf, DomainClaim>,
}

pub struct Tenant {
    row: TenantRow,
    page: Arc<TenantPage>,
}

impl Tenant {
    pub fn list(rows: Vec<TenantRow>) -> Vec<Tenant> {
        let plan_ids: Vec<PlanId> = rows.iter().map(|t| t.plan_id).collect();
        let page = Arc::new(TenantPage {
            plans: SiblingBatch::new(plan_ids.iter().map(|id| PlanById(*id)).collect()),
            plan_page: PlanPage::new(&plan_ids),
            quotas: SiblingBatch::new(rows.iter().map(|t| QuotasOfTenant(t.id)).collect()),
            configs: SiblingBatch::new(rows.iter().map(|t| ConfigOfTenant(t.id)).collect()),
            pending_domains: SiblingBatch::new(
                rows.iter().map(|t| PendingDomainOf(t.id)).collect(),
            ),
            subscriptions: SiblingBatch::new(
                rows.iter().map(|t| SubscriptionOfTenant(t.id)).collect(),
            ),
            features: SiblingBatch::new(
                rows.iter()
                    .map(|t| FeaturesOfTenant {
                        tenant_id: t.id,
                        plan_id: t.plan_id,
                    })
                    .collect(),
            ),
        });
        rows.into_iter()
            .map(|row| Tenant {
                row,
                page: page.clone(),
            })
            .collect()
    }

    pub fn one(row: TenantRow) -> Tenant {
        Tenant::list(vec![row]).remove(0)
    }
}

#[Object]
impl Tenant {
    async fn id(&self) -> ID {
        ID(self.row.id.to_string())
    }
    async fn name(&self) -> &str {
        &self.row.name
    }
    async fn slug(&self) -> &str {
        &self.row.slug
    }
    /// The verified custom domain: the only one the Host header resolves to this tenant.
    async fn domain(&self) -> Option<&str> {
        self.row.domain.as_deref()
    }
    /// A custom domain set by a tenant admin and not proven yet (null when none or expired):
    /// publish `verificationToken` as a TXT record at `txtRecordName`, then call
    /// `verifyTenantDomain`. Tenant admins and platform admins.
    #[graphql(guard = "RequireRole(Role::TenantAdmin)")]
    async fn pending_domain(&self, ctx: &Context<'_>) -> Result<Option<PendingDomain>> {
        // One batch for the whole list of tenants, not one statement each.
        let claim = self
            .page
            .pending_domains
            .get(ctx.loaders(), &PendingDomainOf(self.row.id))
            .await?;
        Ok(claim.map(|c| PendingDomain {
            txt_record_name: txt_record_name(&c.domain),
            domain: c.domain,
            verification_token: c.token,
            expires_at: c.expires_at,
        }))
    }
    async fn status(&self) -> TenantStatus {
        self.row.status
    }
    async fn plan(&self, ctx: &Context<'_>) -> Result<Plan> {
        let plan = self
            .page
            .plans
            .get(ctx.loaders(), &PlanById(self.row.plan_id))
            .await?;
        let plan =
            plan.ok_or_else(|| AppError::internal(anyhow::anyhow!("tenant plan missing")))?;
        Ok(Plan::in_page(plan, self.page.plan_page.clone()))
    }
    async fn owner_id(&self) -> Option<&str> {
        self.row.owner_id.as_deref()
    }
    /// The tenant's API budget: its cost bucket and the cost consumed today.
    async fn api_usage(&self, ctx: &Context<'_>) -> Result<ApiUsage> {
        Ok(admission::cost::usage(ctx.app(), &self.row).await?)
    }
    /// Billing region: `US`, `CA`, `EU`, `GB` or `AU`.
    async fn region(&self) -> &str {
        &self.row.region
    }
    async fn settings(&self) -> async_graphql::Json<&serde_json::Value> {
        async_graphql::Json(&self.row.settings)
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.row.created_at
    }
    async fn updated_at(&self) -> DateTime<Utc> {
        self.row.updated_at
    }
    async fn suspended_at(&self) -> Option<DateTime<Utc>> {
        self.row.suspended_at
    }
    async fn suspend_reason(&self) -> Option<&str> {
        self.row.suspend_reason.as_deref()
    }
    async fn deleted_at(&self) -> Option<DateTime<Utc>> {
        self.row.deleted_at
    }
    /// Effective feature flags: plan entitlement, overridden per tenant.
    async fn features(&self, ctx: &Context<'_>) -> Result<Vec<Feature>> {
        let key = FeaturesOfTenant {
            tenant_id: self.row.id,
            plan_id: self.row.plan_id,
        };
        let list = self
            .page
            .features
            .get(ctx.loaders(), &key)
            .await?
            .unwrap_or_default();
        Ok(list.into_iter().map(Feature::from).collect())
    }
    async fn feature(&self, ctx: &Context<'_>, key: String) -> Result<Option<Feature>> {
        let all = self.features(ctx).await?;
        Ok(all.into_iter().find(|f| f.key == key))
    }
    async fn quotas(&self, ctx: &Context<'_>) -> Result<Vec<Quota>> {
        let rows = self
            .page
            .quotas
            .get(ctx.loaders(), &QuotasOfTenant(self.row.id))
            .await?
            .unwrap_or_default();
        Ok(rows.into_iter().map(Quota::now).collect())
    }
    /// The quota of one resource type (null when the tenant has none; an unknown resource
    /// is BAD_USER_INPUT).
    async fn quota(&self, ctx: &Context<'_>, resource: String) -> Result<Option<Quota>> {
        crate::resource_types::service::require_known(ctx.app(), "resource", &resource).await?;
        let all = self.quotas(ctx).await?;
        Ok(all.into_iter().find(|q| q.0.resource == resource))
    }

    /// The tenant's API keys that are neither revoked nor expired, newest first (tenant
    /// admins and platform admins). Secrets are shown only when a key is created or rotated.
    #[graphql(guard = "RequireRole(Role::TenantAdmin)")]
    async fn api_keys(&self, ctx: &Context<'_>) -> Result<Vec<crate::api_keys::graphql::ApiKey>> {
        crate::api_keys::graphql::of_tenant(ctx, self.row.id).await
    }

    /// Where the tenant's events are POSTed (tenant admins and platform admins).
    #[graphql(guard = "RequireRole(Role::TenantAdmin)")]
    async fn webhook_endpoints(
        &self,
        ctx: &Context<'_>,
    ) -> Result<Vec<crate::notifications::webhooks::graphql::WebhookEndpoint>> {
        crate::notifications::webhooks::graphql::of_tenant(ctx, self.row.id).await
    }

    /// The delivery log of the tenant's webhook endpoints, newest first.
    #[graphql(
        guard = "RequireRole(Role::TenantAdmin)",
        complexity = "first.unwrap_or(20).clamp(0, 100) as usize * child_complexity + 1"
    )]
    async fn webhook_deliveries(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        filter: Option<crate::notifications::webhooks::graphql::WebhookDeliveryFilter>,
    ) -> Result<
        Connection<
            KeysetCursor,
            crate::notifications::webhooks::graphql::WebhookDelivery,
            TotalCount,
        >,
    > {
        let page = page_args(ctx, first, after.as_deref())?;
        let filter = filter.unwrap_or_default().parse()?;
        let req = ctx.req();
        let page = crate::notifications::webhooks::service::deliveries(
            &req.db,
            req.read_scope(),
            self.row.id,
            filter,
            page,
        )
        .await?;
        Ok(connection(
            page,
            |d| (d.created_at, d.id),
            |rows| rows.into_iter().map(Into::into).collect(),
        ))
    }

    /// The billing subscription (mirror of Stripe's, or the local one in LOCAL mode).
    async fn subscription(&self, ctx: &Context<'_>) -> Result<Option<BillingSubscription>> {
        let s = self
            .page
            .subscriptions
            .get(ctx.loaders(), &SubscriptionOfTenant(self.row.id))
            .await?;
        Ok(s.map(BillingSubscription))
    }

    /// Invoices, newest first (amounts in minor units).
    #[graphql(complexity = "first.unwrap_or(20).clamp(0, 100) as usize * child_complexity + 1")]
    async fn invoices(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        status: Option<InvoiceStatus>,
    ) -> Result<Connection<KeysetCursor, Invoice, TotalCount>> {
        let page = page_args(ctx, first, after.as_deref())?;
        let req = ctx.req();
        let page = invoices::list(&req.db, req.read_scope(), self.row.id, status, page).await?;
        Ok(connection(
            page,
            |r| (r.created_at, r.id),
            |rows| rows.into_iter().map(Invoice::from).collect(),
        ))
    }

    /// The tenant's members, oldest first (removed ones are gone; invited ones until they
    /// accept or the invitation is revoked).
    #[graphql(complexity = "first.unwrap_or(20).clamp(0, 100) as usize * child_complexity + 1")]
    async fn members(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        filter: Option<crate::members::graphql::MemberFilter>,
    ) -> Result<Connection<KeysetCursor, crate::members::graphql::Member, TotalCount>> {
        let page = page_args(ctx, first, after.as_deref())?;
        let f = filter.unwrap_or_default();
        let filter = crate::members::model::Filter {
            role: f.role,
            status: f.status,
        };
        let req = ctx.req();
        let page =
            crate::members::service::list(&req.db, req.read_scope(), self.row.id, filter, page)
                .await?;
        Ok(connection(
            page,
            |m| (m.created_at, m.id),
            |rows| rows.into_iter().map(Into::into).collect(),
        ))
    }

    /// The member whose identity-provider `sub` is `userId`, if any.
    async fn member(
        &self,
        ctx: &Context<'_>,
        user_id: String,
    ) -> Result<Option<crate::members::graphql::Member>> {
        let req = ctx.req();
        let row =
            crate::members::service::find(&req.db, req.read_scope(), self.row.id, &user_id).await?;
        Ok(row.map(Into::into))
    }

    /// Threshold crossings of this tenant's quotas, newest first.
    #[graphql(complexity = "first.unwrap_or(20).clamp(0, 100) as usize * child_complexity + 1")]
    async fn quota_alerts(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> Result<Connection<KeysetCursor, QuotaAlert, TotalCount>> {
        let page = page_args(ctx, first, after.as_deref())?;
        let req = ctx.req();
        let page = history::alerts(&req.db, req.read_scope(), self.row.id, page).await?;
        Ok(connection(
            page,
            |a| (a.created_at, a.id),
            |rows| rows.into_iter().map(QuotaAlert::from).collect(),
        ))
    }

    /// The tenant configuration layer (defaults and the tenant's own entries), optionally one
    /// category. Encrypted values are masked for tenant members.
    async fn configs(
        &self,
        ctx: &Context<'_>,
        category: Option<String>,
    ) -> Result<Vec<ConfigEntry>> {
        let cfg = self
            .page
            .configs
            .get(ctx.loaders(), &ConfigOfTenant(self.row.id))
            .await?;
        let reveal = configs::reveals_secrets(&ctx.req().actor());
        let key = ctx.app().settings.config_encryption_key;
        Ok(cfg
            .map(|c| c.entries(category.as_deref(), reveal, key.as_ref()))
            .unwrap_or_default()
            .into_iter()
            .map(ConfigEntry)
            .collect())
    }

    /// Every layer merged (system → plan → defaults → tenant):
    /// `{ category: { key: { value, layer } } }`.
    async fn effective_config(
        &self,
        ctx: &Context<'_>,
    ) -> Result<async_graphql::Json<serde_json::Value>> {
        let req = ctx.req();
        let reveal = configs::reveals_secrets(&req.actor());
        Ok(async_graphql::Json(
            configs::effective(ctx.app(), &req.db, req.read_scope(), &self.row, reveal).await?,
        ))
    }

    /// Usage of one resource over [from, to), summed per hour, day or month (UTC). Needs the
    /// `advanced_analytics` feature.
    #[graphql(guard = "RequireFeature::of(\"advanced_analytics\", self.row.id, self.row.plan_id)")]
    async fn usage(
        &self,
        ctx: &Context<'_>,
        resource: String,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        #[graphql(default_with = "Granularity::Day")] granularity: Granularity,
    ) -> Result<Vec<UsagePoint>> {
        crate::resource_types::service::require_known(ctx.app(), "resource", &resource).await?;
        let req = ctx.req();
        let (scope, id) = (req.read_scope(), self.row.id);
        let series =
            history::usage_series(&req.db, scope, id, resource, (from, to), granularity).await?;
        Ok(series.into_iter().map(UsagePoint::from).collect())
    }
}

/// A claim on a custom domain, waiting for its DNS proof.
#[derive(SimpleObject)]
pub struct PendingDomain {
    pub domain: String,
    /// The exact value of the TXT record to publish.
    pub verification_token: String,
    /// Where to publish it: `_tenantry-challenge.<domain>`.
    pub txt_record_name: String,
    /// After this the claim lapses and the domain must be set again.
    pub expires_at: DateTime<Utc>,
}
