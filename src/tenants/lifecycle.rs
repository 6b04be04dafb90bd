//! The one place a tenant's status changes, for every cause: a platform admin's suspension,
//! reactivation, deletion and restore; the grace-period job's suspension for nonpayment; and
//! the payment that lifts exactly that suspension. [`next`] is the rule (pure); [`apply`]
//! writes the row and its audit entry in the caller's transaction. Callers drop caches
//! (`App::tenant_changed`) after their commit.
//!
//! Also the one "lock the tenant, refuse a deleted one" step ([`lock_live`]).

use chrono::{DateTime, Duration, Utc};
use serde_json::json;
use uuid::Uuid;

use super::model::{TenantRow, TenantStatus};
use super::store::{self, TenantChanges};
use crate::audit;
use crate::auth::Actor;
use crate::db::Conn;
use crate::error::{AppError, AppResult};

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
pub async fn lock_live(c: &mut Conn, tenant_id: Uuid) -> AppResult<TenantRow> {
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
pub async fn lock_writable(c: &mut Conn, actor: &Actor, tenant_id: Uuid) -> AppResult<TenantRow> {
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
    let deleted = status == TenantStatus::Deleted;
    if deleted && *transition != Transition::Restore {
        return Err(AppError::not_found("tenant"));
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

/// Applies `transition` to the locked tenant `t` with its audit entry; `Ok(None)` when it
/// does not apply ([`next`]).
pub async fn apply(
    c: &mut Conn,
    actor: &Actor,
    t: &TenantRow,
    transition: Transition,
    source: &'static str,
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
        .with_metadata(json!({ "source": source })),
    )
    .await?;
    Ok(Some(after))
}
