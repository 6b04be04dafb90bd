//! Delivery of tenant notifications (SPEC §12): outbound webhooks and the workers.

use std::time::Duration;

use anyhow::bail;

use super::env::Env;

#[derive(Debug, Clone)]
pub struct DeliverySettings {
    /// `OUTBOUND_WEBHOOKS_ALLOW_PRIVATE`: endpoints on private, loopback or link-local
    /// addresses (refused by default so tenants cannot probe the operator's network).
    pub allow_private: bool,
    /// Plain `http://` endpoints: development only.
    pub allow_http: bool,
    /// `WEBHOOK_TIMEOUT` (10 s): one attempt, connect to the last byte of the answer's head.
    pub timeout: Duration,
    /// `WEBHOOK_RETRY_BASE` (1 min): the first retry's delay, doubled per attempt up to
    /// `WEBHOOK_RETRY_MAX_INTERVAL` (6 h).
    pub retry_base: Duration,
    pub retry_max_interval: Duration,
    /// `WEBHOOK_RETRY_FOR` (3 days): how long a delivery is retried; an endpoint whose
    /// delivery fails for that long is disabled and the tenant told by mail.
    pub retry_for: Duration,
    /// `NOTIFICATION_WORKERS` (2): deliveries sent at once by this instance; 0 turns the
    /// workers off (another instance delivers).
    pub workers: usize,
    /// `NOTIFICATION_POLL_INTERVAL` (1 s): how often idle workers look for new work.
    pub poll: Duration,
    /// `NOTIFICATION_LEASE` (2 min): how long a claimed delivery is left to its worker before
    /// another may claim it (a worker that died mid-send); longer than any send (a webhook's
    /// `WEBHOOK_TIMEOUT`, a mail's 60 s).
    pub lease: Duration,
}

impl DeliverySettings {
    pub(super) fn read(
        env: &Env<impl Fn(&str) -> Option<String>>,
        development: bool,
        pool_size: u64,
    ) -> anyhow::Result<Self> {
        let s = DeliverySettings {
            allow_private: env.flag("OUTBOUND_WEBHOOKS_ALLOW_PRIVATE", false)?,
            allow_http: development,
            timeout: env.duration("WEBHOOK_TIMEOUT", Duration::from_secs(10))?,
            retry_base: env.duration("WEBHOOK_RETRY_BASE", Duration::from_secs(60))?,
            retry_max_interval: env
                .duration("WEBHOOK_RETRY_MAX_INTERVAL", Duration::from_secs(6 * 3600))?,
            retry_for: env.duration("WEBHOOK_RETRY_FOR", Duration::from_secs(3 * 24 * 3600))?,
            workers: env.ranged("NOTIFICATION_WORKERS", 2, 0, 64)? as usize,
            poll: env.duration("NOTIFICATION_POLL_INTERVAL", Duration::from_secs(1))?,
            lease: env.duration("NOTIFICATION_LEASE", Duration::from_secs(120))?,
        };
        if s.lease <= s.timeout {
            bail!(
                "NOTIFICATION_LEASE ({:?}) must be longer than WEBHOOK_TIMEOUT ({:?})",
                s.lease,
                s.timeout
            );
        }
        if s.workers as u64 >= pool_size {
            bail!(
                "NOTIFICATION_WORKERS ({}) must be below DATABASE_POOL_SIZE ({pool_size}): each \
                 worker may hold a connection while it sends mail",
                s.workers
            );
        }
        for (k, d) in [
            ("WEBHOOK_TIMEOUT", s.timeout),
            ("WEBHOOK_RETRY_BASE", s.retry_base),
            ("WEBHOOK_RETRY_MAX_INTERVAL", s.retry_max_interval),
            ("WEBHOOK_RETRY_FOR", s.retry_for),
            ("NOTIFICATION_POLL_INTERVAL", s.poll),
        ] {
            if d < Duration::from_millis(10) {
                bail!("{k} must be at least 10ms, got {d:?}");
            }
        }
        if s.timeout > Duration::from_secs(60) {
            bail!("WEBHOOK_TIMEOUT must be at most 60s, got {:?}", s.timeout);
        }
        Ok(s)
    }

    /// The delay before attempt `attempts + 1` after `attempts` failed ones.
    pub fn backoff(&self, attempts: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempts.saturating_sub(1).min(30));
        self.retry_base
            .saturating_mul(factor)
            .min(self.retry_max_interval)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let env = Env::new(|k: &str| (k == "WEBHOOK_RETRY_BASE").then(|| "1s".to_string()));
        let s = DeliverySettings::read(&env, false, 16).unwrap();
        assert_eq!(s.backoff(1), Duration::from_secs(1));
        assert_eq!(s.backoff(2), Duration::from_secs(2));
        assert_eq!(s.backoff(5), Duration::from_secs(16));
        assert_eq!(s.backoff(40), Duration::from_secs(6 * 3600));
        assert!(!s.allow_private && !s.allow_http);
    }
}
