//! The delivery workers (SPEC §12): on every instance, `NOTIFICATION_WORKERS` loops that
//!
//! 1. **dispatch** (one instance at a time, under an advisory lock): turn committed outbox rows
//!    into deliveries — one per enabled endpoint subscribed to the event, one mail when the
//!    event has one — in one statement. A delivery's `seq` is the order it is delivered in
//!    within its lane (one lane per endpoint, one for the tenant's mail): the order events
//!    were seen committed. Unique indexes make a repeated dispatch a no-op.
//! 2. **claim** one due delivery that heads its lane (`FOR UPDATE SKIP LOCKED`) and take a
//!    lease on it in the same committed statement: `attempts + 1` and `next_attempt_at` pushed
//!    `NOTIFICATION_LEASE` ahead, so no other worker takes it while it is sent, and a worker
//!    killed mid-send leaves it to be claimed again when the lease ends (at least once; the
//!    event id lets receivers deduplicate). No row lock is held while sending.
//! 3. **send** (no transaction for webhooks; mail reads its recipients in one) and **record**
//!    the outcome, guarded by the lease (`attempts` unchanged).
//!
//! A failed attempt is retried after `backoff(attempts)` until `WEBHOOK_RETRY_FOR` has passed
//! since its first attempt; then the delivery is FAILED, and for a webhook its endpoint is
//! disabled and a `webhook_endpoint.disabled` event (mailed to the tenant) written. Fairness:
//! an instance works on at most one delivery per tenant at a time, so a tenant with slow
//! endpoints cannot take every worker.

mod claim;
mod gauges;
mod send;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use uuid::Uuid;

pub use claim::dispatch;
pub use send::{body, Event};

use super::webhooks::send::Sender;
use super::webhooks::service;
use crate::app::App;
use crate::error::AppResult;

/// One instance's workers: the HTTP sender and the tenants they are delivering to right now.
pub struct Workers {
    sender: Sender,
    busy: Mutex<HashSet<Uuid>>,
}

/// Marks a tenant busy while it lives.
struct Busy<'a> {
    workers: &'a Workers,
    tenant: Uuid,
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.workers.busy.lock().unwrap().remove(&self.tenant);
    }
}

impl Workers {
    pub fn new(app: &App) -> Workers {
        Workers {
            sender: Sender::new(service::policy(app), app.settings.delivery.timeout),
            busy: Mutex::default(),
        }
    }

    fn busy_tenants(&self) -> Vec<Uuid> {
        self.busy.lock().unwrap().iter().copied().collect()
    }

    /// `None` when another worker of this instance took the tenant meanwhile.
    fn mark_busy(&self, tenant: Uuid) -> Option<Busy<'_>> {
        // The set's lock is released before a `Busy` exists (its drop takes the lock).
        let inserted = self.busy.lock().unwrap().insert(tenant);
        inserted.then(|| Busy {
            workers: self,
            tenant,
        })
    }
}

/// Starts the workers of this instance (none with `NOTIFICATION_WORKERS=0`). They hold a weak
/// reference: they stop when the app is dropped.
pub fn start(app: &Arc<App>) {
    let settings = &app.settings.delivery;
    if settings.workers == 0 {
        return;
    }
    let workers = Arc::new(Workers::new(app));
    for n in 0..settings.workers {
        let (app, workers) = (Arc::downgrade(app), workers.clone());
        tokio::spawn(async move {
            let mut last_gauges = tokio::time::Instant::now() - Duration::from_secs(60);
            loop {
                let Some(app) = app.upgrade() else { return };
                let poll = app.settings.delivery.poll;
                if n == 0 && last_gauges.elapsed() >= Duration::from_secs(5) {
                    last_gauges = tokio::time::Instant::now();
                    if let Err(e) = gauges::update(&app).await {
                        tracing::debug!(error = %e.public_message(), "outbox gauges");
                    }
                }
                // In a task of its own: a panic in a send is logged, not the end of the worker.
                let round = tokio::spawn({
                    let (app, workers) = (app.clone(), workers.clone());
                    async move { tick(&app, &workers).await }
                });
                let busy = round.await.unwrap_or_else(|e| {
                    tracing::error!(error = %e, "notification worker round panicked; going on");
                    false
                });
                drop(app);
                if !busy {
                    tokio::time::sleep(poll).await;
                }
            }
        });
    }
}

/// One round: dispatch, then one delivery (even when dispatching failed). Whether there was
/// work (the loop then goes on without sleeping).
pub async fn tick(app: &App, workers: &Workers) -> bool {
    let dispatched = dispatch(app).await.unwrap_or_else(|e| {
        tracing::warn!(error = %e.public_message(), "dispatching notifications; retried");
        0
    });
    let delivered = deliver_one(app, workers).await.unwrap_or_else(|e| {
        tracing::warn!(error = %e.public_message(), "delivering a notification; retried");
        false
    });
    dispatched > 0 || delivered
}

/// Claims, sends and records one delivery; whether there was one.
pub async fn deliver_one(app: &App, workers: &Workers) -> AppResult<bool> {
    let Some(claimed) = claim::claim(app, &workers.busy_tenants()).await? else {
        return Ok(false);
    };
    let Some(_busy) = workers.mark_busy(claimed.row.tenant_id.into_inner()) else {
        // Another worker here took this tenant between the query and now: the lease makes
        // the delivery wait; hand it back at once.
        claim::release(app, &claimed.row).await?;
        return Ok(true);
    };
    let outcome = send::send(app, &workers.sender, &claimed).await;
    claim::record(app, &claimed.row, outcome).await?;
    Ok(true)
}
