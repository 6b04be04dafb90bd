//! The billing jobs' SQL: trial expiry, grace-period suspension and intent expiry run inside
//! the job's transaction (platform scope) with one SYSTEM audit entry per change.

use chrono::Utc;
use diesel::sql_types::{Text, Uuid as SqlUuid};
use diesel_async::RunQueryDsl;
use serde_json::json;

use crate::audit;
use crate::auth::Actor;
use crate::billing::plan_apply::downgrade_to_free;
use crate::db::Conn;
use crate::error::AppResult;
use crate::ids::TenantId;
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
