//! The maintenance jobs' SQL. Each runs inside the job's transaction (platform scope).

use diesel::sql_types::Uuid as SqlUuid;
use diesel_async::RunQueryDsl;
use serde_json::json;

use crate::audit;
use crate::auth::Actor;
use crate::db::Conn;
use crate::error::AppResult;
use crate::ids::TenantId;
use crate::tenants::service::RESTORE_WINDOW_DAYS;

pub async fn quota_resets(c: &mut Conn) -> AppResult<u64> {
    let n = diesel::sql_query(
        "update quotas set used = 0, period_start = app_period_start(reset_period, now()), updated_at = now()
          where period_start < app_period_start(reset_period, now())",
    )
    .execute(c)
    .await?;
    Ok(n as u64)
}

#[derive(diesel::QueryableByName)]
struct Purged {
    #[diesel(sql_type = SqlUuid)]
    id: TenantId,
}

/// Hard delete: every tenant-owned row goes with the tenant (foreign keys cascade, the
/// `purge` test checks every table from the catalogue) — except the audit trail, which has no
/// foreign key and is kept for its two years, ending with this job's own PURGE entry (only
/// the id, no personal data).
pub async fn purge_deleted_tenants(c: &mut Conn, actor: &Actor) -> AppResult<Vec<TenantId>> {
    let purged: Vec<Purged> = diesel::sql_query(format!(
        "delete from tenants where status = 'DELETED' and deleted_at < now() - interval '{RESTORE_WINDOW_DAYS} days'
         returning id"
    ))
    .load(c)
    .await?;
    for p in &purged {
        audit::record(
            c,
            actor,
            audit::Change::new(
                p.id,
                "tenant",
                p.id,
                "PURGE",
                serde_json::Value::Null,
                serde_json::Value::Null,
            )
            .with_metadata(json!({ "reason": "deleted more than 30 days ago" })),
        )
        .await?;
    }
    Ok(purged.into_iter().map(|p| p.id).collect())
}

pub async fn idempotency_expiry(c: &mut Conn) -> AppResult<u64> {
    let n = diesel::sql_query(
        "update usage_records set idempotency_key = null
          where idempotency_key is not null and recorded_at < now() - interval '24 hours'",
    )
    .execute(c)
    .await?;
    Ok(n as u64)
}

pub async fn audit_retention(c: &mut Conn) -> AppResult<u64> {
    let n =
        diesel::sql_query("delete from audit_logs where created_at < now() - interval '2 years'")
            .execute(c)
            .await?;
    Ok(n as u64)
}

/// Forgets notification deliveries finished more than 30 days ago, then outbox events
/// dispatched more than 30 days ago that no delivery waits for any more.
pub async fn notification_retention(c: &mut Conn) -> AppResult<u64> {
    let deliveries = diesel::sql_query(
        "delete from notification_deliveries \
          where status <> 'PENDING' and finished_at < now() - interval '30 days'",
    )
    .execute(c)
    .await?;
    let events = diesel::sql_query(
        "delete from notification_outbox o \
          where o.dispatched_at < now() - interval '30 days' \
            and not exists (select 1 from notification_deliveries d \
                             where d.tenant_id = o.tenant_id and d.event_id = o.id)",
    )
    .execute(c)
    .await?;
    Ok((deliveries + events) as u64)
}
