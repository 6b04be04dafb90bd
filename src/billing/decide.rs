//! The billing state machine: what a Stripe event (or Stripe's answer to our own call) does to
//! the stored subscription and invoice, as pure functions over the stored state and the event.
//! No I/O here: [`super::apply`] loads the state, asks these functions and writes the answer.
//! Unit-tested in `decide_tests.rs` over every handled event type × every subscription status,
//! and over out-of-order pairs.

use chrono::{DateTime, Duration, Utc};

use super::model::{InvoiceStatus, PaymentOutcome, SubscriptionStatus};

/// Days a PAST_DUE subscription keeps its tenant running before the job suspends it.
pub const GRACE_PERIOD_DAYS: i64 = 7;

/// The event types with effects (SPEC §4); others are recorded as IGNORED and acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    CheckoutCompleted,
    SubscriptionCreated,
    SubscriptionUpdated,
    SubscriptionDeleted,
    InvoiceCreated,
    InvoiceFinalized,
    InvoicePaid,
    InvoicePaymentSucceeded,
    InvoicePaymentFailed,
    InvoiceVoided,
}

impl EventKind {
    pub const ALL: [EventKind; 10] = [
        EventKind::CheckoutCompleted,
        EventKind::SubscriptionCreated,
        EventKind::SubscriptionUpdated,
        EventKind::SubscriptionDeleted,
        EventKind::InvoiceCreated,
        EventKind::InvoiceFinalized,
        EventKind::InvoicePaid,
        EventKind::InvoicePaymentSucceeded,
        EventKind::InvoicePaymentFailed,
        EventKind::InvoiceVoided,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::CheckoutCompleted => "checkout.session.completed",
            EventKind::SubscriptionCreated => "customer.subscription.created",
            EventKind::SubscriptionUpdated => "customer.subscription.updated",
            EventKind::SubscriptionDeleted => "customer.subscription.deleted",
            EventKind::InvoiceCreated => "invoice.created",
            EventKind::InvoiceFinalized => "invoice.finalized",
            EventKind::InvoicePaid => "invoice.paid",
            EventKind::InvoicePaymentSucceeded => "invoice.payment_succeeded",
            EventKind::InvoicePaymentFailed => "invoice.payment_failed",
            EventKind::InvoiceVoided => "invoice.voided",
        }
    }

    /// `None` for the event types without effects.
    pub fn parse(s: &str) -> Option<EventKind> {
        EventKind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    fn is_payment_outcome(self) -> bool {
        matches!(
            self,
            EventKind::InvoicePaid
                | EventKind::InvoicePaymentSucceeded
                | EventKind::InvoicePaymentFailed
        )
    }
}

/// Why an event changes nothing; recorded as the IGNORED event's note.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ignore {
    UnknownCustomer,
    NoSubscriptionRow,
    Stale,
    ReplacedSubscription,
    OtherLiveSubscription,
    InvoiceOfAnotherCustomer,
}

impl Ignore {
    pub fn note(self) -> &'static str {
        match self {
            Ignore::UnknownCustomer => "unknown customer",
            Ignore::NoSubscriptionRow => "tenant has no subscription row",
            Ignore::Stale => "older than the stored state",
            Ignore::ReplacedSubscription => "event of a replaced subscription",
            Ignore::OtherLiveSubscription => "the tenant has another live subscription",
            Ignore::InvoiceOfAnotherCustomer => "invoice belongs to another customer",
        }
    }
}

/// What the rules read of a tenant's stored subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub status: SubscriptionStatus,
    pub stripe_subscription_id: Option<String>,
    pub grace_period_end: Option<DateTime<Utc>>,
    /// Stripe's time of the newest subscription state applied.
    pub stripe_updated_at: Option<DateTime<Utc>>,
    /// Stripe's time of the newest payment outcome applied, and that outcome.
    pub payment_updated_at: Option<DateTime<Utc>>,
    pub last_payment: Option<PaymentOutcome>,
}

/// Whether the stored state is newer than an event created at `created`.
pub fn stale(stored: Option<DateTime<Utc>>, created: DateTime<Utc>) -> bool {
    stored.is_some_and(|s| s > created)
}

pub fn is_live(status: SubscriptionStatus) -> bool {
    !matches!(
        status,
        SubscriptionStatus::Canceled | SubscriptionStatus::Expired
    )
}

/// Stripe's subscription status in ours.
pub fn map_status(stripe: &str) -> SubscriptionStatus {
    match stripe {
        "trialing" => SubscriptionStatus::Trialing,
        "active" => SubscriptionStatus::Active,
        "past_due" => SubscriptionStatus::PastDue,
        "canceled" => SubscriptionStatus::Canceled,
        "unpaid" => SubscriptionStatus::Unpaid,
        "incomplete" => SubscriptionStatus::Incomplete,
        // incomplete_expired, and paused (a trial that ended without a payment method).
        _ => SubscriptionStatus::Expired,
    }
}

/// `checkout.session.completed`: links the session's subscription unless the tenant runs on
/// another live one.
pub fn checkout(stored: Option<&Stored>, session_subscription: Option<&str>) -> Result<(), Ignore> {
    let replaces_live = stored.is_some_and(|s| {
        s.stripe_subscription_id.is_some()
            && s.stripe_subscription_id.as_deref() != session_subscription
            && is_live(s.status)
    });
    if replaces_live {
        return Err(Ignore::OtherLiveSubscription);
    }
    Ok(())
}

/// `customer.subscription.*`: whether the event may move the stored state at all.
pub fn subscription_event(
    stored: Option<&Stored>,
    subscription_id: &str,
    created: DateTime<Utc>,
) -> Result<(), Ignore> {
    let stored = stored.ok_or(Ignore::NoSubscriptionRow)?;
    if stale(stored.stripe_updated_at, created) {
        return Err(Ignore::Stale);
    }
    let replaced = stored
        .stripe_subscription_id
        .as_deref()
        .is_some_and(|id| id != subscription_id);
    if replaced && is_live(stored.status) {
        // The tenant runs on another subscription now; this one must not move its state.
        return Err(Ignore::ReplacedSubscription);
    }
    Ok(())
}

/// The stored subscription after Stripe reported a state at `at`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mirror {
    pub status: SubscriptionStatus,
    pub grace_period_end: Option<DateTime<Utc>>,
    /// The subscription ended: the tenant falls back to the free plan.
    pub ends: bool,
}

/// What a payment outcome makes of a subscription status; `None` when it leaves it alone.
fn after_payment(outcome: PaymentOutcome, s: SubscriptionStatus) -> Option<SubscriptionStatus> {
    use SubscriptionStatus::*;
    match outcome {
        PaymentOutcome::Failed if is_live(s) => Some(PastDue),
        PaymentOutcome::Paid if matches!(s, PastDue | Unpaid | Incomplete) => Some(Active),
        _ => None,
    }
}

/// A subscription state Stripe reported at `at` (an event, or the answer to our call): its
/// status, with a newer payment outcome applied on top (so the delivery order does not
/// matter); a grace period while unpaid.
pub fn mirror(stored: &Stored, stripe_status: &str, deleted: bool, at: DateTime<Utc>) -> Mirror {
    let reported = map_status(stripe_status);
    let status = if deleted {
        SubscriptionStatus::Canceled
    } else if stale(stored.payment_updated_at, at) {
        match stored.last_payment {
            Some(outcome) => after_payment(outcome, reported).unwrap_or(reported),
            None => stored.status,
        }
    } else {
        reported
    };
    let grace_period_end = match status {
        SubscriptionStatus::PastDue | SubscriptionStatus::Unpaid => stored
            .grace_period_end
            .or(at.checked_add_signed(Duration::days(GRACE_PERIOD_DAYS))),
        _ => None,
    };
    Mirror {
        status,
        grace_period_end,
        ends: deleted,
    }
}

/// What the rules read of a stored invoice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredInvoice {
    pub same_tenant: bool,
    pub status: InvoiceStatus,
    pub stripe_updated_at: Option<DateTime<Utc>>,
}

/// An invoice event's status in ours.
pub fn invoice_status(kind: EventKind, stripe: Option<&str>) -> InvoiceStatus {
    match (kind, stripe) {
        (EventKind::InvoicePaid | EventKind::InvoicePaymentSucceeded, _) | (_, Some("paid")) => {
            InvoiceStatus::Paid
        }
        (EventKind::InvoiceVoided, _) | (_, Some("void")) => InvoiceStatus::Void,
        (_, Some("uncollectible")) => InvoiceStatus::Uncollectible,
        (_, Some("draft")) => InvoiceStatus::Draft,
        _ => InvoiceStatus::Open,
    }
}

/// Final invoice states never go back to DRAFT/OPEN, whatever the timestamps say.
pub fn is_final(s: InvoiceStatus) -> bool {
    matches!(
        s,
        InvoiceStatus::Paid | InvoiceStatus::Void | InvoiceStatus::Uncollectible
    )
}

/// What a payment outcome does to the subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payment {
    /// Not a payment outcome, or one that an equal or newer state overrides.
    Nothing,
    /// No status change, but this outcome is now the newest one.
    Stamp(PaymentOutcome),
    /// The status moves (and the outcome is stamped).
    Set {
        outcome: PaymentOutcome,
        status: SubscriptionStatus,
        grace_period_end: Option<DateTime<Utc>>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvoiceDecision {
    /// The invoice row to write; `None` keeps the stored one.
    pub invoice: Option<InvoiceStatus>,
    pub payment: Payment,
}

/// `invoice.*`: the invoice row (newer and never back from a final state) and the payment
/// outcome's effect on the tenant's current subscription.
pub fn invoice(
    kind: EventKind,
    stripe_status: Option<&str>,
    invoice_subscription: Option<&str>,
    created: DateTime<Utc>,
    existing: Option<&StoredInvoice>,
    stored: Option<&Stored>,
) -> Result<InvoiceDecision, Ignore> {
    if existing.is_some_and(|e| !e.same_tenant) {
        return Err(Ignore::InvoiceOfAnotherCustomer);
    }
    let status = invoice_status(kind, stripe_status);
    let keep = existing.is_some_and(|e| {
        stale(e.stripe_updated_at, created) || (is_final(e.status) && !is_final(status))
    });
    let invoice = (!keep).then_some(status);
    let payment = match stored {
        Some(s) => payment(kind, invoice_subscription, created, s),
        None => Payment::Nothing,
    };
    Ok(InvoiceDecision { invoice, payment })
}

fn payment(
    kind: EventKind,
    invoice_subscription: Option<&str>,
    created: DateTime<Utc>,
    s: &Stored,
) -> Payment {
    let other_subscription = match (invoice_subscription, s.stripe_subscription_id.as_deref()) {
        (Some(a), Some(b)) => a != b,
        _ => false,
    };
    if !kind.is_payment_outcome()
        || stale(s.stripe_updated_at, created)
        || stale(s.payment_updated_at, created)
        || other_subscription
    {
        return Payment::Nothing;
    }
    let outcome = if kind == EventKind::InvoicePaymentFailed {
        PaymentOutcome::Failed
    } else {
        PaymentOutcome::Paid
    };
    match after_payment(outcome, s.status) {
        None => Payment::Stamp(outcome),
        Some(status) => Payment::Set {
            outcome,
            status,
            grace_period_end: match status {
                SubscriptionStatus::PastDue => s
                    .grace_period_end
                    .or(created.checked_add_signed(Duration::days(GRACE_PERIOD_DAYS))),
                _ => None,
            },
        },
    }
}

impl Stored {
    /// The stored state after a mirrored subscription state (for the out-of-order tests and
    /// for callers that chain decisions).
    pub fn mirrored(&self, subscription_id: &str, m: &Mirror, at: DateTime<Utc>) -> Stored {
        Stored {
            status: m.status,
            stripe_subscription_id: Some(subscription_id.to_owned()),
            grace_period_end: m.grace_period_end,
            stripe_updated_at: Some(at),
            payment_updated_at: self.payment_updated_at,
            last_payment: self.last_payment,
        }
    }

    /// The stored state after a payment decision.
    pub fn paid(&self, p: &Payment, at: DateTime<Utc>) -> Stored {
        let mut next = self.clone();
        match p {
            Payment::Nothing => {}
            Payment::Stamp(outcome) => {
                next.payment_updated_at = Some(at);
                next.last_payment = Some(*outcome);
            }
            Payment::Set {
                outcome,
                status,
                grace_period_end,
            } => {
                next.status = *status;
                next.grace_period_end = *grace_period_end;
                next.payment_updated_at = Some(at);
                next.last_payment = Some(*outcome);
            }
        }
        next
    }
}

#[cfg(test)]
#[path = "decide_tests.rs"]
mod tests;
