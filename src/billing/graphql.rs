//! GraphQL for billing: `billingMode`, `previewPlanChange`, `changePlan`,
//! `createCheckoutSession`, `cancelSubscription`, `resumeSubscription`, and the
//! `BillingSubscription`/`Invoice` types that hang off `Tenant`.

use async_graphql::{Context, Object, Result, SimpleObject, ID};
use chrono::{DateTime, Utc};

pub use super::loader::SubscriptionOfTenant;
use super::model::{
    BillingMode, IntentRow, IntentStatus, InvoiceRow, InvoiceStatus, SubscriptionRow,
    SubscriptionStatus,
};
use super::{checkout, plan_change, service};
use crate::auth::Role;
use crate::error::AppError;
use crate::graphql::context::CtxExt;
use crate::graphql::guards::RequireRole;
use crate::graphql::scalars::BigInt;
use crate::graphql::target_tenant;
use crate::plans::graphql::Plan;
use crate::plans::loader::PlanById;
use crate::plans::model::{BillingCycle, PlanRow};

pub struct BillingSubscription(pub SubscriptionRow);

#[Object]
impl BillingSubscription {
    async fn status(&self) -> SubscriptionStatus {
        self.0.status
    }
    async fn plan(&self, ctx: &Context<'_>) -> Result<Plan> {
        let plan = ctx.loaders().load_one(PlanById(self.0.plan_id)).await?;
        let plan =
            plan.ok_or_else(|| AppError::internal(anyhow::anyhow!("subscription plan missing")))?;
        Ok(Plan::list(vec![plan]).remove(0))
    }
    async fn billing_cycle(&self) -> BillingCycle {
        self.0.billing_cycle
    }
    async fn current_period_start(&self) -> Option<DateTime<Utc>> {
        self.0.current_period_start
    }
    async fn current_period_end(&self) -> Option<DateTime<Utc>> {
        self.0.current_period_end
    }
    async fn trial_end(&self) -> Option<DateTime<Utc>> {
        self.0.trial_end
    }
    async fn cancel_at_period_end(&self) -> bool {
        self.0.cancel_at_period_end
    }
    async fn canceled_at(&self) -> Option<DateTime<Utc>> {
        self.0.canceled_at
    }
    /// Set after a failed payment: the tenant is suspended when it passes unpaid.
    async fn grace_period_end(&self) -> Option<DateTime<Utc>> {
        self.0.grace_period_end
    }
    async fn billing_mode(&self, ctx: &Context<'_>) -> BillingMode {
        service::mode(ctx.app())
    }
}

#[derive(SimpleObject)]
pub struct Invoice {
    pub id: ID,
    pub stripe_invoice_id: String,
    /// Minor units (cents).
    pub amount_due: BigInt,
    pub amount_paid: BigInt,
    pub currency: String,
    pub status: InvoiceStatus,
    pub period_start: Option<DateTime<Utc>>,
    pub period_end: Option<DateTime<Utc>>,
    pub due_date: Option<DateTime<Utc>>,
    pub paid_at: Option<DateTime<Utc>>,
    pub hosted_invoice_url: Option<String>,
    pub created_at: DateTime<Utc>,
}

impl From<InvoiceRow> for Invoice {
    fn from(r: InvoiceRow) -> Self {
        Invoice {
            id: ID(r.id.to_string()),
            stripe_invoice_id: r.stripe_invoice_id,
            amount_due: BigInt(r.amount_due),
            amount_paid: BigInt(r.amount_paid),
            currency: r.currency,
            status: r.status,
            period_start: r.period_start,
            period_end: r.period_end,
            due_date: r.due_date,
            paid_at: r.paid_at,
            hosted_invoice_url: r.hosted_invoice_url,
            created_at: r.created_at,
        }
    }
}

#[derive(SimpleObject)]
pub struct PlanRef {
    pub slug: String,
    pub name: String,
}

impl From<&PlanRow> for PlanRef {
    fn from(p: &PlanRow) -> Self {
        PlanRef {
            slug: p.slug.clone(),
            name: p.name.clone(),
        }
    }
}

#[derive(SimpleObject)]
pub struct PlanChangeIntent {
    pub id: ID,
    pub status: IntentStatus,
    pub version: i32,
    pub billing_cycle: BillingCycle,
    pub expires_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
    pub error: Option<String>,
    pub from_plan: PlanRef,
    pub to_plan: PlanRef,
}

pub fn intent_view(i: IntentRow, from: &PlanRow, to: &PlanRow) -> PlanChangeIntent {
    PlanChangeIntent {
        id: ID(i.id.to_string()),
        status: i.status,
        version: i.version,
        billing_cycle: i.billing_cycle,
        expires_at: i.expires_at,
        completed_at: i.completed_at,
        error: i.error,
        from_plan: from.into(),
        to_plan: to.into(),
    }
}

#[derive(SimpleObject)]
pub struct QuotaChange {
    pub resource: String,
    pub from: Option<BigInt>,
    pub to: Option<BigInt>,
}

#[derive(SimpleObject)]
pub struct PlanChangePreview {
    pub from_plan: PlanRef,
    pub to_plan: PlanRef,
    pub billing_cycle: BillingCycle,
    /// Charged now for the rest of the current period (negative: a credit), minor units.
    pub proration_amount: BigInt,
    pub currency: String,
    pub quota_changes: Vec<QuotaChange>,
    pub features_added: Vec<String>,
    pub features_removed: Vec<String>,
}

#[derive(SimpleObject)]
pub struct CheckoutSession {
    pub id: String,
    pub url: String,
}

#[derive(Default)]
pub struct BillingQuery;

#[Object]
impl BillingQuery {
    /// `LOCAL` without a Stripe key (plan changes apply at once), `STRIPE` otherwise.
    async fn billing_mode(&self, ctx: &Context<'_>) -> BillingMode {
        service::mode(ctx.app())
    }

    /// What switching the caller's tenant to `planSlug` would change and cost. Tenant admins
    /// (and platform admins with a tenant scope); answers are cached for a minute.
    #[graphql(guard = "RequireRole(Role::TenantAdmin)")]
    async fn preview_plan_change(
        &self,
        ctx: &Context<'_>,
        plan_slug: String,
        billing_cycle: Option<BillingCycle>,
    ) -> Result<PlanChangePreview> {
        let tenant_id = target_tenant(ctx, None)?;
        let cycle = billing_cycle.unwrap_or(BillingCycle::Monthly);
        let p = super::preview_cache::preview(
            ctx.app(),
            &ctx.req().actor(),
            tenant_id,
            &plan_slug,
            cycle,
        )
        .await?;
        Ok(PlanChangePreview {
            from_plan: (&p.from).into(),
            to_plan: (&p.to).into(),
            billing_cycle: p.cycle,
            proration_amount: BigInt(p.proration_amount),
            currency: p.currency.clone(),
            quota_changes: p
                .quota_changes
                .iter()
                .map(|(resource, from, to)| QuotaChange {
                    resource: resource.clone(),
                    from: from.map(BigInt),
                    to: to.map(BigInt),
                })
                .collect(),
            features_added: p.features_added.clone(),
            features_removed: p.features_removed.clone(),
        })
    }
}

#[derive(Default)]
pub struct BillingMutation;

#[Object]
impl BillingMutation {
    /// Moves the caller's tenant to another plan through a plan-change intent.
    #[graphql(guard = "RequireRole(Role::TenantAdmin)")]
    async fn change_plan(
        &self,
        ctx: &Context<'_>,
        plan_slug: String,
        billing_cycle: Option<BillingCycle>,
    ) -> Result<PlanChangeIntent> {
        let tenant_id = target_tenant(ctx, None)?;
        let cycle = billing_cycle.unwrap_or(BillingCycle::Monthly);
        let (i, from, to) =
            plan_change::change_plan(ctx.app(), &ctx.req().actor(), tenant_id, &plan_slug, cycle)
                .await?;
        Ok(intent_view(i, &from, &to))
    }

    /// Starts a paid subscription. With Stripe this is a Checkout session to redirect to; in
    /// LOCAL mode the plan applies at once and the URL is `successUrl`.
    #[graphql(guard = "RequireRole(Role::TenantAdmin)")]
    async fn create_checkout_session(
        &self,
        ctx: &Context<'_>,
        plan_slug: String,
        billing_cycle: Option<BillingCycle>,
        success_url: String,
        cancel_url: String,
    ) -> Result<CheckoutSession> {
        let tenant_id = target_tenant(ctx, None)?;
        let cycle = billing_cycle.unwrap_or(BillingCycle::Monthly);
        let urls = checkout::Urls {
            success: &success_url,
            cancel: &cancel_url,
        };
        let actor = ctx.req().actor();
        let (id, url) =
            checkout::start(ctx.app(), &actor, tenant_id, &plan_slug, cycle, urls).await?;
        Ok(CheckoutSession { id, url })
    }

    /// Cancels at the end of the period (default) or at once.
    #[graphql(guard = "RequireRole(Role::TenantAdmin)")]
    async fn cancel_subscription(
        &self,
        ctx: &Context<'_>,
        at_period_end: Option<bool>,
    ) -> Result<BillingSubscription> {
        let tenant_id = target_tenant(ctx, None)?;
        let s = service::cancel(
            ctx.app(),
            &ctx.req().actor(),
            tenant_id,
            at_period_end.unwrap_or(true),
        )
        .await?;
        Ok(BillingSubscription(s))
    }

    /// Sets a tenant's subscription status by hand (platform admins, maintenance mode only,
    /// with a reason and a ticket id; audited).
    #[graphql(guard = "RequireRole(Role::PlatformAdmin)")]
    async fn override_subscription(
        &self,
        ctx: &Context<'_>,
        tenant_id: ID,
        status: SubscriptionStatus,
        reason: String,
        ticket_id: String,
    ) -> Result<BillingSubscription> {
        let tenant_id = target_tenant(ctx, Some(&tenant_id))?;
        let s = service::maintenance_override(
            ctx.app(),
            &ctx.req().actor(),
            tenant_id,
            status,
            &reason,
            &ticket_id,
        )
        .await?;
        Ok(BillingSubscription(s))
    }

    /// Undoes a cancellation scheduled for the end of the period.
    #[graphql(guard = "RequireRole(Role::TenantAdmin)")]
    async fn resume_subscription(&self, ctx: &Context<'_>) -> Result<BillingSubscription> {
        let tenant_id = target_tenant(ctx, None)?;
        Ok(BillingSubscription(
            service::resume(ctx.app(), &ctx.req().actor(), tenant_id).await?,
        ))
    }
}
