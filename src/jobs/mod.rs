//! Background jobs: a scheduler inside `tenantry serve` and `tenantry jobs run NAME`.
//!
//! Each job is one transaction that first takes a transaction-scoped advisory lock
//! (`pg_try_advisory_xact_lock`): with several instances running, one runs the job per tick
//! and the others skip it; a job that dies mid-way rolls back, so nothing is half done, and
//! the lock is released with the connection, so another instance takes over on its next tick.

mod billing;
mod maintenance;

use std::sync::Arc;
use std::time::Duration;

use diesel::sql_types::{BigInt, Bool};
use diesel_async::RunQueryDsl;
use scoped_futures::ScopedFutureExt;

use crate::app::App;
use crate::auth::Actor;
use crate::db::{Conn, Scope};
use crate::error::{AppError, AppResult};
use crate::ids::TenantId;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Job {
    /// Start new quota periods for quotas whose period has ended.
    QuotaResets,
    /// Hard-delete tenants soft-deleted more than 30 days ago (every table).
    PurgeDeletedTenants,
    /// Forget usage idempotency keys older than 24 hours.
    IdempotencyExpiry,
    /// Delete audit entries older than two years.
    AuditRetention,
    /// End trials without a Stripe subscription (EXPIRED).
    TrialExpiry,
    /// Suspend tenants whose PAST_DUE grace period has ended.
    GraceSuspension,
    /// Expire plan-change intents still PENDING after 24 hours.
    IntentExpiry,
    /// Report SOFT-quota overage to Stripe as meter events.
    UsageReporting,
    /// Retry failed Stripe events whose backoff has passed.
    WebhookRetry,
    /// Finish plan quota rollouts an instance left half-way (`setPlanQuota`).
    PlanRollouts,
    /// Forget notification deliveries and events older than 30 days.
    NotificationRetention,
    // Appended (not beside TrialExpiry): `lock_key` follows the declaration order.
    /// Tell trials ending within 3 days (`subscription.trial_ending`, once per trial end).
    TrialEnding,
}

impl Job {
    pub const ALL: [Job; 12] = [
        Job::QuotaResets,
        Job::PurgeDeletedTenants,
        Job::IdempotencyExpiry,
        Job::AuditRetention,
        Job::TrialEnding,
        Job::TrialExpiry,
        Job::GraceSuspension,
        Job::IntentExpiry,
        Job::UsageReporting,
        Job::WebhookRetry,
        Job::PlanRollouts,
        Job::NotificationRetention,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Job::QuotaResets => "quota-resets",
            Job::PurgeDeletedTenants => "purge-deleted-tenants",
            Job::IdempotencyExpiry => "idempotency-expiry",
            Job::AuditRetention => "audit-retention",
            Job::TrialExpiry => "trial-expiry",
            Job::GraceSuspension => "grace-suspension",
            Job::IntentExpiry => "intent-expiry",
            Job::UsageReporting => "usage-reporting",
            Job::WebhookRetry => "webhook-retry",
            Job::PlanRollouts => "plan-rollouts",
            Job::NotificationRetention => "notification-retention",
            Job::TrialEnding => "trial-ending",
        }
    }

    pub fn lock_key(self) -> i64 {
        0x7e_0000 + self as i64
    }
}

/// What a run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Another instance holds the job's lock.
    Skipped,
    /// Rows changed.
    Done(u64),
}

#[derive(diesel::QueryableByName)]
struct Locked {
    #[diesel(sql_type = Bool)]
    locked: bool,
}

/// Runs `job` once, unless another instance is running it right now.
pub async fn run_once(app: &App, job: Job) -> AppResult<Outcome> {
    let app_ref = app;
    let outcome = app
        .db
        .scoped(Scope::Platform("job"), |c| {
            async move {
                let got: Locked =
                    diesel::sql_query("select pg_try_advisory_xact_lock($1) as locked")
                        .bind::<BigInt, _>(job.lock_key())
                        .get_result(c)
                        .await?;
                if !got.locked {
                    return Ok((Outcome::Skipped, Vec::new()));
                }
                let (n, changed) = run(app_ref, c, job).await?;
                Ok((Outcome::Done(n), changed))
            }
            .scope_boxed()
        })
        .await?;
    let (outcome, changed) = outcome;
    // After commit: a cache refilled before it would keep the old row.
    for id in changed {
        app.tenant_changed(id).await;
    }
    if let Outcome::Done(n) = &outcome {
        metrics::counter!("tenantry_job_runs_total", "job" => job.name()).increment(1);
        if *n > 0 {
            tracing::info!(job = job.name(), rows = n, "job done");
        }
    }
    Ok(outcome)
}

/// Runs one job in the caller's transaction: rows changed, and the tenants whose cached state
/// the caller must drop once the transaction has committed.
async fn run(app: &App, c: &mut Conn, job: Job) -> AppResult<(u64, Vec<TenantId>)> {
    let actor = Actor::system();
    let changed = |ids: Vec<TenantId>| (ids.len() as u64, ids);
    let count = |n: u64| (n, Vec::new());
    Ok(match job {
        Job::QuotaResets => count(maintenance::quota_resets(c).await?),
        Job::PurgeDeletedTenants => changed(maintenance::purge_deleted_tenants(c, &actor).await?),
        Job::IdempotencyExpiry => count(maintenance::idempotency_expiry(c).await?),
        Job::AuditRetention => count(maintenance::audit_retention(c).await?),
        Job::NotificationRetention => count(maintenance::notification_retention(c).await?),
        Job::TrialEnding => count(billing::trial_ending(c).await?),
        Job::TrialExpiry => changed(billing::trial_expiry(c, &actor).await?),
        Job::GraceSuspension => changed(billing::grace_suspension(c, &actor).await?),
        Job::IntentExpiry => count(billing::intent_expiry(c, &actor).await?),
        // These three work in their own transactions (one per Stripe call or event), under
        // this job's lock; each unit is idempotent, so an interrupted run leaves nothing half
        // done.
        Job::UsageReporting => count(
            crate::billing::usage::report(&app.db, app.payments.as_deref())
                .await?
                .reported as u64,
        ),
        Job::WebhookRetry => {
            let due = crate::billing::events::due(c, chrono::Utc::now(), 100).await?;
            let mut n = 0;
            for id in due {
                // Counted when processed; an event that still cannot be read stays FAILED.
                let done = crate::billing::inbox::reprocess(app, &id, None).await;
                if done.is_ok_and(|row| row.is_done()) {
                    n += 1;
                }
            }
            count(n)
        }
        Job::PlanRollouts => count(crate::plans::rollout::resume(app).await?),
    })
}

/// Runs every job each `interval` for as long as the app lives.
pub fn spawn_scheduler(app: Arc<App>, interval: Duration) {
    let app = Arc::downgrade(&app);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(app) = app.upgrade() else { return };
            for job in Job::ALL {
                if let Err(e) = run_once(&app, job).await {
                    let e: AppError = e;
                    tracing::warn!(job = job.name(), error = %e.public_message(), "job failed; retried next tick");
                }
            }
        }
    });
}
