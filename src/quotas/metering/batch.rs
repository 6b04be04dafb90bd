//! The set-based path: every increment of a batch, whatever its tenant, in one statement per
//! table. The quota rows of the whole batch are locked by one `SELECT … FOR UPDATE` (in key
//! order, so two transactions never wait on each other in a cycle), the increments of each
//! (tenant, resource) are decided in memory in arrival order against their locked row, then
//! one statement writes the outcome (`UPDATE … FROM unnest(…)` of the quota rows, the
//! multi-row INSERT of records and the hourly upsert as data-modifying CTEs) and, when a
//! threshold is crossed, one alerts INSERT. So a batch costs the same four round trips
//! (scope, lock, write, commit) for 1 tenant as for 256.
//!
//! It runs under the platform scope (`usage_batch`): one statement cannot be confined to one
//! tenant by RLS when it serves several. Every statement names its rows by explicit
//! (tenant, resource) pairs taken from admitted requests (`quotas::service::record_usage`
//! checked the caller may act for that tenant), never by a predicate that could reach further.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Int4, Nullable, Text, Timestamptz, Uuid as SqlUuid};
use diesel_async::RunQueryDsl;
use uuid::Uuid;

use super::{crosses, key_reused, ItemResult, Locked, UsageOutcome, UsageRequest};
use crate::bus::AlertEvent;
use crate::db::{prepared, Conn};
use crate::error::{AppError, AppResult};
use crate::ids::TenantId;
use crate::quotas::model::QuotaEnforcement;

type Key = (TenantId, String);

#[derive(QueryableByName)]
struct PriorKeyed {
    #[diesel(sql_type = SqlUuid)]
    tenant_id: TenantId,
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
struct LockedRow {
    #[diesel(sql_type = SqlUuid)]
    tenant_id: TenantId,
    #[diesel(sql_type = Text)]
    resource: String,
    #[diesel(embed)]
    quota: Locked,
}

#[derive(QueryableByName)]
struct Fired {
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
}

/// What one (tenant, resource) group writes, decided in memory.
#[derive(Default)]
struct GroupWrite {
    used: i64,
    amounts: Vec<i64>,
    keys: Vec<Option<String>>,
    afters: Vec<i64>,
    /// (threshold, used after the increment that crossed it)
    crossings: Vec<(i32, i64)>,
    /// The item the group's alerts are attached to (published once, after the commit).
    first_accepted: Option<usize>,
}

/// The increments `idx` of one (tenant, resource), in arrival order, against its locked row:
/// answers for each item and what to write. `answered` holds the first answers of the
/// idempotency keys seen so far (stored earlier or earlier in this batch).
fn decide(
    q: &Locked,
    resource: &str,
    requests: &[UsageRequest],
    idx: &[usize],
    answered: &mut HashMap<(TenantId, String), UsageOutcome>,
    out: &mut [Option<ItemResult>],
) -> GroupWrite {
    let hard = q.enforcement != QuotaEnforcement::Soft;
    let mut w = GroupWrite {
        used: q.used,
        ..GroupWrite::default()
    };
    for &i in idx {
        let r = &requests[i];
        let key = r.idempotency_key.as_ref().map(|k| (r.tenant_id, k.clone()));
        if let Some(first) = key.as_ref().and_then(|k| answered.get(k)) {
            out[i] = Some(if first.resource != resource {
                Err(key_reused(&first.resource))
            } else {
                Ok((first.clone(), vec![]))
            });
            continue;
        }
        let after = w.used.saturating_add(r.amount);
        let cap = if hard || !r.soft_overage {
            q.limit
        } else {
            q.cap
        };
        if after > cap {
            out[i] = Some(Err(AppError::QuotaExceeded {
                resource: resource.to_owned(),
                limit: q.limit,
                used: w.used,
                remaining: (q.limit - w.used).max(0),
            }));
            continue;
        }
        for t in &q.alert_thresholds {
            if crosses(w.used, after, q.limit, *t) {
                w.crossings.push((*t, after));
            }
        }
        w.used = after;
        let outcome = UsageOutcome::new(resource, w.used, q.limit, false);
        if let Some(k) = key {
            let repeat = UsageOutcome {
                duplicate: true,
                ..outcome.clone()
            };
            answered.insert(k, repeat);
        }
        w.amounts.push(r.amount);
        w.keys.push(r.idempotency_key.clone());
        w.afters.push(w.used);
        w.first_accepted.get_or_insert(i);
        out[i] = Some(Ok((outcome, vec![])));
    }
    w
}

/// Records every increment of `requests` in the current transaction (platform scope). Outer
/// `Err` = a database failure or an idempotency key claimed concurrently by another instance:
/// the caller rolls back and retries one by one. Inner `Err`s are refusals of single items.
pub(super) async fn record_all(
    conn: &mut Conn,
    requests: &[UsageRequest],
    now: DateTime<Utc>,
) -> AppResult<Vec<ItemResult>> {
    let mut out: Vec<Option<ItemResult>> = (0..requests.len()).map(|_| None).collect();
    let mut answered = prior_answers(conn, requests).await?;
    // A key not stored yet belongs to the resource of its first arrival in this batch; a later
    // item with the same key on another resource is refused here, before the groups are
    // decided (in key order, not arrival order).
    let mut first_use: HashMap<(TenantId, &str), &str> = HashMap::new();
    // Groups in key order (the lock order), each keeping its items' arrival order.
    let mut groups: Vec<(Key, Vec<usize>)> = Vec::new();
    let mut slot: HashMap<Key, usize> = HashMap::new();
    for (i, r) in requests.iter().enumerate() {
        if let Some(k) = r.idempotency_key.as_deref() {
            if !answered.contains_key(&(r.tenant_id, k.to_owned())) {
                let first = *first_use.entry((r.tenant_id, k)).or_insert(&r.resource);
                if first != r.resource {
                    out[i] = Some(Err(key_reused(first)));
                    continue;
                }
            }
        }
        let key = (r.tenant_id, r.resource.clone());
        let g = *slot.entry(key.clone()).or_insert_with(|| {
            groups.push((key, Vec::new()));
            groups.len() - 1
        });
        groups[g].1.push(i);
    }
    groups.sort_by(|a, b| a.0.cmp(&b.0));

    let (tenants, resources): (Vec<TenantId>, Vec<String>) =
        groups.iter().map(|(k, _)| k.clone()).unzip();
    let rows: Vec<LockedRow> = prepared(
        diesel::sql_query(concat!(
        r#"select q.tenant_id, q.resource,
                  (case when q.period_start < app_period_start(q.reset_period, $3) then 0 else q.used end) as used,
                  q."limit", greatest(q.period_start, app_period_start(q.reset_period, $3)) as period_start,
                  q.alert_thresholds, q.enforcement, "#,
        usage_cap_sql!("q", "true"),
        r#" as cap
             from quotas q join unnest($1::uuid[], $2::text[]) as k(tenant_id, resource)
               on q.tenant_id = k.tenant_id and q.resource = k.resource
            order by q.tenant_id, q.resource
              for update of q"#,
        ))
        .bind::<Array<SqlUuid>, _>(&tenants)
        .bind::<Array<Text>, _>(&resources)
        .bind::<Timestamptz, _>(now),
    )
    .load(conn)
    .await?;
    let mut locked: HashMap<Key, Locked> = rows
        .into_iter()
        .map(|r| ((r.tenant_id, r.resource), r.quota))
        .collect();

    let mut writes: Vec<(Key, Locked, GroupWrite)> = Vec::new();
    for (key, idx) in &groups {
        let Some(q) = locked.remove(key) else {
            for &i in idx {
                out[i] = Some(Err(AppError::NotFound(format!(
                    "no quota for resource {:?}",
                    key.1
                ))));
            }
            continue;
        };
        let w = decide(&q, &key.1, requests, idx, &mut answered, &mut out);
        if !w.amounts.is_empty() {
            writes.push((key.clone(), q, w));
        }
    }
    if !writes.is_empty() {
        write(conn, &writes, now).await?;
        attach_alerts(conn, &writes, now, &mut out).await?;
    }
    Ok(out
        .into_iter()
        .map(|r| r.expect("every item answered"))
        .collect())
}

/// The stored first answers of the batch's idempotency keys (one query, none without keys).
async fn prior_answers(
    conn: &mut Conn,
    requests: &[UsageRequest],
) -> QueryResult<HashMap<(TenantId, String), UsageOutcome>> {
    let (tenants, keys): (Vec<TenantId>, Vec<String>) = requests
        .iter()
        .filter_map(|r| r.idempotency_key.clone().map(|k| (r.tenant_id, k)))
        .unzip();
    if keys.is_empty() {
        return Ok(HashMap::new());
    }
    let prior: Vec<PriorKeyed> = prepared(
        diesel::sql_query(
            "select u.tenant_id, u.idempotency_key as key, u.resource, u.used_after, u.limit_at
               from usage_records u join unnest($1::uuid[], $2::text[]) as k(tenant_id, key)
                 on u.tenant_id = k.tenant_id and u.idempotency_key = k.key",
        )
        .bind::<Array<SqlUuid>, _>(&tenants)
        .bind::<Array<Text>, _>(&keys),
    )
    .load(conn)
    .await?;
    Ok(prior
        .into_iter()
        .map(|p| {
            let first = UsageOutcome::new(&p.resource, p.used_after, p.limit_at, true);
            ((p.tenant_id, p.key), first)
        })
        .collect())
}

#[derive(QueryableByName)]
struct Inserted {
    #[diesel(sql_type = BigInt)]
    inserted: i64,
}

/// The quota rows, the records and the hourly roll-up of every group: one statement (three
/// data-modifying parts on three tables, one round trip).
async fn write(
    conn: &mut Conn,
    writes: &[(Key, Locked, GroupWrite)],
    now: DateTime<Utc>,
) -> AppResult<()> {
    // Per group: the quota row and the roll-up (groups are in key order, so rows are locked
    // in the same order everywhere).
    let tenants: Vec<TenantId> = writes.iter().map(|(k, _, _)| k.0).collect();
    let resources: Vec<&str> = writes.iter().map(|(k, _, _)| k.1.as_str()).collect();
    let useds: Vec<i64> = writes.iter().map(|(_, _, w)| w.used).collect();
    let periods: Vec<DateTime<Utc>> = writes.iter().map(|(_, q, _)| q.period_start).collect();
    let sums: Vec<i64> = writes
        .iter()
        .map(|(_, _, w)| w.amounts.iter().sum())
        .collect();
    // Per accepted increment: its record.
    let mut rec = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut rec_more = (Vec::new(), Vec::new(), Vec::new());
    for ((tenant, resource), q, w) in writes {
        for ((amount, key), after) in w.amounts.iter().zip(&w.keys).zip(&w.afters) {
            rec.0.push(*tenant);
            rec.1.push(resource.as_str());
            rec.2.push(*amount);
            rec.3.push(q.period_start);
            rec_more.0.push(key.as_deref());
            rec_more.1.push(*after);
            rec_more.2.push(q.limit);
        }
    }
    let write = diesel::sql_query(
        "with quota as (
           update quotas q set used = x.used, period_start = x.period_start, updated_at = $1
             from unnest($2::uuid[], $3::text[], $4::bigint[], $5::timestamptz[])
                  as x(tenant_id, resource, used, period_start)
            where q.tenant_id = x.tenant_id and q.resource = x.resource
         ), hourly as (
           insert into usage_hourly (tenant_id, resource, hour_start, amount)
           select x.tenant_id, x.resource, date_trunc('hour', $1, 'UTC'), x.amount
             from unnest($2::uuid[], $3::text[], $6::bigint[]) as x(tenant_id, resource, amount)
           on conflict (tenant_id, resource, hour_start)
             do update set amount = usage_hourly.amount + excluded.amount
         ), records as (
           insert into usage_records (tenant_id, resource, amount, period_start, idempotency_key, used_after, limit_at, recorded_at)
           select x.tenant_id, x.resource, x.amount, x.period_start, x.key, x.after, x.limit_at, $1
             from unnest($7::uuid[], $8::text[], $9::bigint[], $10::timestamptz[], $11::text[], $12::bigint[], $13::bigint[])
                  as x(tenant_id, resource, amount, period_start, key, after, limit_at)
           on conflict (tenant_id, idempotency_key) where idempotency_key is not null do nothing
           returning 1
         )
         select count(*) as inserted from records",
    )
    .bind::<Timestamptz, _>(now)
    .bind::<Array<SqlUuid>, _>(&tenants)
    .bind::<Array<Text>, _>(&resources)
    .bind::<Array<BigInt>, _>(&useds)
    .bind::<Array<Timestamptz>, _>(&periods)
    .bind::<Array<BigInt>, _>(&sums)
    .bind::<Array<SqlUuid>, _>(&rec.0)
    .bind::<Array<Text>, _>(&rec.1)
    .bind::<Array<BigInt>, _>(&rec.2)
    .bind::<Array<Timestamptz>, _>(&rec.3)
    .bind::<Array<Nullable<Text>>, _>(&rec_more.0)
    .bind::<Array<BigInt>, _>(&rec_more.1)
    .bind::<Array<BigInt>, _>(&rec_more.2);
    let Inserted { inserted } = prepared(write).get_result(conn).await?;
    if inserted as usize != rec.0.len() {
        // Another instance claimed one of the keys since `prior_answers`: the whole batch
        // rolls back and is retried one by one, where each key is settled on its own.
        return Err(AppError::conflict(
            Some("idempotencyKey"),
            "an idempotency key was claimed concurrently",
        ));
    }
    Ok(())
}

/// Inserts the crossed thresholds of every group (one statement; each fires once per
/// (tenant, resource, period, threshold) by a unique key) and attaches the ones that fired to
/// their group's first accepted item, to be published after the commit.
async fn attach_alerts(
    conn: &mut Conn,
    writes: &[(Key, Locked, GroupWrite)],
    now: DateTime<Utc>,
    out: &mut [Option<ItemResult>],
) -> AppResult<()> {
    let mut candidates: Vec<(Uuid, usize, AlertEvent)> = Vec::new();
    for ((tenant, resource), q, w) in writes {
        let Some(first) = w.first_accepted else {
            continue;
        };
        for (threshold, used) in &w.crossings {
            let id = Uuid::now_v7();
            let alert = AlertEvent {
                id,
                tenant_id: *tenant,
                resource: resource.clone(),
                threshold: *threshold,
                used: *used,
                limit: q.limit,
                period_start: q.period_start,
                created_at: now,
            };
            candidates.push((id, first, alert));
        }
    }
    if candidates.is_empty() {
        return Ok(());
    }
    let alerts = || candidates.iter().map(|c| &c.2);
    let ids: Vec<Uuid> = candidates.iter().map(|c| c.0).collect();
    let tenants: Vec<TenantId> = alerts().map(|e| e.tenant_id).collect();
    let resources: Vec<&str> = alerts().map(|e| e.resource.as_str()).collect();
    let thresholds: Vec<i32> = alerts().map(|e| e.threshold).collect();
    let useds: Vec<i64> = alerts().map(|e| e.used).collect();
    let limits: Vec<i64> = alerts().map(|e| e.limit).collect();
    let periods: Vec<DateTime<Utc>> = alerts().map(|e| e.period_start).collect();
    // The alert and its `quota.threshold_reached` outbox event in one statement.
    let insert = diesel::sql_query(format!(
        r#"with a as (
           insert into quota_alerts (tenant_id, id, resource, threshold, used, "limit", period_start, created_at)
           select x.tenant_id, x.id, x.resource, x.threshold, x.used, x.lim, x.period_start, $1
             from unnest($2::uuid[], $3::uuid[], $4::text[], $5::int[], $6::bigint[], $7::bigint[], $8::timestamptz[])
                  as x(tenant_id, id, resource, threshold, used, lim, period_start)
           on conflict (tenant_id, resource, period_start, threshold) do nothing
           returning *),
           o as ({})
           select id from a"#,
        crate::notifications::outbox::QUOTA_EVENTS_FROM_ALERTS
    ))
    .bind::<Timestamptz, _>(now)
    .bind::<Array<SqlUuid>, _>(&tenants)
    .bind::<Array<SqlUuid>, _>(&ids)
    .bind::<Array<Text>, _>(&resources)
    .bind::<Array<Int4>, _>(&thresholds)
    .bind::<Array<BigInt>, _>(&useds)
    .bind::<Array<BigInt>, _>(&limits)
    .bind::<Array<Timestamptz>, _>(&periods);
    let fired: Vec<Fired> = prepared(insert).load(conn).await?;
    let fired: std::collections::HashSet<Uuid> = fired.into_iter().map(|f| f.id).collect();
    for (id, item, alert) in candidates {
        if !fired.contains(&id) {
            continue;
        }
        if let Some(Ok((_, alerts))) = out[item].as_mut() {
            alerts.push(alert);
        }
    }
    Ok(())
}
