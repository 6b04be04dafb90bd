//! Cross-instance events (cache invalidation now; quota alerts later). With Redis, one
//! subscriber connection per process receives every event — its own included — and fans it
//! out to local subscribers through a tokio broadcast channel; without Redis, events go
//! straight to the local channel (single instance). Never one Redis connection per client.

use std::time::Duration;

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;
use uuid::Uuid;

use crate::app::RedisPool;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Event {
    /// A tenant's row changed: drop its cached resolutions. `keys` are the resolution cache
    /// keys it had or has (`slug:..`, `domain:..`, old and new), so negative entries for a
    /// name that now resolves are dropped too. Absent in events of older versions (then only
    /// the tenant's own entries are dropped); older versions ignore it.
    TenantChanged {
        tenant_id: Uuid,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        keys: Vec<String>,
    },
    /// A tenant's feature overrides changed.
    FeaturesChanged { tenant_id: Uuid },
    /// A tenant's configuration changed.
    ConfigChanged { tenant_id: Uuid },
    /// A quota threshold was crossed (the row is already committed).
    QuotaAlert(AlertEvent),
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AlertEvent {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub resource: String,
    pub threshold: i32,
    pub used: i64,
    pub limit: i64,
    pub period_start: chrono::DateTime<chrono::Utc>,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

pub struct Bus {
    local: broadcast::Sender<Event>,
    redis: Option<(RedisPool, String)>,
}

impl Bus {
    /// `prefix` namespaces the Redis channel (`<prefix>events`), so deployments or tests that
    /// share a Redis server do not hear each other.
    pub fn new(redis: Option<(RedisPool, redis::Client)>, prefix: &str) -> Bus {
        let (local, _) = broadcast::channel(4096);
        let channel = format!("{prefix}events");
        if let Some((_, client)) = &redis {
            tokio::spawn(subscribe_forever(
                client.clone(),
                channel.clone(),
                local.clone(),
            ));
        }
        Bus {
            local,
            redis: redis.map(|(pool, _)| (pool, channel)),
        }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.local.subscribe()
    }

    /// Delivers `event` to every instance. If Redis cannot be reached it is delivered locally
    /// and the failure is logged: other instances then rely on their cache TTLs.
    pub async fn publish(&self, event: Event) {
        if let Some((pool, channel)) = &self.redis {
            let payload = serde_json::to_string(&event).expect("events serialize");
            let sent = async {
                let mut conn = pool.get().await.ok()?;
                redis::cmd("PUBLISH")
                    .arg(channel)
                    .arg(&payload)
                    .query_async::<i64>(&mut *conn)
                    .await
                    .ok()
            };
            if tokio::time::timeout(Duration::from_secs(2), sent)
                .await
                .ok()
                .flatten()
                .is_some()
            {
                metrics::counter!("tenantry_bus_published_total", "transport" => "redis")
                    .increment(1);
                return;
            }
            tracing::warn!(?event, "redis publish failed; delivering locally only");
        }
        metrics::counter!("tenantry_bus_published_total", "transport" => "local").increment(1);
        let _ = self.local.send(event);
    }
}

async fn subscribe_forever(
    client: redis::Client,
    channel: String,
    local: broadcast::Sender<Event>,
) {
    let mut backoff = Duration::from_millis(100);
    loop {
        match client.get_async_pubsub().await {
            Ok(mut pubsub) => {
                if let Err(e) = pubsub.subscribe(&channel).await {
                    tracing::warn!(error = %e, "redis subscribe failed");
                } else {
                    backoff = Duration::from_millis(100);
                    tracing::info!(%channel, "subscribed to the event bus");
                    let mut stream = pubsub.on_message();
                    while let Some(msg) = stream.next().await {
                        let Ok(payload) = msg.get_payload::<String>() else {
                            continue;
                        };
                        match serde_json::from_str::<Event>(&payload) {
                            Ok(event) => {
                                let _ = local.send(event);
                            }
                            Err(e) => tracing::warn!(error = %e, "unreadable bus event"),
                        }
                    }
                    tracing::warn!("event bus connection lost; resubscribing");
                }
            }
            Err(e) => tracing::warn!(error = %e, "event bus: redis unreachable"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_changed_stays_compatible_with_older_instances() {
        let id = Uuid::nil();
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
