//! Cross-instance events (cache invalidation, quota alerts). With Redis, one subscriber
//! connection per process receives every event — its own included — and fans it out to local
//! subscribers through a tokio broadcast channel; without Redis, events go straight to the
//! local channel (single instance). Never one Redis connection per client.
//!
//! Redis is optional at run time too: an outage must not become an outage of the API.
//! - `publish` never waits on Redis: events go through a bounded queue to one publisher task
//!   (order kept), which gives each `PUBLISH` [`PUBLISH_TIMEOUT`]; an event that cannot be
//!   published is delivered locally and counted (`tenantry_bus_publish_failures_total`).
//! - The subscriber reconnects with backoff (capped at [`MAX_BACKOFF`]) and resubscribes.
//! - Events may be missed while it is disconnected, so it signals a *resync* (`resyncs()`)
//!   when the connection is lost, after every failed reconnect attempt, and once more when
//!   it is back: caches drop everything, and no instance serves stale entries for longer than
//!   about one backoff step after a missed invalidation.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, mpsc, watch};
use uuid::Uuid;

use crate::app::RedisPool;
use crate::ids::TenantId;

/// How long one `PUBLISH` (with the pool's connect, the first time) may take before the
/// event is delivered locally only and every instance is asked to resync. No write waits on
/// it (the publisher is its own task), so it is generous: a loaded machine must not turn a
/// slow first connect into a fleet-wide cache drop.
pub const PUBLISH_TIMEOUT: Duration = Duration::from_secs(1);
/// After a failed `PUBLISH`, events skip Redis (local delivery) for this long.
const PUBLISH_PAUSE: Duration = Duration::from_millis(500);
/// Events waiting for the publisher task; beyond it they are delivered locally only.
const PUBLISH_QUEUE: usize = 4096;
/// Longest wait between two reconnect attempts of the subscriber.
pub const MAX_BACKOFF: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Event {
    /// A tenant's row changed: drop its cached resolutions. `keys` are the resolution cache
    /// keys it had or has (`slug:..`, `domain:..`, old and new), so negative entries for a
    /// name that now resolves are dropped too. Absent in events of older versions (then only
    /// the tenant's own entries are dropped); older versions ignore it.
    TenantChanged {
        tenant_id: TenantId,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        keys: Vec<String>,
    },
    /// A tenant's feature overrides changed.
    FeaturesChanged { tenant_id: TenantId },
    /// A tenant's configuration changed.
    ConfigChanged { tenant_id: TenantId },
    /// A tenant's members changed (roles, removals, acceptances): drop their cached
    /// memberships, and close the sockets of members no longer allowed in.
    MembersChanged { tenant_id: TenantId },
    /// The plan catalogue changed (plans are cached by id on every instance).
    PlansChanged,
    /// A resource type was created (the catalogue is cached whole on every instance).
    ResourceTypesChanged,
    /// An API key was revoked or rotated: drop its cached look-up, re-check its sockets.
    ApiKeyChanged { tenant_id: TenantId, key_id: Uuid },
    /// A quota threshold was crossed (the row is already committed).
    QuotaAlert(AlertEvent),
    /// Some events reached only their own instance (Redis was down when they were
    /// published): every instance drops its caches. Sent once Redis takes publishes again.
    Resync,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AlertEvent {
    pub id: Uuid,
    pub tenant_id: TenantId,
    pub resource: String,
    pub threshold: i32,
    pub used: i64,
    pub limit: i64,
    pub period_start: chrono::DateTime<chrono::Utc>,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

/// Delivery on this instance. Cache events go to every listener; a quota alert goes to the
/// subscribers of its tenant (and to the all-tenants listeners of platform admins), so one
/// alert wakes the sockets that asked for it, not every socket of the instance.
struct Local {
    events: broadcast::Sender<Event>,
    alerts: std::sync::Mutex<AlertRoutes>,
    all_alerts: broadcast::Sender<AlertEvent>,
}

#[derive(Default)]
struct AlertRoutes {
    by_tenant: HashMap<TenantId, broadcast::Sender<AlertEvent>>,
    /// Size of `by_tenant` after the last sweep of tenants nobody listens to any more.
    swept_at: usize,
}

/// Alerts a subscriber may fall behind by before it skips (and logs) the oldest. Each slot is
/// allocated when the tenant's channel is made (about 128 bytes), and there is one channel per
/// tenant with subscribers on the instance: 64 slots are 8 KiB per such tenant (256 were
/// 32 KiB: 3 KiB of every socket with 10,000 sockets over 1,000 tenants), and one batch
/// crossing every threshold of several resources at once still fits.
const ALERT_BACKLOG: usize = 64;

impl Local {
    fn new() -> Arc<Local> {
        Arc::new(Local {
            events: broadcast::channel(4096).0,
            alerts: Default::default(),
            all_alerts: broadcast::channel(4096).0,
        })
    }

    fn routes(&self) -> std::sync::MutexGuard<'_, AlertRoutes> {
        self.alerts.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn deliver(&self, event: Event) {
        if let Event::QuotaAlert(alert) = &event {
            if self.all_alerts.receiver_count() > 0 {
                let _ = self.all_alerts.send(alert.clone());
            }
            let mut routes = self.routes();
            if let Some(tx) = routes.by_tenant.get(&alert.tenant_id) {
                if tx.send(alert.clone()).is_err() {
                    routes.by_tenant.remove(&alert.tenant_id);
                }
            }
        }
        let _ = self.events.send(event);
    }

    fn alerts(&self, tenant: Option<TenantId>) -> broadcast::Receiver<AlertEvent> {
        let Some(tenant) = tenant else {
            return self.all_alerts.subscribe();
        };
        let mut routes = self.routes();
        // Amortised sweep: tenants whose subscribers all left keep no channel.
        if routes.by_tenant.len() >= 2 * routes.swept_at.max(64) {
            routes.by_tenant.retain(|_, tx| tx.receiver_count() > 0);
            routes.swept_at = routes.by_tenant.len();
        }
        routes
            .by_tenant
            .entry(tenant)
            .or_insert_with(|| broadcast::channel(ALERT_BACKLOG).0)
            .subscribe()
    }
}

pub struct Bus {
    local: Arc<Local>,
    /// The publisher task's queue; `None` without Redis.
    outbox: Option<mpsc::Sender<Event>>,
    /// Bumped whenever events may have been missed.
    resync: watch::Sender<u64>,
    /// Whether the subscriber is subscribed right now (always true without Redis).
    subscribed: Arc<AtomicBool>,
}

impl Bus {
    /// `prefix` namespaces the Redis channel (`<prefix>events`), so deployments or tests that
    /// share a Redis server do not hear each other.
    pub fn new(redis: Option<(RedisPool, redis::Client)>, prefix: &str) -> Bus {
        let local = Local::new();
        let (resync, _) = watch::channel(0);
        let channel = format!("{prefix}events");
        let subscribed = Arc::new(AtomicBool::new(redis.is_none()));
        let outbox = redis.map(|(pool, client)| {
            tokio::spawn(subscribe_forever(
                client,
                channel.clone(),
                local.clone(),
                resync.clone(),
                subscribed.clone(),
            ));
            let (tx, rx) = mpsc::channel(PUBLISH_QUEUE);
            tokio::spawn(publish_forever(pool, channel, rx, local.clone()));
            tx
        });
        Bus {
            local,
            outbox,
            resync,
            subscribed,
        }
    }

    /// Every event delivered on this instance (cache invalidations, alerts, resyncs).
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.local.events.subscribe()
    }

    /// The quota alerts of one tenant, or of every tenant (`None`).
    pub fn alerts(&self, tenant: Option<TenantId>) -> broadcast::Receiver<AlertEvent> {
        self.local.alerts(tenant)
    }

    /// Changes whenever this instance may have missed events (Redis subscription lost, still
    /// down, or re-established): whoever caches what events invalidate drops everything.
    pub fn resyncs(&self) -> watch::Receiver<u64> {
        self.resync.subscribe()
    }

    /// Whether events from other instances reach this one right now.
    pub fn is_subscribed(&self) -> bool {
        self.subscribed.load(Ordering::Relaxed)
    }

    /// Delivers `event` to every instance, without waiting for Redis: it is queued for the
    /// publisher task. When the queue is full (Redis stalled for long) it is delivered locally
    /// and counted; other instances then rely on their resyncs.
    pub async fn publish(&self, event: Event) {
        let Some(outbox) = &self.outbox else {
            metrics::counter!("tenantry_bus_published_total", "transport" => "local").increment(1);
            self.local.deliver(event);
            return;
        };
        if let Err(e) = outbox.try_send(event) {
            let event = match e {
                mpsc::error::TrySendError::Full(ev) | mpsc::error::TrySendError::Closed(ev) => ev,
            };
            deliver_locally(&self.local, event, "queue_full");
        }
    }
}

fn deliver_locally(local: &Local, event: Event, reason: &'static str) {
    metrics::counter!("tenantry_bus_publish_failures_total", "reason" => reason).increment(1);
    metrics::counter!("tenantry_bus_published_total", "transport" => "local").increment(1);
    tracing::debug!(?event, reason, "event delivered on this instance only");
    local.deliver(event);
}

/// Publishes queued events in order. A failure (or a `PUBLISH` slower than
/// [`PUBLISH_TIMEOUT`]) pauses Redis publishing for [`PUBLISH_PAUSE`], so a backlog drains at
/// once during an outage instead of waiting out one timeout per event. Whatever went out
/// locally only is owed to the other instances: an [`Event::Resync`] is published as soon as
/// Redis takes it (retried every [`PUBLISH_PAUSE`] even when no new event comes).
async fn publish_forever(
    pool: RedisPool,
    channel: String,
    mut rx: mpsc::Receiver<Event>,
    local: Arc<Local>,
) {
    let publish = |event: &Event| {
        let payload = serde_json::to_string(event).expect("events serialize");
        let (pool, channel) = (pool.clone(), channel.clone());
        async move {
            let sent = async {
                let mut conn = pool.get().await.ok()?;
                redis::cmd("PUBLISH")
                    .arg(&channel)
                    .arg(&payload)
                    .query_async::<i64>(&mut *conn)
                    .await
                    .ok()
            };
            matches!(
                tokio::time::timeout(PUBLISH_TIMEOUT, sent).await,
                Ok(Some(_))
            )
        }
    };
    let mut paused_until: Option<Instant> = None;
    let mut owe_resync = false;
    loop {
        let event = if owe_resync {
            tokio::select! {
                event = rx.recv() => event,
                _ = tokio::time::sleep(PUBLISH_PAUSE) => Some(Event::Resync),
            }
        } else {
            rx.recv().await
        };
        let Some(event) = event else { return };
        // `paused_until` is only ever set while a resync is owed.
        let paused = paused_until.is_some_and(|t| Instant::now() < t);
        if owe_resync && !paused {
            if publish(&Event::Resync).await {
                owe_resync = false;
                tracing::info!("redis publish works again; other instances resync their caches");
            } else {
                paused_until = Some(Instant::now() + PUBLISH_PAUSE);
            }
        }
        if event == Event::Resync {
            continue;
        }
        if owe_resync {
            deliver_locally(&local, event, "redis_down");
            continue;
        }
        if publish(&event).await {
            metrics::counter!("tenantry_bus_published_total", "transport" => "redis").increment(1);
        } else {
            tracing::warn!(
                "redis publish failed; events reach this instance only until it is back"
            );
            paused_until = Some(Instant::now() + PUBLISH_PAUSE);
            owe_resync = true;
            deliver_locally(&local, event, "redis_error");
        }
    }
}

async fn subscribe_forever(
    client: redis::Client,
    channel: String,
    local: Arc<Local>,
    resync: watch::Sender<u64>,
    subscribed: Arc<AtomicBool>,
) {
    let signal = |why: &'static str| {
        metrics::counter!("tenantry_bus_resyncs_total", "reason" => why).increment(1);
        resync.send_modify(|n| *n += 1);
    };
    let mut backoff = Duration::from_millis(100);
    let mut first = true;
    loop {
        let connect = tokio::time::timeout(Duration::from_secs(2), client.get_async_pubsub());
        match connect.await {
            Ok(Ok(mut pubsub)) => {
                if let Err(e) = pubsub.subscribe(&channel).await {
                    tracing::warn!(error = %e, "redis subscribe failed");
                } else {
                    backoff = Duration::from_millis(100);
                    subscribed.store(true, Ordering::Relaxed);
                    metrics::gauge!("tenantry_bus_subscribed").set(1.0);
                    if first {
                        tracing::info!(%channel, "subscribed to the event bus");
                    } else {
                        // Whatever was published while we were away is lost.
                        tracing::info!(%channel, "resubscribed to the event bus");
                        signal("resubscribed");
                    }
                    let mut stream = pubsub.on_message();
                    while let Some(msg) = stream.next().await {
                        let Ok(payload) = msg.get_payload::<String>() else {
                            continue;
                        };
                        match serde_json::from_str::<Event>(&payload) {
                            Ok(event) => local.deliver(event),
                            Err(e) => tracing::warn!(error = %e, "unreadable bus event"),
                        }
                    }
                    subscribed.store(false, Ordering::Relaxed);
                    metrics::gauge!("tenantry_bus_subscribed").set(0.0);
                    tracing::warn!("event bus connection lost; resubscribing");
                }
            }
            Ok(Err(e)) => tracing::debug!(error = %e, "event bus: redis unreachable"),
            Err(_) => tracing::debug!("event bus: redis connect timed out"),
        }
        // Not subscribed: invalidations from other instances may be missed right now.
        first = false;
        signal("disconnected");
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_changed_stays_compatible_with_older_instances() {
        let id = TenantId::from(Uuid::nil());
        // An older instance's event (no keys) still reads.
        let old: Event = serde_json::from_str(&format!(
            r#"{{"kind":"tenant_changed","tenant_id":"{id}"}}"#
        ))
        .unwrap();
        assert_eq!(
            old,
            Event::TenantChanged {
                tenant_id: id,
                keys: vec![]
            }
        );
        // The new field is additive: same tag, same tenant_id.
        let new = serde_json::to_value(Event::TenantChanged {
            tenant_id: id,
            keys: vec!["slug:a".into()],
        })
        .unwrap();
        assert_eq!(new["kind"], "tenant_changed");
        assert_eq!(new["tenant_id"], id.to_string());
        assert_eq!(new["keys"][0], "slug:a");
    }
}
