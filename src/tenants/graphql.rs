//! GraphQL for tenants: `me`, `tenant`, `tenants`, `publicTenant` and the lifecycle mutations.
//! Thin: parse arguments, call `service`, map rows to types. Nested fields use the loaders.

use async_graphql::connection::Connection;
use async_graphql::{Context, InputObject, MaybeUndefined, Object, Result, SimpleObject, ID};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::model::{TenantRow, TenantStatus};
use super::service::{self, CreateTenant, UpdateTenant};
use super::store::ListFilter;
use crate::auth::Role;
use crate::billing::graphql::{BillingSubscription, Invoice, SubscriptionOfTenant};
use crate::billing::model::{InvoiceStatus, SubscriptionRow};
use crate::configs::graphql::ConfigEntry;
use crate::configs::loader::ConfigOfTenant;
use crate::configs::service::{self as configs, TenantConfig};
use crate::error::AppError;
use crate::features::graphql::Feature;
use crate::features::loader::FeaturesOfTenant;
use crate::features::model::EffectiveFeature;
use crate::graphql::context::CtxExt;
use crate::graphql::guards::RequireFeature;
use crate::graphql::guards::RequireRole;
use crate::graphql::loaders::SiblingBatch;
use crate::graphql::pagination::{wants_total, KeysetCursor, PageArgs, TotalCount, MAX_PAGE};
use crate::graphql::scalars::BigInt;
use crate::plans::graphql::{Plan, PlanPage};
use crate::plans::loader::PlanById;
use crate::plans::model::PlanRow;
use crate::quotas::graphql::Quota;
use crate::quotas::graphql::{Granularity, QuotaAlert, UsagePoint};
use crate::quotas::loader::QuotasOfTenant;
use crate::quotas::model::QuotaRow;
use scoped_futures::ScopedFutureExt;

/// The tenants of one list: plans, quotas and features load for all of them at once.
pub struct TenantPage {
    plans: SiblingBatch<PlanById, PlanRow>,
    plan_page: Arc<PlanPage>,
    quotas: SiblingBatch<QuotasOfTenant, Vec<QuotaRow>>,
    features: SiblingBatch<FeaturesOfTenant, Vec<EffectiveFeature>>,
    configs: SiblingBatch<ConfigOfTenant, Arc<TenantConfig>>,
    subscriptions: SiblingBatch<SubscriptionOfTenant, SubscriptionRow>,
    pending_domains: SiblingBatch<super::loader::PendingDomainOf, super::model::DomainClaim>,
}

pub struct Tenant {
    row: TenantRow,
    page: Arc<TenantPage>,
}

impl Tenant {
    pub fn list(rows: Vec<TenantRow>) -> Vec<Tenant> {
        let plan_ids: Vec<Uuid> = rows.iter().map(|t| t.plan_id).collect();
        let page = Arc::new(TenantPage {
            plans: SiblingBatch::new(plan_ids.iter().map(|id| PlanById(*id)).collect()),
            plan_page: PlanPage::new(&plan_ids),
            quotas: SiblingBatch::new(rows.iter().map(|t| QuotasOfTenant(t.id)).collect()),
            configs: SiblingBatch::new(rows.iter().map(|t| ConfigOfTenant(t.id)).collect()),
            pending_domains: SiblingBatch::new(
                rows.iter()
                    .map(|t| super::loader::PendingDomainOf(t.id))
                    .collect(),
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
            .get(ctx.loaders(), &super::loader::PendingDomainOf(self.row.id))
            .await?;
        Ok(claim.map(|c| PendingDomain {
            txt_record_name: super::domains::txt_record_name(&c.domain),
            domain: c.domain,
            verification_token: c.token,
            expires_at: c.expires_at,
        }))
    }
    async fn status(&self) -> TenantStatus {
        self.row.status()
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
    async fn quota(&self, ctx: &Context<'_>, resource: String) -> Result<Option<Quota>> {
        let rows = self
            .page
            .quotas
            .get(ctx.loaders(), &QuotasOfTenant(self.row.id))
            .await?
            .unwrap_or_default();
        Ok(rows
            .into_iter()
            .find(|q| q.resource == resource)
            .map(Quota::now))
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
        let page = PageArgs::parse(first, after.as_deref())?;
        let (tenant_id, status) = (self.row.id, status.map(|s| s.as_str()));
        let total = wants_total(ctx);
        let (rows, total_count) = ctx
            .req()
            .db
            .scoped(ctx.req().read_scope(), |c| {
                async move {
                    let rows = crate::billing::store::invoices_of(
                        c,
                        tenant_id,
                        status,
                        page.after,
                        page.limit(),
                    )
                    .await?;
                    let n = match total {
                        true => crate::billing::store::count_invoices(c, tenant_id, status).await?,
                        false => 0,
                    };
                    Ok((rows, n))
                }
                .scope_boxed()
            })
            .await?;
        Ok(page.connection(
            rows,
            |r| (r.created_at, r.id),
            |rows| rows.into_iter().map(Invoice::from).collect(),
            TotalCount { total_count },
        ))
    }

    /// Threshold crossings of this tenant's quotas, newest first.
    #[graphql(complexity = "first.unwrap_or(20).clamp(0, 100) as usize * child_complexity + 1")]
    async fn quota_alerts(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> Result<Connection<KeysetCursor, QuotaAlert, TotalCount>> {
        let page = PageArgs::parse(first, after.as_deref())?;
        let tenant_id = self.row.id;
        let total = wants_total(ctx);
        let (rows, total_count) = ctx
            .req()
            .db
            .scoped(ctx.req().read_scope(), |c| {
                async move {
                    let rows = crate::quotas::store::alerts(c, tenant_id, page.after, page.limit())
                        .await?;
                    let n = match total {
                        true => crate::quotas::store::count_alerts(c, tenant_id).await?,
                        false => 0,
                    };
                    Ok((rows, n))
                }
                .scope_boxed()
            })
            .await?;
        Ok(page.connection(
            rows,
            |a| (a.created_at, a.id),
            |rows| rows.into_iter().map(QuotaAlert::from).collect(),
            TotalCount { total_count },
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
        if to <= from {
            return Err(AppError::bad_input("to", "to must be after from").into());
        }
        if to - from > granularity.max_span() {
            return Err(AppError::bad_input("from", "range too long for this granularity").into());
        }
        let tenant_id = self.row.id;
        let unit = granularity.sql_unit();
        let rows = ctx
            .req()
            .db
            .scoped(ctx.req().read_scope(), |c| {
                async move {
                    Ok(
                        crate::quotas::store::usage_series(c, tenant_id, &resource, from, to, unit)
                            .await?,
                    )
                }
                .scope_boxed()
            })
            .await?;
        Ok(rows
            .into_iter()
            .map(|b| UsagePoint {
                period_start: b.period_start,
                amount: BigInt(b.amount),
            })
            .collect())
    }
}

/// What anyone may see of a tenant found by its Host (subdomain or custom domain).
#[derive(SimpleObject)]
pub struct PublicTenant {
    pub name: String,
    pub slug: String,
    pub domain: Option<String>,
}

#[derive(SimpleObject)]
pub struct Viewer {
    pub user_id: String,
    pub role: Role,
    pub tenant: Option<Tenant>,
}

#[derive(InputObject, Default)]
pub struct TenantFilter {
    /// Only these statuses. Without it, deleted tenants are left out.
    pub status: Option<Vec<TenantStatus>>,
    pub plan_slug: Option<String>,
    /// Case-insensitive part of the name or slug.
    pub search: Option<String>,
}

impl From<TenantFilter> for ListFilter {
    fn from(f: TenantFilter) -> Self {
        let statuses = match f.status {
            Some(s) => s.iter().map(|s| s.as_str().to_owned()).collect(),
            None => vec!["ACTIVE".into(), "SUSPENDED".into()],
        };
        ListFilter {
            statuses,
            plan_slug: f.plan_slug,
            search: f.search.filter(|s| !s.trim().is_empty()),
        }
    }
}

/// `totalCount`, counted only when asked for.
pub struct TenantConnectionFields {
    filter: ListFilter,
}

#[Object]
impl TenantConnectionFields {
    async fn total_count(&self, ctx: &Context<'_>) -> Result<i64> {
        let req = ctx.req();
        Ok(service::count(&req.db, &req.actor(), &self.filter).await?)
    }
}

fn parse_id(id: &ID) -> Result<Uuid, AppError> {
    Uuid::parse_str(id.as_str()).map_err(|_| AppError::bad_input("id", "id must be a UUID"))
}

#[derive(Default)]
pub struct TenantQuery;

#[Object]
impl TenantQuery {
    /// The caller: user id, role and tenant (null for platform admins without `X-Tenant-ID`).
    #[graphql(guard = "RequireRole(Role::TenantMember)")]
    async fn me(&self, ctx: &Context<'_>) -> Result<Viewer> {
        let req = ctx.req();
        let p = req.principal()?;
        Ok(Viewer {
            user_id: p.user_id.clone(),
            role: p.role,
            tenant: req.tenant.clone().map(Tenant::one),
        })
    }

    /// A tenant by id or slug; without arguments, the caller's tenant. Tenant users can only
    /// reach their own tenant (any other answers NOT_FOUND).
    #[graphql(guard = "RequireRole(Role::TenantMember)")]
    async fn tenant(
        &self,
        ctx: &Context<'_>,
        id: Option<ID>,
        slug: Option<String>,
    ) -> Result<Option<Tenant>> {
        let req = ctx.req();
        let actor = req.actor();
        let row = match (id, slug) {
            (Some(_), Some(_)) => {
                return Err(AppError::bad_input("id", "pass id or slug, not both").into())
            }
            (Some(id), None) => service::get(&req.db, &actor, parse_id(&id)?).await?,
            (None, Some(slug)) => service::get_by_slug(&req.db, &actor, &slug).await?,
            (None, None) => match req.tenant_id() {
                Some(id) => service::get(&req.db, &actor, id).await?,
                None => return Ok(None),
            },
        };
        Ok(Some(Tenant::one(row)))
    }

    /// All tenants, oldest first (platform admins).
    #[graphql(
        guard = "RequireRole(Role::PlatformAdmin)",
        complexity = "first.unwrap_or(20).clamp(0, MAX_PAGE) as usize * child_complexity + 1"
    )]
    async fn tenants(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        filter: Option<TenantFilter>,
    ) -> Result<Connection<KeysetCursor, Tenant, TenantConnectionFields>> {
        let page = PageArgs::parse(first, after.as_deref())?;
        let filter: ListFilter = filter.unwrap_or_default().into();
        let req = ctx.req();
        let rows = service::list(&req.db, &req.actor(), &filter, page.after, page.limit()).await?;
        Ok(page.connection(
            rows,
            |t| (t.created_at, t.id),
            Tenant::list,
            TenantConnectionFields { filter },
        ))
    }

    /// The tenant named by the request's Host (`<slug>.<BASE_DOMAIN>` or a custom domain):
    /// public branding for sign-in pages; null when the host names no tenant.
    async fn public_tenant(&self, ctx: &Context<'_>) -> Option<PublicTenant> {
        ctx.req().public_tenant.as_ref().map(|t| PublicTenant {
            name: t.name.clone(),
            slug: t.slug.clone(),
            domain: t.domain.clone(),
        })
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

#[derive(InputObject)]
pub struct CreateTenantInput {
    pub name: String,
    pub slug: String,
    pub domain: Option<String>,
    #[graphql(default_with = "Some(\"free\".to_string())")]
    pub plan_slug: Option<String>,
    pub owner_id: Option<String>,
    /// Billing region (`US` by default).
    pub region: Option<String>,
}

#[derive(InputObject)]
pub struct UpdateTenantInput {
    pub name: Option<String>,
    /// A host name; null clears it (and any pending claim). Set by a platform admin it is
    /// verified at once; set by a tenant admin it becomes `pendingDomain` until
    /// `verifyTenantDomain` finds the DNS proof.
    pub domain: MaybeUndefined<String>,
    /// Replaces the tenant's settings object.
    pub settings: Option<async_graphql::Json<serde_json::Value>>,
}

#[derive(Default)]
pub struct TenantMutation;

#[Object]
impl TenantMutation {
    /// Creates and provisions a tenant (platform admins).
    #[graphql(guard = "RequireRole(Role::PlatformAdmin)")]
    async fn create_tenant(&self, ctx: &Context<'_>, input: CreateTenantInput) -> Result<Tenant> {
        let req = ctx.req();
        let input = CreateTenant {
            name: input.name,
            slug: input.slug,
            domain: input.domain,
            plan_slug: input.plan_slug,
            owner_id: input.owner_id,
            region: input.region,
        };
        Ok(Tenant::one(
            service::create(ctx.app(), &req.actor(), input).await?,
        ))
    }

    #[graphql(guard = "RequireRole(Role::TenantAdmin)")]
    async fn update_tenant(
        &self,
        ctx: &Context<'_>,
        id: ID,
        input: UpdateTenantInput,
    ) -> Result<Tenant> {
        let req = ctx.req();
        let domain = match input.domain {
            MaybeUndefined::Undefined => None,
            MaybeUndefined::Null => Some(None),
            MaybeUndefined::Value(d) => Some(Some(d)),
        };
        let input = UpdateTenant {
            name: input.name,
            domain,
            settings: input.settings.map(|j| j.0),
        };
        Ok(Tenant::one(
            service::update(ctx.app(), &req.actor(), parse_id(&id)?, input).await?,
        ))
    }

    /// Checks the DNS TXT record of the tenant's pending domain claim; when it holds the token,
    /// the claimed domain becomes the tenant's verified `domain` (`BAD_USER_INPUT` while the
    /// record is missing, `CONFLICT` when another tenant verified the domain first).
    #[graphql(guard = "RequireRole(Role::TenantAdmin)")]
    async fn verify_tenant_domain(&self, ctx: &Context<'_>, id: ID) -> Result<Tenant> {
        let req = ctx.req();
        Ok(Tenant::one(
            super::domains::verify(ctx.app(), &req.actor(), parse_id(&id)?).await?,
        ))
    }

    #[graphql(guard = "RequireRole(Role::PlatformAdmin)")]
    async fn suspend_tenant(&self, ctx: &Context<'_>, id: ID, reason: String) -> Result<Tenant> {
        let req = ctx.req();
        Ok(Tenant::one(
            service::suspend(ctx.app(), &req.actor(), parse_id(&id)?, &reason).await?,
        ))
    }

    #[graphql(guard = "RequireRole(Role::PlatformAdmin)")]
    async fn reactivate_tenant(&self, ctx: &Context<'_>, id: ID) -> Result<Tenant> {
        let req = ctx.req();
        Ok(Tenant::one(
            service::reactivate(ctx.app(), &req.actor(), parse_id(&id)?).await?,
        ))
    }

    /// Soft delete: restorable for 30 days.
    #[graphql(guard = "RequireRole(Role::PlatformAdmin)")]
    async fn delete_tenant(&self, ctx: &Context<'_>, id: ID) -> Result<Tenant> {
        let req = ctx.req();
        Ok(Tenant::one(
            service::delete(ctx.app(), &req.actor(), parse_id(&id)?).await?,
        ))
    }

    /// Everything the tenant owns, as one JSON document (GDPR export). Platform admins get
    /// every table; the tenant's own admins get encrypted values masked, and the audit log and
    /// usage history only while `audit_logs` / `advanced_analytics` are enabled (left-out tables
    /// are listed under `omitted`). `tables` narrows the export; a table of more than
    /// `EXPORT_MAX_ROWS` rows answers `BAD_USER_INPUT`.
    #[graphql(guard = "RequireRole(Role::TenantAdmin)")]
    async fn export_tenant_data(
        &self,
        ctx: &Context<'_>,
        id: ID,
        tables: Option<Vec<String>>,
    ) -> Result<async_graphql::Json<serde_json::Value>> {
        let req = ctx.req();
        Ok(async_graphql::Json(
            super::export::export(ctx.app(), &req.actor(), parse_id(&id)?, tables).await?,
        ))
    }

    #[graphql(guard = "RequireRole(Role::PlatformAdmin)")]
    async fn restore_tenant(&self, ctx: &Context<'_>, id: ID) -> Result<Tenant> {
        let req = ctx.req();
        Ok(Tenant::one(
            service::restore(ctx.app(), &req.actor(), parse_id(&id)?).await?,
        ))
    }
}
