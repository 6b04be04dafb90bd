//! Per-tenant rate limits on `/graphql` (SPEC §4): a sliding window of one minute, the limit
//! from the tenant's plan (or `RATE_LIMIT_<PLAN>`). A check charges a cost in units (one per
//! operation, one per mutation root field: see `graphql::admission`); a charge that does not
//! fit in what is left of the window is refused whole and charges nothing. With Redis the window is a sorted set
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
use crate::ids::TenantId;

const WINDOW_MS: u64 = 60_000;

/// `Retry-After` when Redis fails and the policy is `closed`.
pub const CLOSED_RETRY_SECS: u64 = 5;

const SLIDING_WINDOW: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local cost = tonumber(ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local count = redis.call('ZCARD', KEYS[1])
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local reset = now + window
if oldest[2] then reset = tonumber(oldest[2]) + window end
if count + cost <= limit then
  for i = 1, cost do
    redis.call('ZADD', KEYS[1], now, ARGV[3] .. ':' .. i)
  end
  redis.call('PEXPIRE', KEYS[1], window)
  return {1, limit - count - cost, reset - now}
end
return {0, math.max(limit - count, 0), reset - now}
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
    local: std::sync::Mutex<HashMap<TenantId, VecDeque<std::time::Instant>>>,
    on_redis_error: RedisErrorPolicy,
    /// After a Redis failure, Redis is not asked again until this instant (a circuit breaker):
    /// during an outage requests get the policy's answer at once instead of each waiting out
    /// the Redis timeout.
    redis_retry_at: std::sync::Mutex<Option<std::time::Instant>>,
}

/// How long the limiter leaves Redis alone after a failure.
const REDIS_BACKOFF: Duration = Duration::from_secs(1);

impl RateLimiter {
    pub fn new(redis: Option<RedisPool>, prefix: &str) -> Self {
        RateLimiter {
            redis: redis.map(|p| (p, format!("{prefix}ratelimit:"))),
            script: redis::Script::new(SLIDING_WINDOW),
            local: Default::default(),
            on_redis_error: RedisErrorPolicy::Open,
            redis_retry_at: Default::default(),
        }
    }

    /// What a failing Redis means (`RATE_LIMIT_ON_REDIS_ERROR`); `Open` unless set.
    pub fn on_redis_error(mut self, policy: RedisErrorPolicy) -> Self {
        self.on_redis_error = policy;
        self
    }

    /// Charges `cost` units (at least one) to `tenant_id`'s window of `limit` units a minute.
    pub async fn check(&self, tenant_id: TenantId, limit: u32, cost: u32) -> Decision {
        let cost = cost.max(1);
        match &self.redis {
            Some((pool, prefix)) => {
                let now = std::time::Instant::now();
                let skip = self
                    .redis_retry_at
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .is_some_and(|at| now < at);
                let answer = if skip {
                    None
                } else {
                    self.check_redis(pool, prefix, tenant_id, limit, cost).await
                };
                if answer.is_none() && !skip {
                    *self
                        .redis_retry_at
                        .lock()
                        .unwrap_or_else(|p| p.into_inner()) = Some(now + REDIS_BACKOFF);
                }
                match answer {
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
                }
            }
            None => self.check_local(tenant_id, limit, cost),
        }
    }

    async fn check_redis(
        &self,
        pool: &RedisPool,
        prefix: &str,
        tenant_id: TenantId,
        limit: u32,
        cost: u32,
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
                .arg(cost)
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

    fn check_local(&self, tenant_id: TenantId, limit: u32, cost: u32) -> Decision {
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
        let used = log.len() as u64;
        if used + u64::from(cost) <= u64::from(limit) {
            log.extend(std::iter::repeat_n(now, cost as usize));
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
                remaining: (u64::from(limit).saturating_sub(used)) as u32,
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
        let t = TenantId::now_v7();
        for i in 0..3 {
            let d = rl.check_local(t, 3, 1);
            assert!(d.allowed);
            assert_eq!(d.remaining, 2 - i);
        }
        let d = rl.check_local(t, 3, 1);
        assert!(!d.allowed);
        assert!(d.reset_secs >= 1 && d.reset_secs <= 60);
        assert!(
            rl.check_local(TenantId::now_v7(), 3, 1).allowed,
            "per tenant"
        );
    }

    #[test]
    fn a_charge_that_does_not_fit_is_refused_whole() {
        let rl = RateLimiter::new(None, "t:");
        let t = TenantId::now_v7();
        assert_eq!(rl.check_local(t, 10, 7).remaining, 3);
        let d = rl.check_local(t, 10, 4);
        assert!(!d.allowed);
        assert_eq!(d.remaining, 3, "a refused charge takes nothing");
        assert!(rl.check_local(t, 10, 3).allowed);
        assert!(!rl.check_local(TenantId::now_v7(), 10, 11).allowed);
    }
}
