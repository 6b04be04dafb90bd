//! Billing services on the subscription itself: the billing mode, cancel/resume (LOCAL, or
//! through Stripe with its answer mirrored at once) and platform admins' maintenance override.
//! Plan changes are in `plan_change`, Checkout in `checkout`, previews in `preview`, and the
//! plan switch they all share in `plan_apply`.

use chrono::{DateTime, Utc};
use scoped_futures::ScopedFutureExt;
use serde_json::json;
use uuid::Uuid;

use super::apply;
use super::decide::is_live;
use super::model::{BillingMode, SubscriptionRow, SubscriptionStatus};
use super::payments::{Payments, SubscriptionState};
use super::plan_apply::downgrade_to_free;
use super::store::{self, SubscriptionChanges};
use crate::app::App;
use crate::audit;
use crate::auth::{Actor, Role};
use crate::db::Db;
use crate::error::{AppError, AppResult};
use crate::ids::TenantId;
use crate::tenants::lifecycle::lock_live;
use crate::tenants::service::target_scope;

pub fn mode(app: &App) -> BillingMode {
    if app.settings.billing_live() {
        BillingMode::Stripe
    } else {
        BillingMode::Local
    }
}

/// The tenant's subscription mirror, read in the caller's scope.
async fn subscription_row(
    db: &Db,
    actor: &Actor,
    tenant_id: TenantId,
) -> AppResult<SubscriptionRow> {
    let scope = target_scope(actor, tenant_id, "billing")?;
    db.scoped(scope, |c| {
        async move {
            store::subscriptions_of(c, &[tenant_id])
                .await?
                .pop()
                .ok_or_else(|| AppError::not_found("subscription"))
        }
        .scope_boxed()
    })
    .await
}

/// Mirrors the subscription Stripe answered our call with, at once (stamped now, so events
/// Stripe sent before the call cannot undo it): plan, period, flags, status. The caller
/// drops caches after it returns.
async fn mirror_answer(
    db: &Db,
    actor: &Actor,
    tenant_id: TenantId,
    action: &'static str,
    state: SubscriptionState,
) -> AppResult<SubscriptionRow> {
    let scope = target_scope(actor, tenant_id, "billing")?;
    let actor_c = actor.clone();
    db.scoped(scope, |c| {
        async move {
            let tenant = lock_live(c, tenant_id).await?;
            let before = store::subscription_with_version(c, tenant_id)
                .await?
                .ok_or_else(|| AppError::not_found("subscription"))?;
            let ended = state.status == "canceled";
            // Whole seconds, like the `created` of the events Stripe sends after this call.
            let at = chrono::SubsecRound::trunc_subsecs(Utc::now(), 0);
            apply::mirror(c, &actor_c, &tenant, &before, &state, ended, at, action).await
        }
        .scope_boxed()
    })
    .await
}

/// A change of the subscription made by the provider.
#[derive(Clone, Copy)]
enum ProviderCall {
    Cancel { at_period_end: bool },
    Resume,
}

/// Cancel or resume through the provider, its answer mirrored at once; `None` when the
/// tenant has no provider subscription (LOCAL, or not subscribed yet).
async fn through_provider(
    db: &Db,
    api: &dyn Payments,
    actor: &Actor,
    tenant_id: TenantId,
    (call, check): (ProviderCall, impl Fn(&SubscriptionRow) -> AppResult<()>),
) -> AppResult<Option<SubscriptionRow>> {
    let row = subscription_row(db, actor, tenant_id).await?;
    let Some(sub_id) = row.stripe_subscription_id.clone() else {
        return Ok(None);
    };
    check(&row)?;
    let key = Uuid::new_v4();
    let (state, action) = match call {
        ProviderCall::Cancel { at_period_end } => {
            (api.cancel(&sub_id, at_period_end, key).await?, "CANCEL")
        }
        ProviderCall::Resume => (api.resume(&sub_id, key).await?, "RESUME"),
    };
    mirror_answer(db, actor, tenant_id, action, state)
        .await
        .map(Some)
}

/// `cancelSubscription`: at period end (default) or at once.
pub async fn cancel(
    app: &App,
    actor: &Actor,
    tenant_id: TenantId,
    at_period_end: bool,
) -> AppResult<SubscriptionRow> {
    actor.require(Role::TenantAdmin)?;
    let check = |s: &SubscriptionRow| {
        if s.status == SubscriptionStatus::Canceled {
            return Err(AppError::conflict(
                None,
                "the subscription is already canceled",
            ));
        }
        Ok(())
    };
    if let Some(api) = app.payments.as_deref() {
        let how = (ProviderCall::Cancel { at_period_end }, check);
        if let Some(row) = through_provider(&app.db, api, actor, tenant_id, how).await? {
            app.tenant_changed(tenant_id).await;
            return Ok(row);
        }
    }
    change_subscription(app, actor, tenant_id, "CANCEL", move |s, now| {
        check(s)?;
        Ok(if at_period_end {
            SubscriptionChanges {
                cancel_at_period_end: Some(true),
                ..Default::default()
            }
        } else {
            SubscriptionChanges {
                status: Some(SubscriptionStatus::Canceled),
                canceled_at: Some(Some(now)),
                cancel_at_period_end: Some(false),
                current_period_end: Some(Some(now)),
                ..Default::default()
            }
        })
    })
    .await
}

/// `resumeSubscription`: undoes a cancellation scheduled for the period end.
pub async fn resume(app: &App, actor: &Actor, tenant_id: TenantId) -> AppResult<SubscriptionRow> {
    actor.require(Role::TenantAdmin)?;
    let check = |s: &SubscriptionRow| {
        if !s.cancel_at_period_end || s.status == SubscriptionStatus::Canceled {
            return Err(AppError::conflict(None, "no cancellation is scheduled"));
        }
        Ok(())
    };
    if let Some(api) = app.payments.as_deref() {
        let how = (ProviderCall::Resume, check);
        if let Some(row) = through_provider(&app.db, api, actor, tenant_id, how).await? {
            app.tenant_changed(tenant_id).await;
            return Ok(row);
        }
    }
    change_subscription(app, actor, tenant_id, "RESUME", move |s, _| {
        check(s)?;
        Ok(SubscriptionChanges {
            cancel_at_period_end: Some(false),
            ..Default::default()
        })
    })
    .await
}

async fn change_subscription(
    app: &App,
    actor: &Actor,
    tenant_id: TenantId,
    action: &'static str,
    decide: impl FnOnce(&SubscriptionRow, DateTime<Utc>) -> AppResult<SubscriptionChanges>
        + Send
        + 'static,
) -> AppResult<SubscriptionRow> {
    let scope = target_scope(actor, tenant_id, "billing")?;
    let actor_c = actor.clone();
    let after = app
        .db
        .scoped(scope, |c| {
            async move {
                let tenant = lock_live(c, tenant_id).await?;
                let before = store::subscription_for_update(c, tenant_id)
                    .await?
                    .ok_or_else(|| AppError::not_found("subscription"))?;
                let now = Utc::now();
                let mut changes = decide(&before, now)?;
                changes.updated_at = Some(now);
                let mut after = store::update_subscription(c, tenant_id, &changes).await?;
                if after.status == SubscriptionStatus::Canceled
                    && before.status != after.status
                {
                    after = downgrade_to_free(c, &actor_c, &tenant, now).await?.unwrap_or(after);
                }
                let view = |s: &SubscriptionRow| json!({ "status": s.status, "cancelAtPeriodEnd": s.cancel_at_period_end });
                audit::record(
                    c,
                    &actor_c,
                    audit::Change::new(tenant_id, "subscription", tenant_id, action, view(&before), view(&after)),
                )
                .await?;
                Ok(after)
            }
            .scope_boxed()
        })
        .await?;
    // A cancellation may have moved the tenant to the free plan.
    app.tenant_changed(tenant_id).await;
    Ok(after)
}

/// Platform admins' manual override of a subscription's state, for support incidents. Only in
/// maintenance mode (`ADMIN_MAINTENANCE_MODE=true`), only with a reason and a ticket id, and
/// always audited with both.
pub async fn maintenance_override(
    app: &App,
    actor: &Actor,
    tenant_id: TenantId,
    status: SubscriptionStatus,
    reason: &str,
    ticket_id: &str,
) -> AppResult<SubscriptionRow> {
    actor.require(Role::PlatformAdmin)?;
    if !app.settings.admin_maintenance_mode {
        return Err(AppError::forbidden(
            "subscription overrides are allowed only in maintenance mode (ADMIN_MAINTENANCE_MODE=true)",
        ));
    }
    let (reason, ticket) = (reason.trim().to_owned(), ticket_id.trim().to_owned());
    if reason.is_empty() || reason.len() > 500 {
        return Err(AppError::bad_input(
            "reason",
            "a reason (1-500 characters) is required",
        ));
    }
    if ticket.is_empty() || ticket.len() > 100 {
        return Err(AppError::bad_input(
            "ticketId",
            "a ticket id (1-100 characters) is required",
        ));
    }
    let actor_c = actor.clone();
    let after = app
        .db
        .scoped(crate::db::Scope::Platform("maintenance_override"), |c| {
            async move {
                let tenant = lock_live(c, tenant_id).await?;
                let before = store::subscription_for_update(c, tenant_id)
                    .await?
                    .ok_or_else(|| AppError::not_found("subscription"))?;
                let now = Utc::now();
                let changes = SubscriptionChanges {
                    status: Some(status),
                    updated_at: Some(now),
                    ..Default::default()
                };
                let mut after = store::update_subscription(c, tenant_id, &changes).await?;
                // An ended subscription ends its paid plan, whoever ended it.
                if !is_live(after.status) && is_live(before.status) {
                    after = downgrade_to_free(c, &actor_c, &tenant, now)
                        .await?
                        .unwrap_or(after);
                }
                audit::record(
                    c,
                    &actor_c,
                    audit::Change::new(
                        tenant_id,
                        "subscription",
                        tenant_id,
                        "OVERRIDE",
                        json!({ "status": before.status }),
                        json!({ "status": after.status }),
                    )
                    .with_metadata(
                        json!({ "reason": reason, "ticketId": ticket, "maintenanceMode": true }),
                    ),
                )
                .await?;
                Ok(after)
            }
            .scope_boxed()
        })
        .await?;
    app.tenant_changed(tenant_id).await;
    Ok(after)
}
