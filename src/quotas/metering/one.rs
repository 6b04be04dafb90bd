//! The one-by-one path: each increment is one conditional `UPDATE` holding the row lock
//! (HARD refuses past the limit, SOFT past its cap), its record and its alerts. An increment
//! with an idempotency key runs under a savepoint, so a key claimed concurrently by another
//! instance steps back without failing the batch.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Nullable, Text, Timestamptz, Uuid as SqlUuid};
use diesel_async::{AnsiTransactionManager, RunQueryDsl, TransactionManager};
use uuid::Uuid;

use super::{crosses, key_reused, ItemResult, Locked, UsageOutcome, UsageRequest};
use crate::bus::AlertEvent;
use crate::db::Conn;
use crate::error::{AppError, AppResult};

#[derive(QueryableByName)]
struct Prior {
    #[diesel(sql_type = BigInt)]
    used_after: i64,
    #[diesel(sql_type = BigInt)]
    limit_at: i64,
    #[diesel(sql_type = Text)]
    resource: String,
}

#[derive(QueryableByName)]
struct Current {
    #[diesel(sql_type = BigInt)]
    used: i64,
    #[diesel(sql_type = BigInt)]
    limit: i64,
}

async fn prior_answer(
    conn: &mut Conn,
    r: &UsageRequest,
    key: &str,
) -> QueryResult<Option<UsageOutcome>> {
    let prior: Option<Prior> = diesel::sql_query(
        "select used_after, limit_at, resource from usage_records
          where tenant_id = $1 and idempotency_key = $2",
    )
    .bind::<SqlUuid, _>(r.tenant_id)
    .bind::<Text, _>(key)
    .get_result(conn)
    .await
    .optional()?;
    Ok(prior.map(|p| UsageOutcome::new(&p.resource, p.used_after, p.limit_at, true)))
}

/// Records one increment inside the batch transaction. Outer `Err` = database failure (fails
/// the batch); inner `Err` = this item's refusal.
pub(super) async fn record_one(
    conn: &mut Conn,
    r: &UsageRequest,
    now: DateTime<Utc>,
) -> QueryResult<ItemResult> {
    if let Some(key) = &r.idempotency_key {
        if let Some(first) = prior_answer(conn, r, key).await? {
            if first.resource != r.resource {
                return Ok(Err(key_reused(&first.resource)));
            }
            return Ok(Ok((first, vec![])));
        }
        // Another instance may claim the same key concurrently: a savepoint lets this item
        // step back without failing the batch.
        AnsiTransactionManager::begin_transaction(conn).await?;
        let res = increment(conn, r, now).await;
        match res {
            Ok(Ok((outcome, alerts, true))) => {
                AnsiTransactionManager::commit_transaction(conn).await?;
                Ok(Ok((outcome, alerts)))
            }
            Ok(Ok((_, _, false))) => {
                AnsiTransactionManager::rollback_transaction(conn).await?;
                let first = prior_answer(conn, r, key).await?;
                Ok(match first {
                    Some(f) if f.resource != r.resource => Err(key_reused(&f.resource)),
                    Some(f) => Ok((f, vec![])),
                    None => Err(AppError::conflict(Some("idempotencyKey"), "retry")),
                })
            }
            Ok(Err(refused)) => {
                AnsiTransactionManager::rollback_transaction(conn).await?;
                Ok(Err(refused))
            }
            Err(e) => {
                let _ = AnsiTransactionManager::rollback_transaction(conn).await;
                Err(e)
            }
        }
    } else {
        Ok(increment(conn, r, now).await?.map(|(o, a, _)| (o, a)))
    }
}

/// The conditional increment, the record and the alerts. The bool is false when the
/// idempotency key turned out to be taken (the caller rolls back to its savepoint).
async fn increment(
    conn: &mut Conn,
    r: &UsageRequest,
    now: DateTime<Utc>,
) -> QueryResult<AppResult<(UsageOutcome, Vec<AlertEvent>, bool)>> {
    // A new period starts from zero in the same statement; HARD refuses past the limit.
    let row: Option<Locked> = diesel::sql_query(concat!(
        r#"update quotas q set
               used = (case when q.period_start < app_period_start(q.reset_period, $4) then 0 else q.used end) + $3,
               period_start = greatest(q.period_start, app_period_start(q.reset_period, $4)),
               updated_at = $4
            where q.tenant_id = $1 and q.resource = $2
              and (case when q.period_start < app_period_start(q.reset_period, $4) then 0 else q.used end) + $3 <= "#,
        usage_cap_sql!("q", "$5"),
        r#"
            returning q.used, q."limit", q.period_start, q.alert_thresholds, q.enforcement, 0::bigint as cap"#,
    ))
    .bind::<SqlUuid, _>(r.tenant_id)
    .bind::<Text, _>(&r.resource)
    .bind::<BigInt, _>(r.amount)
    .bind::<Timestamptz, _>(now)
    .bind::<diesel::sql_types::Bool, _>(r.soft_overage)
    .get_result(conn)
    .await
    .optional()?;

    let Some(q) = row else {
        let current: Option<Current> = diesel::sql_query(
            r#"select (case when period_start < app_period_start(reset_period, $3) then 0 else used end) as used,
                      "limit" from quotas where tenant_id = $1 and resource = $2"#,
        )
        .bind::<SqlUuid, _>(r.tenant_id)
        .bind::<Text, _>(&r.resource)
        .bind::<Timestamptz, _>(now)
        .get_result(conn)
        .await
        .optional()?;
        return Ok(Err(match current {
            None => AppError::NotFound(format!("no quota for resource {:?}", r.resource)),
            Some(c) => AppError::QuotaExceeded {
                resource: r.resource.clone(),
                limit: c.limit,
                used: c.used,
                remaining: (c.limit - c.used).max(0),
            },
        }));
    };

    let inserted: Option<i64> = diesel::sql_query(
        "insert into usage_records (tenant_id, resource, amount, period_start, idempotency_key, used_after, limit_at, recorded_at)
         values ($1, $2, $3, $4, $5, $6, $7, $8)
         on conflict (tenant_id, idempotency_key) where idempotency_key is not null do nothing
         returning id",
    )
    .bind::<SqlUuid, _>(r.tenant_id)
    .bind::<Text, _>(&r.resource)
    .bind::<BigInt, _>(r.amount)
    .bind::<Timestamptz, _>(q.period_start)
    .bind::<Nullable<Text>, _>(r.idempotency_key.as_deref())
    .bind::<BigInt, _>(q.used)
    .bind::<BigInt, _>(q.limit)
    .bind::<Timestamptz, _>(now)
    .get_result::<RecordId>(conn)
    .await
    .optional()?
    .map(|r| r.id);
    let outcome = UsageOutcome::new(&r.resource, q.used, q.limit, false);
    if inserted.is_none() {
        return Ok(Ok((outcome, vec![], false)));
    }

    let before = q.used - r.amount;
    let crossed: Vec<i32> = q
        .alert_thresholds
        .iter()
        .copied()
        .filter(|t| crosses(before, q.used, q.limit, *t))
        .collect();
    let mut alerts = Vec::new();
    for threshold in crossed {
        let id = Uuid::now_v7();
        // The alert and its `quota.threshold_reached` outbox event in one statement.
        let n = diesel::sql_query(format!(
            r#"with a as (
               insert into quota_alerts (tenant_id, id, resource, threshold, used, "limit", period_start, created_at)
               values ($1, $2, $3, $4, $5, $6, $7, $8)
               on conflict (tenant_id, resource, period_start, threshold) do nothing
               returning *)
               {}"#,
            crate::notifications::outbox::QUOTA_EVENTS_FROM_ALERTS
        ))
        .bind::<SqlUuid, _>(r.tenant_id)
        .bind::<SqlUuid, _>(id)
        .bind::<Text, _>(&r.resource)
        .bind::<diesel::sql_types::Int4, _>(threshold)
        .bind::<BigInt, _>(q.used)
        .bind::<BigInt, _>(q.limit)
        .bind::<Timestamptz, _>(q.period_start)
        .bind::<Timestamptz, _>(now)
        .execute(conn)
        .await?;
        if n == 1 {
            alerts.push(AlertEvent {
                id,
                tenant_id: r.tenant_id,
                resource: r.resource.clone(),
                threshold,
                used: q.used,
                limit: q.limit,
                period_start: q.period_start,
                created_at: now,
            });
        }
    }
    Ok(Ok((outcome, alerts, true)))
}

#[derive(QueryableByName)]
struct RecordId {
    #[diesel(sql_type = BigInt)]
    id: i64,
}
