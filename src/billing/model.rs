//! Subscription, invoice and plan-change-intent rows and their enums.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use uuid::Uuid;

use crate::db::schema::{billing_subscriptions, invoices, plan_change_intents};
use crate::db::text_enum::text_enum;
use crate::ids::{IntentId, PlanId, TenantId};
use crate::plans::model::BillingCycle;

#[derive(Queryable, Selectable, Insertable, Debug, Clone)]
#[diesel(table_name = billing_subscriptions, check_for_backend(diesel::pg::Pg))]
pub struct SubscriptionRow {
    pub tenant_id: TenantId,
    pub status: SubscriptionStatus,
    pub plan_id: PlanId,
    pub billing_cycle: BillingCycle,
    pub stripe_customer_id: Option<String>,
    pub stripe_subscription_id: Option<String>,
    pub current_period_start: Option<DateTime<Utc>>,
    pub current_period_end: Option<DateTime<Utc>>,
    pub trial_end: Option<DateTime<Utc>>,
    pub cancel_at_period_end: bool,
    pub canceled_at: Option<DateTime<Utc>>,
    pub grace_period_end: Option<DateTime<Utc>>,
}

#[derive(Queryable, Selectable, Debug, Clone)]
#[diesel(table_name = invoices, check_for_backend(diesel::pg::Pg))]
pub struct InvoiceRow {
    pub tenant_id: TenantId,
    pub id: Uuid,
    pub stripe_invoice_id: String,
    pub amount_due: i64,
    pub amount_paid: i64,
    pub currency: String,
    pub status: InvoiceStatus,
    pub period_start: Option<DateTime<Utc>>,
    pub period_end: Option<DateTime<Utc>>,
    pub due_date: Option<DateTime<Utc>>,
    pub paid_at: Option<DateTime<Utc>>,
    pub hosted_invoice_url: Option<String>,
    pub created_at: DateTime<Utc>,
}

#[derive(Queryable, Selectable, Insertable, Debug, Clone)]
#[diesel(table_name = plan_change_intents, check_for_backend(diesel::pg::Pg))]
pub struct IntentRow {
    pub tenant_id: TenantId,
    pub id: IntentId,
    pub from_plan_id: PlanId,
    pub to_plan_id: PlanId,
    pub billing_cycle: BillingCycle,
    pub status: IntentStatus,
    pub version: i32,
    pub error: Option<String>,
    pub requested_by: Option<String>,
    pub expires_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
}

text_enum!(
    #[derive(async_graphql::Enum, Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub enum SubscriptionStatus {
        Trialing = "TRIALING",
        Active = "ACTIVE",
        PastDue = "PAST_DUE",
        Canceled = "CANCELED",
        Expired = "EXPIRED",
        Incomplete = "INCOMPLETE",
        Unpaid = "UNPAID",
    }
);

text_enum!(
    /// The newest payment outcome applied to a subscription.
    #[derive(async_graphql::Enum, Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub enum PaymentOutcome {
        Paid = "PAID",
        Failed = "FAILED",
    }
);

text_enum!(
    #[derive(async_graphql::Enum, Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub enum InvoiceStatus {
        Draft = "DRAFT",
        Open = "OPEN",
        Paid = "PAID",
        Void = "VOID",
        Uncollectible = "UNCOLLECTIBLE",
    }
);

text_enum!(
    #[derive(async_graphql::Enum, Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub enum IntentStatus {
        Pending = "PENDING",
        Completed = "COMPLETED",
        Failed = "FAILED",
        Expired = "EXPIRED",
    }
);

text_enum!(
    #[derive(async_graphql::Enum, Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub enum EventStatus {
        Pending = "PENDING",
        Processed = "PROCESSED",
        Failed = "FAILED",
        Ignored = "IGNORED",
    }
);

/// Whether billing talks to Stripe.
#[derive(async_graphql::Enum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum BillingMode {
    /// No `STRIPE_SECRET_KEY`: plan changes apply at once, nothing reaches Stripe.
    Local,
    Stripe,
}
