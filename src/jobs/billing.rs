//! The billing jobs' SQL: trial expiry, grace-period suspension and intent expiry run inside
//! the job's transaction (platform scope) with one SYSTEM audit entry per change; the
//! trial-ending notice writes its outbox events in that transaction too.

use chrono::{DateTime, Utc};
use diesel::sql_types::{Integer, Text, Timestamptz, Uuid as SqlUuid};
use diesel_async::RunQueryDsl;
use serde_json::json;

use crate::audit;
use crate::auth::Actor;
use crate::billing::plan_apply::downgrade_to_free;
use crate::db::Conn;
use crate::error::AppResult;
use crate::ids::TenantId;
use crate::notifications::outbox::{self, EventType};
use crate::tenants;
use crate::tenants::lifecycle::{self, Transition};

#[derive(diesel::QueryableByName)]
struct Changed {
    #[diesel(sql_type = SqlUuid)]
    tenant_id: TenantId,
    #[diesel(sql_type = Text)]
    entity_id: String,
}

async fn audit_each(
    c: &mut Conn,
    actor: &Actor,
    rows: &[Changed],
    entity_type: &str,
    action: &str,
    before: serde_json::Value,
    after: serde_json::Value,
) -> AppResult<()> {
    for r in rows {
        audit::record(
            c,
            actor,
            audit::Change {
                tenant_id: Some(r.tenant_id),
                entity_type,
                entity_id: r.entity_id.clone(),
                action,
                before: before.clone(),
                after: after.clone(),
                metadata: json!({ "job": true }),
            },
        )
        .await?;
    }
    Ok(())
}

/// Trials without a Stripe subscription end as EXPIRED (Stripe runs its own trials), and the
/// tenant falls back to the free plan: the trial's paid entitlements end with it.
pub async fn trial_expiry(c: &mut Conn, actor: &Actor) -> AppResult<Vec<TenantId>> {
    let rows: Vec<Changed> = diesel::sql_query(
        "update billing_subscriptions set status = 'EXPIRED', updated_at = now()
          where status = 'TRIALING' and trial_end < now() and stripe_subscription_id is null
         returning tenant_id, tenant_id::text as entity_id",
    )
    .load(c)
    .await?;
    audit_each(
        c,
        actor,
        &rows,
        "subscription",
        "TRIAL_EXPIRED",
        json!({ "status": "TRIALING" }),
        json!({ "status": "EXPIRED" }),
    )
    .await?;
    for r in &rows {
        if let Some(tenant) = tenants::store::find_for_update(c, r.tenant_id).await? {
            downgrade_to_free(c, actor, &tenant, Utc::now()).await?;
        }
    }
    Ok(rows.into_iter().map(|r| r.tenant_id).collect())
}

#[derive(diesel::QueryableByName)]
struct Ending {
    #[diesel(sql_type = SqlUuid)]
    tenant_id: TenantId,
    #[diesel(sql_type = Timestamptz)]
    trial_end: DateTime<Utc>,
    #[diesel(sql_type = Text)]
    plan: String,
}

/// How long before its end a trial is told it ends (SPEC §12: 3 days).
pub const TRIAL_ENDING_NOTICE_DAYS: i32 = 3;

/// `subscription.trial_ending` for every trial (ours or Stripe's) ending within 3 days that
/// was not told yet, marked told (`trial_ending_notified_for` = the end told) by the statement
/// that finds it, so an event exists once per trial end: a new or extended trial is told
/// again. Deleted tenants are not told.
pub async fn trial_ending(c: &mut Conn) -> AppResult<u64> {
    let rows: Vec<Ending> = diesel::sql_query(
        "update billing_subscriptions s set trial_ending_notified_for = s.trial_end
           from tenants t, plans p
          where t.id = s.tenant_id and p.id = s.plan_id and t.deleted_at is null
            and s.status = 'TRIALING' and s.trial_end > now()
            and s.trial_end <= now() + make_interval(days => $1)
            and s.trial_ending_notified_for is distinct from s.trial_end
         returning s.tenant_id, s.trial_end, p.slug as plan",
    )
    .bind::<Integer, _>(TRIAL_ENDING_NOTICE_DAYS)
    .load(c)
    .await?;
    for r in &rows {
        let data = json!({ "trialEnd": r.trial_end, "plan": r.plan });
        outbox::emit(c, r.tenant_id, EventType::TrialEnding, data).await?;
    }
    Ok(rows.len() as u64)
}

/// PAST_DUE (or UNPAID) past the grace period: the tenant is suspended (a later payment lifts
/// it), through the one status transition every cause uses.
pub async fn grace_suspension(c: &mut Conn, actor: &Actor) -> AppResult<Vec<TenantId>> {
    // Locks the candidates; a payment committing meanwhile is seen (the condition is checked
    // again on the newest row version before the lock is granted).
    let due: Vec<Changed> = diesel::sql_query(
        "select t.id as tenant_id, t.id::text as entity_id
           from tenants t join billing_subscriptions s on s.tenant_id = t.id
          where s.status in ('PAST_DUE', 'UNPAID') and s.grace_period_end < now() and t.status = 'ACTIVE'
          order by t.id
          for update of t, s",
    )
    .load(c)
    .await?;
    let mut suspended = Vec::with_capacity(due.len());
    for r in due {
        let Some(tenant) = tenants::store::find(c, r.tenant_id).await? else {
            continue;
        };
        let cause = Transition::SuspendForNonpayment;
        if lifecycle::apply(c, actor, &tenant, cause, json!({ "job": true }))
            .await?
            .is_some()
        {
            suspended.push(tenant.id);
        }
    }
    Ok(suspended)
}

/// PENDING intents past their 24 h become EXPIRED (version bumped like every intent update).
pub async fn intent_expiry(c: &mut Conn, actor: &Actor) -> AppResult<u64> {
    let rows: Vec<Changed> = diesel::sql_query(
        "update plan_change_intents set status = 'EXPIRED', version = version + 1, updated_at = now()
          where status = 'PENDING' and expires_at < now()
         returning tenant_id, id::text as entity_id",
    )
    .load(c)
    .await?;
    audit_each(
        c,
        actor,
        &rows,
        "plan_change_intent",
        "EXPIRE",
        json!({ "status": "PENDING" }),
        json!({ "status": "EXPIRED" }),
    )
    .await?;
    Ok(rows.len() as u64)
}
