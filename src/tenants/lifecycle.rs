//! The one place a tenant's status changes, for every cause: a platform admin's suspension,
//! reactivation, deletion and restore; the grace-period job's suspension for nonpayment; and
//! the payment that lifts exactly that suspension. [`next`] is the rule (pure); [`apply`]
//! writes the row and its audit entry in the caller's transaction. Callers drop caches
//! (`App::tenant_changed`) after their commit.
//!
//! Also the one "lock the tenant, refuse a deleted one" step ([`lock_live`]).

use chrono::{DateTime, Duration, Utc};
use serde_json::json;

use super::model::{TenantRow, TenantStatus};
use super::store::{self, TenantChanges};
use crate::audit;
use crate::auth::Actor;
use crate::db::Conn;
use crate::error::{AppError, AppResult};
use crate::ids::TenantId;
use crate::notifications::outbox::{self, EventType};

/// Deleted tenants can be restored for this long; then the purge job removes them.
pub const RESTORE_WINDOW_DAYS: i64 = 30;
/// The suspension reason of the grace-period job; a payment lifts exactly this suspension.
pub const NONPAYMENT_SUSPEND_REASON: &str = "payment overdue: grace period ended";

/// Why a tenant's status changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transition {
    /// A platform admin's suspension, with its reason.
    Suspend(String),
    Reactivate,
    Delete,
    Restore,
    /// The grace period of an unpaid subscription ended.
    SuspendForNonpayment,
    /// Stripe reports the subscription paid: lifts a nonpayment suspension, nothing else.
    PaymentReceived,
}

impl Transition {
    pub fn action(&self) -> &'static str {
        match self {
            Transition::Suspend(_) | Transition::SuspendForNonpayment => "SUSPEND",
            Transition::Reactivate | Transition::PaymentReceived => "REACTIVATE",
            Transition::Delete => "DELETE",
            Transition::Restore => "RESTORE",
        }
    }
}

/// Locks the tenant row for the rest of the transaction; a missing or deleted tenant is
/// NOT_FOUND.
pub async fn lock_live(c: &mut Conn, tenant_id: TenantId) -> AppResult<TenantRow> {
    store::find_for_update(c, tenant_id)
        .await?
        .filter(|t| t.deleted_at.is_none())
        .ok_or_else(|| AppError::not_found("tenant"))
}

/// Tenant users may not change anything while their tenant is suspended (SPEC §3).
pub fn ensure_writable(actor: &Actor, tenant: &TenantRow) -> AppResult<()> {
    if !actor.is_platform() && tenant.status == TenantStatus::Suspended {
        return Err(AppError::TenantSuspended);
    }
    Ok(())
}

/// [`lock_live`], then [`ensure_writable`] for `actor`.
pub async fn lock_writable(
    c: &mut Conn,
    actor: &Actor,
    tenant_id: TenantId,
) -> AppResult<TenantRow> {
    let tenant = lock_live(c, tenant_id).await?;
    ensure_writable(actor, &tenant)?;
    Ok(tenant)
}

/// The change `transition` makes to `t` at `now`: `Ok(None)` when it does not apply and is
/// not an error (a payment for a tenant that is not suspended for nonpayment).
pub fn next(
    t: &TenantRow,
    transition: &Transition,
    now: DateTime<Utc>,
) -> AppResult<Option<TenantChanges>> {
    let status = t.status;
    if status == TenantStatus::Deleted {
        match transition {
            Transition::Restore => {}
            // Stripe may still report on a deleted tenant: nothing to lift, not an error.
            Transition::PaymentReceived => return Ok(None),
            _ => return Err(AppError::not_found("tenant")),
        }
    }
    let to = |s: TenantStatus| TenantChanges {
        status: Some(s),
        updated_at: Some(now),
        ..Default::default()
    };
    let changes = match transition {
        Transition::Suspend(_) | Transition::SuspendForNonpayment
            if status == TenantStatus::Suspended =>
        {
            return Err(AppError::conflict(
                Some("status"),
                "tenant is already suspended",
            ))
        }
        Transition::Suspend(reason) => TenantChanges {
            suspended_at: Some(Some(now)),
            suspend_reason: Some(Some(reason.clone())),
            ..to(TenantStatus::Suspended)
        },
        Transition::SuspendForNonpayment => TenantChanges {
            suspended_at: Some(Some(now)),
            suspend_reason: Some(Some(NONPAYMENT_SUSPEND_REASON.into())),
            ..to(TenantStatus::Suspended)
        },
        Transition::Reactivate if status != TenantStatus::Suspended => {
            return Err(AppError::conflict(
                Some("status"),
                "only a suspended tenant can be reactivated",
            ))
        }
        Transition::PaymentReceived
            if status != TenantStatus::Suspended
                || t.suspend_reason.as_deref() != Some(NONPAYMENT_SUSPEND_REASON) =>
        {
            return Ok(None)
        }
        Transition::Reactivate | Transition::PaymentReceived => TenantChanges {
            suspended_at: Some(None),
            suspend_reason: Some(None),
            ..to(TenantStatus::Active)
        },
        Transition::Delete => TenantChanges {
            deleted_at: Some(Some(now)),
            ..to(TenantStatus::Deleted)
        },
        Transition::Restore => {
            let Some(deleted_at) = t.deleted_at else {
                return Err(AppError::conflict(Some("status"), "tenant is not deleted"));
            };
            if deleted_at < now - Duration::days(RESTORE_WINDOW_DAYS) {
                return Err(AppError::conflict(
                    Some("status"),
                    format!("tenant was deleted more than {RESTORE_WINDOW_DAYS} days ago"),
                ));
            }
            // A tenant deleted while suspended comes back suspended.
            let back = if t.suspended_at.is_some() {
                TenantStatus::Suspended
            } else {
                TenantStatus::Active
            };
            TenantChanges {
                deleted_at: Some(None),
                ..to(back)
            }
        }
    };
    Ok(Some(changes))
}

/// Writes `tenant.suspended` / `tenant.reactivated` to the outbox when a status change from
/// `before` to `after` is one, in the caller's transaction (every path that changes a status
/// calls it: platform admins, the grace-period job, Stripe's payments).
pub async fn notify(c: &mut Conn, before: &TenantRow, after: &TenantRow) -> AppResult<()> {
    let event = match (before.status, after.status) {
        (TenantStatus::Active, TenantStatus::Suspended) => EventType::TenantSuspended,
        (TenantStatus::Suspended, TenantStatus::Active) => EventType::TenantReactivated,
        _ => return Ok(()),
    };
    let data = json!({ "status": after.status, "reason": after.suspend_reason });
    outbox::emit(c, before.id, event, data).await?;
    Ok(())
}

/// Applies `transition` to the locked tenant `t` with its audit entry; `Ok(None)` when it
/// does not apply ([`next`]).
pub async fn apply(
    c: &mut Conn,
    actor: &Actor,
    t: &TenantRow,
    transition: Transition,
    metadata: serde_json::Value,
) -> AppResult<Option<TenantRow>> {
    let Some(changes) = next(t, &transition, Utc::now())? else {
        return Ok(None);
    };
    let after = store::update(c, t.id, &changes).await?;
    audit::record(
        c,
        actor,
        audit::Change::new(
            t.id,
            "tenant",
            t.id,
            transition.action(),
            json!({ "status": t.status, "suspendReason": t.suspend_reason }),
            json!({ "status": after.status, "suspendReason": after.suspend_reason }),
        )
        .with_metadata(metadata),
    )
    .await?;
    notify(c, t, &after).await?;
    Ok(Some(after))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::AppError;

    fn tenant(status: TenantStatus, reason: Option<&str>) -> TenantRow {
        let now = Utc::now();
        TenantRow {
            id: TenantId::from(uuid::Uuid::nil()),
            name: "t".into(),
            slug: "t".into(),
            domain: None,
            status,
            plan_id: crate::ids::PlanId::from(uuid::Uuid::nil()),
            owner_id: None,
            region: "US".into(),
            settings: serde_json::json!({}),
            stripe_customer_id: None,
            created_at: now,
            updated_at: now,
            suspended_at: reason.map(|_| now),
            suspend_reason: reason.map(str::to_owned),
            deleted_at: (status == TenantStatus::Deleted).then_some(now),
        }
    }

    fn to(t: &TenantRow, tr: Transition) -> Result<Option<TenantStatus>, AppError> {
        next(t, &tr, Utc::now()).map(|c| c.and_then(|c| c.status))
    }

    #[test]
    fn every_cause_over_every_status() {
        use TenantStatus::*;
        let active = tenant(Active, None);
        let by_admin = tenant(Suspended, Some("abuse"));
        let unpaid = tenant(Suspended, Some(NONPAYMENT_SUSPEND_REASON));
        let deleted = tenant(Deleted, None);

        assert_eq!(
            to(&active, Transition::Suspend("x".into())).unwrap(),
            Some(Suspended)
        );
        assert_eq!(
            to(&active, Transition::SuspendForNonpayment).unwrap(),
            Some(Suspended)
        );
        assert!(to(&by_admin, Transition::Suspend("y".into())).is_err());
        assert!(to(&active, Transition::Reactivate).is_err());
        assert_eq!(to(&by_admin, Transition::Reactivate).unwrap(), Some(Active));

        // A payment lifts exactly the nonpayment suspension, nothing else.
        assert_eq!(
            to(&unpaid, Transition::PaymentReceived).unwrap(),
            Some(Active)
        );
        assert_eq!(to(&by_admin, Transition::PaymentReceived).unwrap(), None);
        assert_eq!(to(&active, Transition::PaymentReceived).unwrap(), None);
        assert_eq!(to(&deleted, Transition::PaymentReceived).unwrap(), None);

        // A deleted tenant is NOT_FOUND to everything but a restore.
        for tr in [
            Transition::Suspend("x".into()),
            Transition::Reactivate,
            Transition::Delete,
        ] {
            assert!(matches!(to(&deleted, tr), Err(AppError::NotFound(_))));
        }
        assert_eq!(to(&deleted, Transition::Restore).unwrap(), Some(Active));
        let deleted_while_suspended = TenantRow {
            suspended_at: Some(Utc::now()),
            ..deleted.clone()
        };
        assert_eq!(
            to(&deleted_while_suspended, Transition::Restore).unwrap(),
            Some(Suspended)
        );
        let long_gone = TenantRow {
            deleted_at: Some(Utc::now() - Duration::days(RESTORE_WINDOW_DAYS + 1)),
            ..deleted
        };
        assert!(to(&long_gone, Transition::Restore).is_err());
        assert!(to(&active, Transition::Restore).is_err());
    }
}
