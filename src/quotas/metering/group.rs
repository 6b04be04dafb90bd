//! The set-based path: the increments of one (tenant, resource) decided in memory against
//! the locked quota row, then written with one statement per table.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Nullable, Text, Timestamptz, Uuid as SqlUuid};
use diesel_async::RunQueryDsl;
use uuid::Uuid;

use super::{add_hourly, crosses, key_reused, ItemResult, Locked, UsageOutcome, UsageRequest};
use crate::bus::AlertEvent;
use crate::db::Conn;
use crate::error::{AppError, AppResult};
use crate::ids::TenantId;
use crate::quotas::model::QuotaEnforcement;

#[derive(QueryableByName)]
struct PriorKeyed {
    #[diesel(sql_type = Text)]
    key: String,
    #[diesel(sql_type = Text)]
    resource: String,
    #[diesel(sql_type = BigInt)]
    used_after: i64,
    #[diesel(sql_type = BigInt)]
    limit_at: i64,
}

#[derive(QueryableByName)]
struct Threshold {
    #[diesel(sql_type = diesel::sql_types::Int4)]
    threshold: i32,
}

/// The increments of one (tenant, resource) in one go: lock the quota row once, decide every
/// item in arrival order, then one UPDATE, one multi-row INSERT of records, one hourly upsert
/// and one alerts INSERT. Fails (so the caller falls back to one-by-one) if another instance
/// claimed one of the idempotency keys meanwhile.
pub(super) async fn record_group(
    conn: &mut Conn,
    tenant: TenantId,
    resource: &str,
    requests: &[UsageRequest],
    idx: &[usize],
    now: DateTime<Utc>,
) -> AppResult<Vec<(usize, ItemResult)>> {
    use diesel::sql_types::{Array, Int4};
    let keys: Vec<String> = idx
        .iter()
        .filter_map(|&i| requests[i].idempotency_key.clone())
        .collect();
    let mut answered: HashMap<String, UsageOutcome> = HashMap::new();
    if !keys.is_empty() {
        let prior: Vec<PriorKeyed> = diesel::sql_query(
            "select idempotency_key as key, resource, used_after, limit_at from usage_records
              where tenant_id = $1 and idempotency_key = any($2)",
        )
        .bind::<SqlUuid, _>(tenant)
        .bind::<Array<Text>, _>(&keys)
        .load(conn)
        .await?;
        for p in prior {
            answered.insert(
                p.key,
                UsageOutcome::new(&p.resource, p.used_after, p.limit_at, true),
            );
        }
    }
    let quota: Option<Locked> = diesel::sql_query(concat!(
        r#"select (case when q.period_start < app_period_start(q.reset_period, $3) then 0 else q.used end) as used,
                  q."limit", greatest(q.period_start, app_period_start(q.reset_period, $3)) as period_start,
                  q.alert_thresholds, q.enforcement, "#,
        usage_cap_sql!("q", "true"),
        r#" as cap
             from quotas q where q.tenant_id = $1 and q.resource = $2 for update of q"#,
    ))
    .bind::<SqlUuid, _>(tenant)
    .bind::<Text, _>(resource)
    .bind::<Timestamptz, _>(now)
    .get_result(conn)
    .await
    .optional()?;
    let Some(q) = quota else {
        return Ok(idx
            .iter()
            .map(|&i| {
                (
                    i,
                    Err(AppError::NotFound(format!(
                        "no quota for resource {resource:?}"
                    ))),
                )
            })
            .collect());
    };

    let hard = q.enforcement != QuotaEnforcement::Soft;
    let mut used = q.used;
    let mut out = Vec::with_capacity(idx.len());
    let (mut amounts, mut rec_keys, mut afters) = (Vec::new(), Vec::new(), Vec::new());
    let mut crossings: Vec<(i32, i64)> = Vec::new();
    for &i in idx {
        let r = &requests[i];
        if let Some(first) = r.idempotency_key.as_ref().and_then(|k| answered.get(k)) {
            if first.resource != resource {
                out.push((i, Err(key_reused(&first.resource))));
            } else {
                out.push((i, Ok((first.clone(), vec![]))));
            }
            continue;
        }
        let after = used.saturating_add(r.amount);
        let cap = if hard || !r.soft_overage {
            q.limit
        } else {
            q.cap
        };
        if after > cap {
            let refused = AppError::QuotaExceeded {
                resource: resource.to_owned(),
                limit: q.limit,
                used,
                remaining: (q.limit - used).max(0),
            };
            out.push((i, Err(refused)));
            continue;
        }
        for t in &q.alert_thresholds {
            if crosses(used, after, q.limit, *t) {
                crossings.push((*t, after));
            }
        }
        used = after;
        let outcome = UsageOutcome::new(resource, used, q.limit, false);
        if let Some(k) = &r.idempotency_key {
            answered.insert(
                k.clone(),
                UsageOutcome {
                    duplicate: true,
                    ..outcome.clone()
                },
            );
        }
        amounts.push(r.amount);
        rec_keys.push(r.idempotency_key.clone());
        afters.push(used);
        out.push((i, Ok((outcome, vec![]))));
    }
    if amounts.is_empty() {
        return Ok(out);
    }

    diesel::sql_query("update quotas set used = $3, period_start = $4, updated_at = $5 where tenant_id = $1 and resource = $2")
        .bind::<SqlUuid, _>(tenant)
        .bind::<Text, _>(resource)
        .bind::<BigInt, _>(used)
        .bind::<Timestamptz, _>(q.period_start)
        .bind::<Timestamptz, _>(now)
        .execute(conn)
        .await?;
    let inserted = diesel::sql_query(
        "insert into usage_records (tenant_id, resource, amount, period_start, idempotency_key, used_after, limit_at, recorded_at)
         select $1, $2, x.amount, $3, x.key, x.after, $4, $5
           from unnest($6::bigint[], $7::text[], $8::bigint[]) as x(amount, key, after)
         on conflict (tenant_id, idempotency_key) where idempotency_key is not null do nothing",
    )
    .bind::<SqlUuid, _>(tenant)
    .bind::<Text, _>(resource)
    .bind::<Timestamptz, _>(q.period_start)
    .bind::<BigInt, _>(q.limit)
    .bind::<Timestamptz, _>(now)
    .bind::<Array<BigInt>, _>(&amounts)
    .bind::<Array<Nullable<Text>>, _>(&rec_keys)
    .bind::<Array<BigInt>, _>(&afters)
    .execute(conn)
    .await?;
    if inserted != amounts.len() {
        return Err(AppError::conflict(
            Some("idempotencyKey"),
            "an idempotency key was claimed concurrently",
        ));
    }
    add_hourly(conn, tenant, resource, now, amounts.iter().sum()).await?;

    if !crossings.is_empty() {
        let ids: Vec<Uuid> = crossings.iter().map(|_| Uuid::now_v7()).collect();
        let thresholds: Vec<i32> = crossings.iter().map(|c| c.0).collect();
        let useds: Vec<i64> = crossings.iter().map(|c| c.1).collect();
        let fired: Vec<Threshold> = diesel::sql_query(
            r#"insert into quota_alerts (tenant_id, id, resource, threshold, used, "limit", period_start, created_at)
               select $1, x.id, $2, x.threshold, x.used, $3, $4, $5
                 from unnest($6::uuid[], $7::int[], $8::bigint[]) as x(id, threshold, used)
               on conflict (tenant_id, resource, period_start, threshold) do nothing
               returning threshold"#,
        )
        .bind::<SqlUuid, _>(tenant)
        .bind::<Text, _>(resource)
        .bind::<BigInt, _>(q.limit)
        .bind::<Timestamptz, _>(q.period_start)
        .bind::<Timestamptz, _>(now)
        .bind::<Array<SqlUuid>, _>(&ids)
        .bind::<Array<Int4>, _>(&thresholds)
        .bind::<Array<BigInt>, _>(&useds)
        .load(conn)
        .await?;
        // Attach each fired alert to the first accepted item of the group (it is published once).
        let alerts: Vec<AlertEvent> = fired
            .into_iter()
            .filter_map(|f| {
                crossings
                    .iter()
                    .zip(&ids)
                    .find(|((t, _), _)| *t == f.threshold)
                    .map(|((t, u), id)| (*t, *u, *id))
            })
            .map(|(threshold, used, id)| AlertEvent {
                id,
                tenant_id: tenant,
                resource: resource.to_owned(),
                threshold,
                used,
                limit: q.limit,
                period_start: q.period_start,
                created_at: now,
            })
            .collect();
        if let Some((_, Ok((_, first_alerts)))) = out
            .iter_mut()
            .find(|(_, r)| matches!(r, Ok((o, _)) if !o.duplicate))
        {
            *first_alerts = alerts;
        }
    }
    Ok(out)
}
