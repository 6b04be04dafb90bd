//! Per-tenant rate limits on `/graphql` (SPEC §4): a sliding window of one minute, the limit
//! from the tenant's plan (or `RATE_LIMIT_<PLAN>`). A check charges a cost in units (one per
//! operation, one per mutation root field: see `graphql::admission`); a charge that does not
//! fit in what is left of the window is refused whole and charges nothing. With Redis the window is a sorted set
//! updated by one atomic Lua script (clock: Redis `TIME`, so instances agree); without Redis
//! it is in-process. If Redis fails, the error is counted (`tenantry_rate_limit_errors_total`)
//! and `RATE_LIMIT_ON_REDIS_ERROR` decides: `open` (default) lets requests through — an outage
//! of the limiter must not become an outage of the API — and `closed` refuses them with a
//! short `Retry-After` ([`CLOSED_RETRY_SECS`]) for deployments where unlimited traffic is worse.
//!
//! Beside the window, each tenant has a cost bucket ([`BucketShape`]), Shopify/GitHub style: an
//! operation's calculated cost is taken from it when admitted, what execution did not use is
//! given back, and the bucket refills at its restore rate. The same Redis, policy and breaker
//! serve both; the bucket also counts the cost consumed in the current UTC day.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use uuid::Uuid;

use crate::app::RedisPool;
use crate::config::{BucketShape, RedisErrorPolicy};
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

/// One tenant's cost bucket, a hash: `a` points available at `t` (ms), `c` cost consumed on
/// day `d`. ARGV: size, restore rate (points a second), cost (negative: a refund, 0: a look),
/// and for a refund the day of its charge (a refund of yesterday's charge leaves today's
/// count alone). A cost that does not fit is refused whole.
/// Returns {allowed, available, consumed today, today}.
const COST_BUCKET: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local size = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local v = redis.call('HMGET', KEYS[1], 'a', 't', 'c', 'd')
local avail = tonumber(v[1]) or size
local at = tonumber(v[2]) or now
local day = math.floor(now / 86400000)
local used = 0
if tonumber(v[4]) == day then used = tonumber(v[3]) or 0 end
avail = math.min(size, avail + math.max(0, now - at) * rate / 1000)
if cost > avail then
  return {0, tostring(avail), used, day}
end
if cost ~= 0 then
  avail = math.min(size, avail - cost)
  if cost > 0 or tonumber(ARGV[4]) == day then
    used = math.max(0, used + cost)
  end
  redis.call('HSET', KEYS[1], 'a', tostring(avail), 't', now, 'c', used, 'd', day)
  redis.call('PEXPIRE', KEYS[1], 172800000)
end
return {1, tostring(avail), used, day}
"#;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    pub limit: u32,
    pub remaining: u32,
    /// Seconds until the window has room again (for `X-RateLimit-Reset` and `Retry-After`).
    pub reset_secs: u64,
}

/// A bucket after a charge, refund or look (`throttleStatus` in `extensions.cost`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Throttle {
    pub allowed: bool,
    pub shape: BucketShape,
    pub available: f64,
    /// Cost consumed in the current UTC day (what was charged less what was given back).
    pub consumed_today: u64,
    /// That day (days since the epoch, UTC): a refund names the day of its charge.
    pub day: i64,
    /// The store could not be asked (Redis failing): `allowed` is the
    /// `RATE_LIMIT_ON_REDIS_ERROR` policy's answer and nothing was taken.
    pub fallback: bool,
}

impl Throttle {
    /// Whole seconds until `cost` fits (at least one).
    pub fn retry_after_secs(&self, cost: u64) -> u64 {
        let missing = (cost as f64 - self.available).max(0.0);
        ((missing / self.shape.restore_rate.max(0.001)).ceil() as u64).max(1)
    }
}

#[derive(Debug)]
struct LocalBucket {
    available: f64,
    at: std::time::Instant,
    day: i64,
    consumed: i64,
}

pub struct RateLimiter {
    redis: Option<(RedisPool, String)>,
    script: redis::Script,
    bucket_script: redis::Script,
    local: std::sync::Mutex<HashMap<TenantId, VecDeque<std::time::Instant>>>,
    local_buckets: std::sync::Mutex<HashMap<TenantId, LocalBucket>>,
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
            bucket_script: redis::Script::new(COST_BUCKET),
            local: Default::default(),
            local_buckets: Default::default(),
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
        let Some((pool, prefix)) = &self.redis else {
            return self.check_local(tenant_id, limit, cost);
        };
        let answer = self
            .guarded(self.check_redis(pool, prefix, tenant_id, limit, cost))
            .await;
        answer.unwrap_or_else(|| {
            let closed = self.failed_closed();
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
        })
    }

    /// Takes `cost` points from `tenant_id`'s bucket (refused whole when they are not there),
    /// or just looks when zero.
    pub async fn bucket(&self, tenant_id: TenantId, shape: BucketShape, cost: u64) -> Throttle {
        self.bucket_op(tenant_id, shape, cost.min(i64::MAX as u64) as i64, -1)
            .await
    }

    /// Gives back `amount` points of a charge made on `day` (a [`Throttle::day`]).
    pub async fn refund(
        &self,
        tenant_id: TenantId,
        shape: BucketShape,
        amount: u64,
        day: i64,
    ) -> Throttle {
        let amount = amount.min(i64::MAX as u64) as i64;
        self.bucket_op(tenant_id, shape, -amount, day).await
    }

    async fn bucket_op(
        &self,
        tenant_id: TenantId,
        shape: BucketShape,
        cost: i64,
        day: i64,
    ) -> Throttle {
        let Some((pool, prefix)) = &self.redis else {
            return self.bucket_local(tenant_id, shape, cost, day);
        };
        let call = async {
            let mut conn = pool.get().await.ok()?;
            let (allowed, available, consumed, today): (i64, String, i64, i64) = self
                .bucket_script
                .key(format!("{prefix}cost:{tenant_id}"))
                .arg(shape.size)
                .arg(shape.restore_rate)
                .arg(cost)
                .arg(day)
                .invoke_async(&mut *conn)
                .await
                .ok()?;
            Some(Throttle {
                allowed: allowed == 1,
                shape,
                available: available.parse().ok()?,
                consumed_today: consumed.max(0) as u64,
                day: today,
                fallback: false,
            })
        };
        let answer = self
            .guarded(async {
                tokio::time::timeout(Duration::from_millis(500), call)
                    .await
                    .ok()
                    .flatten()
            })
            .await;
        answer.unwrap_or_else(|| {
            let closed = cost > 0 && self.failed_closed();
            Throttle {
                allowed: !closed,
                shape,
                available: if closed { 0.0 } else { f64::from(shape.size) },
                consumed_today: 0,
                day,
                fallback: true,
            }
        })
    }

    /// Runs a Redis call unless the breaker is open; a failure (`None`) opens it.
    async fn guarded<T>(&self, call: impl std::future::Future<Output = Option<T>>) -> Option<T> {
        let now = std::time::Instant::now();
        let skip = self
            .redis_retry_at
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some_and(|at| now < at);
        if skip {
            return None;
        }
        let answer = call.await;
        if answer.is_none() {
            *self
                .redis_retry_at
                .lock()
                .unwrap_or_else(|p| p.into_inner()) = Some(now + REDIS_BACKOFF);
        }
        answer
    }

    /// Counts a Redis failure; true when the policy refuses traffic.
    fn failed_closed(&self) -> bool {
        let closed = self.on_redis_error == RedisErrorPolicy::Closed;
        metrics::counter!("tenantry_rate_limit_errors_total", "policy" => if closed { "closed" } else { "open" }).increment(1);
        closed
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

impl RateLimiter {
    fn bucket_local(
        &self,
        tenant_id: TenantId,
        shape: BucketShape,
        cost: i64,
        charged_on: i64,
    ) -> Throttle {
        let now = std::time::Instant::now();
        let day = chrono::Utc::now().timestamp().div_euclid(86_400);
        let size = f64::from(shape.size);
        let mut map = self.local_buckets.lock().unwrap_or_else(|p| p.into_inner());
        let b = map.entry(tenant_id).or_insert(LocalBucket {
            available: size,
            at: now,
            day,
            consumed: 0,
        });
        let elapsed = now.duration_since(b.at).as_secs_f64();
        b.available = (b.available + elapsed * shape.restore_rate).min(size);
        b.at = now;
        if b.day != day {
            b.day = day;
            b.consumed = 0;
        }
        let allowed = cost as f64 <= b.available;
        if allowed {
            b.available = (b.available - cost as f64).min(size);
            if cost > 0 || charged_on == day {
                b.consumed = (b.consumed + cost).max(0);
            }
        }
        Throttle {
            allowed,
            shape,
            available: b.available,
            consumed_today: b.consumed as u64,
            day,
            fallback: false,
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

    #[test]
    fn the_local_bucket_refuses_what_does_not_fit_and_takes_refunds() {
        let rl = RateLimiter::new(None, "t:");
        let t = TenantId::now_v7();
        let shape = BucketShape {
            size: 100,
            restore_rate: 0.001,
        };
        let a = rl.bucket_local(t, shape, 70, -1);
        assert!(a.allowed && a.available < 30.1 && a.consumed_today == 70);
        let b = rl.bucket_local(t, shape, 40, -1);
        assert!(!b.allowed, "40 does not fit in 30");
        assert!(b.retry_after_secs(40) >= 9_000, "10 points at 0.001/s");
        let c = rl.bucket_local(t, shape, -20, a.day);
        assert!(c.allowed && c.available > 49.9 && c.consumed_today == 50);
        // A refund of another day's charge refills the bucket but leaves today's count.
        let d = rl.bucket_local(t, shape, -10, a.day - 1);
        assert!(d.available > 59.9 && d.consumed_today == 50);
        assert!(rl.bucket_local(t, shape, 40, -1).allowed);
        assert_eq!(
            rl.bucket_local(t, shape, -1000, a.day).available,
            100.0,
            "capped at size"
        );
    }

    #[test]
    fn a_plan_bucket_refills_in_a_minute() {
        let s = BucketShape::for_requests_per_minute(10);
        assert_eq!(s.size, 1000);
        assert!((s.restore_rate - 16.666).abs() < 0.01);
    }
}
