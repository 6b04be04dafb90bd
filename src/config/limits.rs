//! Limits read from the environment: the GraphQL protections (SPEC §5), the WebSocket
//! limits, and what one tenant's callers may write at most.

use std::time::Duration;

use anyhow::bail;

use super::env::Env;

/// GraphQL protections (SPEC §5). Defaults are the contract's numbers.
#[derive(Debug, Clone)]
pub struct GraphqlLimits {
    pub max_depth: usize,
    pub max_complexity: usize,
    pub max_aliases: usize,
    pub max_query_bytes: usize,
    pub max_batch: usize,
    pub max_body_bytes: usize,
    pub introspection: bool,
    pub graphiql: bool,
    /// Bytes of persisted-query text kept for APQ (`APQ_CACHE_BYTES`).
    pub apq_cache_bytes: u64,
    pub ws: WsLimits,
}

/// `/graphql/ws` limits beyond those every operation passes (see `graphql::admission`).
#[derive(Debug, Clone)]
pub struct WsLimits {
    /// Seconds a socket may stay open without a successful `connection_init` (then 4408).
    pub init_timeout: Duration,
    /// Operations running at once on one socket (`WS_MAX_OPERATIONS`).
    pub max_operations: usize,
    /// Open sockets per tenant on one instance (`WS_MAX_SOCKETS_PER_TENANT`).
    pub max_sockets_per_tenant: usize,
    /// Messages waiting to be written to one socket before its streams wait (`WS_OUTBOUND_QUEUE`).
    pub outbound_queue: usize,
}

impl GraphqlLimits {
    /// `GRAPHQL_*`, `HTTP_MAX_BODY_BYTES`, `APQ_CACHE_BYTES` and `WS_*`. Introspection (and
    /// with it GraphiQL) defaults to off in production.
    pub(super) fn read(
        env: &Env<impl Fn(&str) -> Option<String>>,
        production: bool,
    ) -> anyhow::Result<Self> {
        let introspection = env.flag("GRAPHQL_INTROSPECTION", !production)?;
        Ok(GraphqlLimits {
            max_depth: env.number("GRAPHQL_MAX_DEPTH", 12)? as usize,
            max_complexity: env.number("GRAPHQL_MAX_COMPLEXITY", 2000)? as usize,
            max_aliases: env.number("GRAPHQL_MAX_ALIASES", 30)? as usize,
            max_query_bytes: env.number("GRAPHQL_MAX_QUERY_BYTES", 32 * 1024)? as usize,
            max_batch: env.number("GRAPHQL_MAX_BATCH", 10)? as usize,
            max_body_bytes: env.number("HTTP_MAX_BODY_BYTES", 256 * 1024)? as usize,
            introspection,
            graphiql: env.flag("GRAPHIQL_ENABLED", introspection)?,
            apq_cache_bytes: env
                .number("APQ_CACHE_BYTES", 4 * 1024 * 1024)?
                .clamp(1024, 1 << 32),
            ws: WsLimits {
                init_timeout: Duration::from_secs(env.number("WS_INIT_TIMEOUT_SECS", 10)?.max(1)),
                max_operations: env.number("WS_MAX_OPERATIONS", 20)?.max(1) as usize,
                max_sockets_per_tenant: env.number("WS_MAX_SOCKETS_PER_TENANT", 100)?.max(1)
                    as usize,
                outbound_queue: env.number("WS_OUTBOUND_QUEUE", 64)?.clamp(1, 10_000) as usize,
            },
        })
    }
}

/// What a tenant's callers may write at most (usage per call, configuration size).
#[derive(Debug, Clone)]
pub struct TenantBounds {
    /// `USAGE_MAX_AMOUNT`: the largest amount one usage increment may carry.
    pub usage_max_amount: i64,
    /// `USAGE_MEMBER_SOFT_POLICY`: what a tenant member may do with a SOFT quota.
    pub usage_member_soft_policy: MemberSoftPolicy,
    /// `CONFIG_MAX_ENTRIES`: configuration entries per tenant.
    pub config_max_entries: i64,
    /// `CONFIG_MAX_BYTES`: sum of a tenant's stored configuration value sizes.
    pub config_max_bytes: i64,
}

impl TenantBounds {
    pub(super) fn read(env: &Env<impl Fn(&str) -> Option<String>>) -> anyhow::Result<Self> {
        Ok(TenantBounds {
            usage_max_amount: env.ranged(
                "USAGE_MAX_AMOUNT",
                1_000_000_000,
                1,
                crate::quotas::metering::MAX_AMOUNT as u64,
            )?,
            usage_member_soft_policy: MemberSoftPolicy::parse(
                env.var("USAGE_MEMBER_SOFT_POLICY").as_deref(),
            )?,
            config_max_entries: env.ranged("CONFIG_MAX_ENTRIES", 200, 1, 1_000_000)?,
            config_max_bytes: env.ranged("CONFIG_MAX_BYTES", 262_144, 1, 1 << 34)?,
        })
    }
}

/// How a `tenant_member`'s usage meets a SOFT quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberSoftPolicy {
    /// Members may record usage up to the limit, never into overage (the default).
    WithinLimit,
    /// Members may run into overage like admins (up to the plan's overage ceiling).
    Allow,
    /// Members may not record usage at all.
    Deny,
}

impl MemberSoftPolicy {
    fn parse(v: Option<&str>) -> anyhow::Result<Self> {
        match v.map(str::to_ascii_lowercase).as_deref() {
            None | Some("within_limit") => Ok(MemberSoftPolicy::WithinLimit),
            Some("allow") => Ok(MemberSoftPolicy::Allow),
            Some("deny") => Ok(MemberSoftPolicy::Deny),
            Some(other) => {
                bail!("USAGE_MEMBER_SOFT_POLICY must be within_limit, allow or deny, got {other:?}")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::settings;
    use super::*;

    #[test]
    fn tenant_bounds_are_validated() {
        let s = settings(&[
            ("USAGE_MAX_AMOUNT", "500"),
            ("USAGE_MEMBER_SOFT_POLICY", "DENY"),
            ("CONFIG_MAX_ENTRIES", "3"),
            ("CONFIG_MAX_BYTES", "4096"),
        ])
        .unwrap();
        assert_eq!(s.bounds.usage_max_amount, 500);
        assert_eq!(s.bounds.usage_member_soft_policy, MemberSoftPolicy::Deny);
        for (k, v) in [
            ("USAGE_MAX_AMOUNT", "0"),
            ("USAGE_MAX_AMOUNT", "-5"),
            ("USAGE_MEMBER_SOFT_POLICY", "sometimes"),
            ("CONFIG_MAX_ENTRIES", "0"),
            ("CONFIG_MAX_BYTES", "lots"),
        ] {
            let err = settings(&[(k, v)]).unwrap_err().to_string();
            assert!(err.contains(k), "{k}={v}: {err}");
        }
    }
}

/// A plan's cost bucket: how many points it holds and how fast it refills.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BucketShape {
    pub size: u32,
    /// Points a second.
    pub restore_rate: f64,
}

impl BucketShape {
    /// The bucket of a plan allowing `per_minute` requests: 100 points a request, refilled
    /// in a minute (free: 10 → 1,000 points, 16.7 a second).
    pub fn for_requests_per_minute(per_minute: u32) -> Self {
        let size = per_minute.max(1).saturating_mul(100);
        BucketShape {
            size,
            restore_rate: f64::from(size) / 60.0,
        }
    }
}
