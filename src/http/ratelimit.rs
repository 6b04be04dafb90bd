//! Per-tenant rate limits on `/graphql` (SPEC §4): a sliding window of one minute, the limit
//! from the tenant's plan (or `RATE_LIMIT_<PLAN>`). With Redis the window is a sorted set
//! updated by one atomic Lua script (clock: Redis `TIME`, so instances agree); without Redis
//! it is in-process. If Redis fails, the error is counted (`tenantry_rate_limit_errors_total`)
//! and `RATE_LIMIT_ON_REDIS_ERROR` decides: `open` (default) lets requests through — an outage
//! of the limiter must not become an outage of the API — and `closed` refuses them with a
//! short `Retry-After` ([`CLOSED_RETRY_SECS`]) for deployments where unlimited traffic is worse.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use uuid::Uuid;

use crate::app::RedisPool;
use crate::config::RedisErrorPolicy;

const WINDOW_MS: u64 = 60_000;

/// `Retry-After` when Redis fails and the policy is `closed`.
pub const CLOSED_RETRY_SECS: u64 = 5;

const SLIDING_WINDOW: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local count = redis.call('ZCARD', KEYS[1])
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local reset = now + window
if oldest[2] then reset = tonumber(oldest[2]) + window end
if count < limit then
  redis.call('ZADD', KEYS[1], now, ARGV[3])
  redis.call('PEXPIRE', KEYS[1], window)
  return {1, limit - count - 1, reset - now}
end
return {0, 0, reset - now}
"#;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    pub limit: u32,
    pub remaining: u32,
    /// Seconds until the window has room again (for `X-RateLimit-Reset` and `Retry-After`).
    pub reset_secs: u64,
}

pub struct RateLimiter {
    redis: Option<(RedisPool, String)>,
    script: redis::Script,
    local: std::sync::Mutex<HashMap<Uuid, VecDeque<std::time::Instant>>>,
    on_redis_error: RedisErrorPolicy,
}

impl RateLimiter {
    pub fn new(redis: Option<RedisPool>, prefix: &str) -> Self {
        RateLimiter {
            redis: redis.map(|p| (p, format!("{prefix}ratelimit:"))),
            script: redis::Script::new(SLIDING_WINDOW),
            local: Default::default(),
            on_redis_error: RedisErrorPolicy::Open,
        }
    }

    /// What a failing Redis means (`RATE_LIMIT_ON_REDIS_ERROR`); `Open` unless set.
    pub fn on_redis_error(mut self, policy: RedisErrorPolicy) -> Self {
        self.on_redis_error = policy;
        self
    }

    pub async fn check(&self, tenant_id: Uuid, limit: u32) -> Decision {
        match &self.redis {
            Some((pool, prefix)) => match self.check_redis(pool, prefix, tenant_id, limit).await {
                Some(d) => d,
                None => {
                    let closed = self.on_redis_error == RedisErrorPolicy::Closed;
                    metrics::counter!("tenantry_rate_limit_errors_total", "policy" => if closed { "closed" } else { "open" }).increment(1);
                    Decision {
                        allowed: !closed,
                        limit,
                        remaining: if closed { 0 } else { limit },
                        reset_secs: if closed {
                            CLOSED_RETRY_SECS
                        } else {
                            WINDOW_MS / 1000
                        },
                    }
                }
            },
            None => self.check_local(tenant_id, limit),
        }
    }

    async fn check_redis(
        &self,
        pool: &RedisPool,
        prefix: &str,
        tenant_id: Uuid,
        limit: u32,
    ) -> Option<Decision> {
        let call = async {
            let mut conn = pool.get().await.ok()?;
            let member = Uuid::new_v4().to_string();
            let (allowed, remaining, reset_ms): (i64, i64, i64) = self
                .script
                .key(format!("{prefix}{tenant_id}"))
                .arg(WINDOW_MS)
                .arg(limit)
                .arg(member)
                .invoke_async(&mut *conn)
                .await
                .ok()?;
            Some(Decision {
                allowed: allowed == 1,
                limit,
                remaining: remaining.max(0) as u32,
                reset_secs: (reset_ms.max(0) as u64).div_ceil(1000).max(1),
            })
        };
        tokio::time::timeout(Duration::from_millis(500), call)
            .await
            .ok()
            .flatten()
    }

    fn check_local(&self, tenant_id: Uuid, limit: u32) -> Decision {
        let now = std::time::Instant::now();
        let window = Duration::from_millis(WINDOW_MS);
        let mut map = self.local.lock().unwrap_or_else(|p| p.into_inner());
        let log = map.entry(tenant_id).or_default();
        while log
            .front()
            .is_some_and(|t| now.duration_since(*t) >= window)
        {
            log.pop_front();
        }
        let reset = |log: &VecDeque<std::time::Instant>| {
            log.front()
                .map_or(window, |t| window.saturating_sub(now.duration_since(*t)))
                .as_millis() as u64
        };
        if (log.len() as u32) < limit {
            log.push_back(now);
            Decision {
                allowed: true,
                limit,
                remaining: limit - log.len() as u32,
                reset_secs: reset(log).div_ceil(1000).max(1),
            }
        } else {
            Decision {
                allowed: false,
                limit,
                remaining: 0,
                reset_secs: reset(log).div_ceil(1000).max(1),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_local_window_admits_the_limit_then_refuses() {
        let rl = RateLimiter::new(None, "t:");
        let t = Uuid::new_v4();
        for i in 0..3 {
            let d = rl.check_local(t, 3);
            assert!(d.allowed);
            assert_eq!(d.remaining, 2 - i);
        }
        let d = rl.check_local(t, 3);
        assert!(!d.allowed);
        assert!(d.reset_secs >= 1 && d.reset_secs <= 60);
        assert!(rl.check_local(Uuid::new_v4(), 3).allowed, "per tenant");
    }
}
