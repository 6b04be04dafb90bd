//! The writer tasks: each takes what has queued up and commits it in one transaction (group
//! commit), then answers every caller. One bad item must not fail its neighbours, so a
//! failed batch is retried one increment at a time.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use chrono::Utc;
use scoped_futures::ScopedFutureExt;
use tokio::sync::{mpsc, oneshot};

use super::batch::record_all;
use super::one::record_one;
use super::{add_hourly, validate, ItemResult, UsageOutcome, UsageRequest, MAX_BATCH};
use crate::bus::{Bus, Event};
use crate::db::{switch_tenant_scope, Db, Scope};
use crate::error::{AppError, AppResult};
use crate::ids::TenantId;

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

/// One transaction for the whole batch. Item-level refusals (quota exceeded, unknown
/// resource) are answers, not failures; a database error fails the batch (nothing committed).
/// The set-based path serves every tenant of the batch at once (platform scope, see
/// `batch`); the one-by-one fallback switches the tenant scope per tenant, as RLS expects.
async fn commit_batch(
    db: &Db,
    requests: Vec<UsageRequest>,
    set_based: bool,
) -> AppResult<Vec<ItemResult>> {
    let now = Utc::now();
    if set_based {
        return db
            .scoped(Scope::Platform("usage_batch"), |conn| {
                async move { record_all(conn, &requests, now).await }.scope_boxed()
            })
            .await;
    }
    db.scoped(Scope::Anonymous, |conn| {
        async move {
            // Group by tenant (keeping each tenant's order) so the scope switches once per tenant.
            let mut order: Vec<TenantId> = Vec::new();
            let mut by_tenant: HashMap<TenantId, Vec<usize>> = HashMap::new();
            for (i, r) in requests.iter().enumerate() {
                by_tenant.entry(r.tenant_id).or_insert_with(|| {
                    order.push(r.tenant_id);
                    Vec::new()
                });
                by_tenant.get_mut(&r.tenant_id).expect("inserted").push(i);
            }
            let mut results: Vec<Option<ItemResult>> = (0..requests.len()).map(|_| None).collect();
            for tenant in order {
                switch_tenant_scope(conn, tenant).await?;
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
