//! Usage metering — the hot path (SPEC §4 "Quotas"). Callers hand increments to a small set
//! of writer tasks and wait; each writer takes whatever has queued up (up to `MAX_BATCH`) and
//! commits it in ONE transaction (group commit), then answers every caller. So:
//! - an answer is sent only after PostgreSQL committed the increment (no ack is lost by a
//!   crash; a caller that disconnects does not cancel the write: it lives in the writer task);
//! - a HARD quota is checked and incremented by one conditional `UPDATE` holding the row lock,
//!   so no interleaving can admit more than the limit;
//! - a SOFT quota is capped the same way, at the limit plus the plan's overage ceiling
//!   (`plans.overage_limit_percent`), or at the limit for callers not allowed into overage;
//! - idempotency keys are claimed by a unique index; a repeat returns the stored first answer,
//!   the same key on another resource is refused (BAD_USER_INPUT);
//! - threshold crossings insert into `quota_alerts` under a unique key, so each fires once per
//!   (tenant, resource, period, threshold), and are published after the commit.
//!
//! Increments of one (tenant, resource) always go to the same writer, so writers never wait on
//! each other's row locks.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Nullable, Text, Timestamptz, Uuid as SqlUuid};
use diesel_async::{AnsiTransactionManager, RunQueryDsl, TransactionManager};
use scoped_futures::ScopedFutureExt;
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use crate::bus::{AlertEvent, Bus, Event};
use crate::db::{switch_tenant_scope, Conn, Db, Scope};
use crate::error::{AppError, AppResult};

pub const MAX_BATCH: usize = 256;
pub const MAX_AMOUNT: i64 = 1_000_000_000_000_000;

#[derive(Debug, Clone)]
pub struct UsageRequest {
    pub tenant_id: Uuid,
    pub resource: String,
    pub amount: i64,
    pub idempotency_key: Option<String>,
    /// May this increment take a SOFT quota past its limit (up to the plan's overage
    /// ceiling)? False for tenant members under `USAGE_MEMBER_SOFT_POLICY=within_limit`.
    pub soft_overage: bool,
}

/// The SQL of a quota's cap for one increment: `app_usage_cap` with the plan's overage
/// ceiling. `$q` is the quota row's alias, `$overage` the bind of `soft_overage`.
macro_rules! usage_cap_sql {
    ($q:literal, $overage:literal) => {
        concat!(
            "app_usage_cap(", $q, ".\"limit\", ", $q, ".enforcement, ", $overage,
            ", (select p.overage_limit_percent from tenants t join plans p on p.id = t.plan_id where t.id = ",
            $q, ".tenant_id))"
        )
    };
}

/// The same idempotency key sent for another resource: refused, nothing recorded.
fn key_reused(first_resource: &str) -> AppError {
    AppError::bad_input(
        "idempotencyKey",
        format!("this idempotencyKey was already used for another resource ({first_resource:?})"),
    )
}

/// The answer to an increment (stored with the record, so a repeated key gets it again).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UsageOutcome {
    pub resource: String,
    pub allowed: bool,
    pub used: i64,
    pub limit: i64,
    pub remaining: i64,
    /// Usage above the limit (SOFT quotas), billed as overage.
    pub overage: i64,
    /// True when this answer repeats the first one for the same idempotency key.
    pub duplicate: bool,
}

impl UsageOutcome {
    fn new(resource: &str, used: i64, limit: i64, duplicate: bool) -> Self {
        UsageOutcome {
            resource: resource.to_owned(),
            allowed: true,
            used,
            limit,
            remaining: (limit - used).max(0),
            overage: (used - limit).max(0),
            duplicate,
        }
    }
}

struct Job {
    req: UsageRequest,
    reply: oneshot::Sender<AppResult<UsageOutcome>>,
}

#[derive(Clone)]
pub struct Meter {
    shards: Arc<Vec<mpsc::Sender<Job>>>,
}

impl Meter {
    pub fn start(db: Db, bus: Arc<Bus>, writers: usize) -> Meter {
        let shards = (0..writers.max(1))
            .map(|_| {
                let (tx, rx) = mpsc::channel(MAX_BATCH * 16);
                tokio::spawn(writer(db.clone(), bus.clone(), rx));
                tx
            })
            .collect();
        Meter {
            shards: Arc::new(shards),
        }
    }

    /// Records an increment; resolves once it is committed (or refused).
    pub async fn record(&self, req: UsageRequest) -> AppResult<UsageOutcome> {
        validate(&req)?;
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (req.tenant_id, &req.resource).hash(&mut h);
        let shard = &self.shards[(h.finish() as usize) % self.shards.len()];
        let (reply, answer) = oneshot::channel();
        shard
            .send(Job { req, reply })
            .await
            .map_err(|_| AppError::Unavailable("usage writer stopped".into()))?;
        answer
            .await
            .map_err(|_| AppError::Unavailable("usage writer stopped".into()))?
    }
}

pub fn validate(req: &UsageRequest) -> AppResult<()> {
    if req.amount <= 0 || req.amount > MAX_AMOUNT {
        return Err(AppError::bad_input(
            "amount",
            "amount must be a positive whole number (at most 10^15)",
        ));
    }
    if req.resource.is_empty() || req.resource.len() > 64 {
        return Err(AppError::bad_input(
            "resource",
            "resource must be 1-64 characters",
        ));
    }
    if let Some(k) = &req.idempotency_key {
        if k.is_empty() || k.len() > 255 {
            return Err(AppError::bad_input(
                "idempotencyKey",
                "idempotencyKey must be 1-255 characters",
            ));
        }
    }
    Ok(())
}

async fn writer(db: Db, bus: Arc<Bus>, mut rx: mpsc::Receiver<Job>) {
    let mut jobs = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut jobs, MAX_BATCH).await > 0 {
        metrics::histogram!("tenantry_usage_batch_size").record(jobs.len() as f64);
        let batch: Vec<Job> = std::mem::take(&mut jobs);
        let requests: Vec<UsageRequest> = batch.iter().map(|j| j.req.clone()).collect();
        let results = match commit_batch(&db, requests.clone(), true).await {
            Ok(r) => r,
            // One bad item must not fail its neighbours: retry them one by one.
            Err(_) if batch.len() > 1 => {
                let mut out = Vec::with_capacity(batch.len());
                for req in requests {
                    out.push(match commit_batch(&db, vec![req], false).await {
                        Ok(mut r) => r.pop().unwrap_or_else(|| {
                            Err(AppError::internal(anyhow::anyhow!("empty batch")))
                        }),
                        Err(e) => Err(e),
                    });
                }
                out
            }
            Err(_) => match commit_batch(&db, requests, false).await {
                Ok(r) => r,
                Err(e) => vec![Err(e)],
            },
        };
        for (job, result) in batch.into_iter().zip(results) {
            let answer = match result {
                Ok((outcome, alerts)) => {
                    for alert in alerts {
                        metrics::counter!("tenantry_quota_alerts_total", "threshold" => alert.threshold.to_string())
                            .increment(1);
                        bus.publish(Event::QuotaAlert(alert)).await;
                    }
                    metrics::counter!("tenantry_usage_recorded_total", "outcome" => "accepted")
                        .increment(1);
                    Ok(outcome)
                }
                Err(e) => {
                    metrics::counter!("tenantry_usage_recorded_total", "outcome" => e.code())
                        .increment(1);
                    Err(e)
                }
            };
            let _ = job.reply.send(answer);
        }
    }
}

type ItemResult = AppResult<(UsageOutcome, Vec<AlertEvent>)>;

/// One transaction for the whole batch. Item-level refusals (quota exceeded, unknown
/// resource) are answers, not failures; a database error fails the batch (nothing committed).
async fn commit_batch(
    db: &Db,
    requests: Vec<UsageRequest>,
    set_based: bool,
) -> AppResult<Vec<ItemResult>> {
    db.scoped(Scope::Anonymous, |conn| {
        async move {
            // Group by tenant (keeping each tenant's order) so the scope switches once per tenant.
            let mut order: Vec<Uuid> = Vec::new();
            let mut by_tenant: HashMap<Uuid, Vec<usize>> = HashMap::new();
            for (i, r) in requests.iter().enumerate() {
                by_tenant.entry(r.tenant_id).or_insert_with(|| {
                    order.push(r.tenant_id);
                    Vec::new()
                });
                by_tenant.get_mut(&r.tenant_id).expect("inserted").push(i);
            }
            let mut results: Vec<Option<ItemResult>> = (0..requests.len()).map(|_| None).collect();
            let now = Utc::now();
            for tenant in order {
                switch_tenant_scope(conn, tenant).await?;
                if set_based {
                    // Per resource, in arrival order: a handful of statements per group.
                    let mut resources: Vec<&str> = Vec::new();
                    let mut by_resource: HashMap<&str, Vec<usize>> = HashMap::new();
                    for &i in &by_tenant[&tenant] {
                        let r = requests[i].resource.as_str();
                        by_resource.entry(r).or_insert_with(|| {
                            resources.push(r);
                            Vec::new()
                        });
                        by_resource.get_mut(r).expect("inserted").push(i);
                    }
                    for resource in resources {
                        let idx = &by_resource[resource];
                        for (i, res) in
                            record_group(conn, tenant, resource, &requests, idx, now).await?
                        {
                            results[i] = Some(res);
                        }
                    }
                    continue;
                }
                let mut hourly: HashMap<String, i64> = HashMap::new();
                for &i in &by_tenant[&tenant] {
                    let r = &requests[i];
                    let res = record_one(conn, r, now).await?;
                    if let Ok((o, _)) = &res {
                        if !o.duplicate {
                            *hourly.entry(r.resource.clone()).or_default() += r.amount;
                        }
                    }
                    results[i] = Some(res);
                }
                for (resource, amount) in hourly {
                    add_hourly(conn, tenant, &resource, now, amount).await?;
                }
            }
            Ok(results
                .into_iter()
                .map(|r| r.expect("every item answered"))
                .collect())
        }
        .scope_boxed()
    })
    .await
}

/// A quota row as the metering statements read it (period already rolled over).
#[derive(QueryableByName)]
struct Locked {
    #[diesel(sql_type = BigInt)]
    used: i64,
    #[diesel(sql_type = BigInt)]
    limit: i64,
    #[diesel(sql_type = Timestamptz)]
    period_start: DateTime<Utc>,
    #[diesel(sql_type = diesel::sql_types::Array<diesel::sql_types::Int4>)]
    alert_thresholds: Vec<i32>,
    #[diesel(sql_type = Text)]
    enforcement: String,
    /// The most `used` may reach for a caller allowed into overage (`app_usage_cap`).
    #[diesel(sql_type = BigInt)]
    cap: i64,
}

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
async fn record_one(
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
        let n = diesel::sql_query(
            r#"insert into quota_alerts (tenant_id, id, resource, threshold, used, "limit", period_start, created_at)
               values ($1, $2, $3, $4, $5, $6, $7, $8)
               on conflict (tenant_id, resource, period_start, threshold) do nothing"#,
        )
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

/// Whether going from `before` to `after` crosses `threshold` percent of `limit`.
pub fn crosses(before: i64, after: i64, limit: i64, threshold: i32) -> bool {
    let t = threshold as i128;
    let (before, after, limit) = (before as i128, after as i128, limit as i128);
    if limit == 0 {
        return before == 0 && after > 0;
    }
    before * 100 < t * limit && after * 100 >= t * limit
}

async fn add_hourly(
    conn: &mut Conn,
    tenant: Uuid,
    resource: &str,
    now: DateTime<Utc>,
    amount: i64,
) -> QueryResult<()> {
    diesel::sql_query(
        "insert into usage_hourly (tenant_id, resource, hour_start, amount)
         values ($1, $2, date_trunc('hour', $3, 'UTC'), $4)
         on conflict (tenant_id, resource, hour_start) do update set amount = usage_hourly.amount + excluded.amount",
    )
    .bind::<SqlUuid, _>(tenant)
    .bind::<Text, _>(resource)
    .bind::<Timestamptz, _>(now)
    .bind::<BigInt, _>(amount)
    .execute(conn)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::crosses;

    #[test]
    fn thresholds_fire_on_the_increment_that_reaches_them() {
        assert!(crosses(749, 750, 1000, 75));
        assert!(!crosses(750, 751, 1000, 75));
        assert!(crosses(0, 1000, 1000, 100));
        assert!(crosses(0, 1000, 1000, 75));
        assert!(!crosses(0, 749, 1000, 75));
        assert!(crosses(2, 3, 3, 100));
        assert!(!crosses(0, 0, 0, 100));
        assert!(crosses(i64::MAX - 1, i64::MAX, i64::MAX, 100));
    }
}

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
async fn record_group(
    conn: &mut Conn,
    tenant: Uuid,
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

    let hard = q.enforcement != "SOFT";
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
