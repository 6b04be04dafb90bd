//! Settings, read once from the environment (and `.env`) at start-up and validated there, so a
//! bad value stops the process with a message instead of failing a request later.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _};

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

#[derive(Debug, Clone)]
pub struct Settings {
    pub database_url: String,
    pub database_app_role: String,
    pub database_pool_size: u32,
    pub redis_url: Option<String>,
    pub redis_prefix: String,
    pub bind_addr: SocketAddr,
    pub jwt_secret: Option<String>,
    pub jwt_public_key_pem: Option<String>,
    pub jwt_jwks_url: Option<String>,
    pub jwt_issuer: Option<String>,
    pub jwt_audience: Option<String>,
    pub service_token: Option<String>,
    /// `None` in LOCAL billing mode (a key with `BILLING_MODE=local` is refused).
    pub stripe_secret_key: Option<String>,
    /// `BILLING_MODE`: `stripe` (needs `STRIPE_SECRET_KEY`) or `local`.
    pub billing_mode: BillingMode,
    /// Whether `BILLING_MODE` was set (production refuses an implicit local mode).
    pub billing_mode_explicit: bool,
    /// `STRIPE_WEBHOOK_SECRET`: one or more signing secrets, comma separated (rotation).
    pub stripe_webhook_secrets: Vec<String>,
    pub stripe_api_base: Option<String>,
    /// Per-attempt timeout of Stripe calls (`STRIPE_TIMEOUT_MS`, default 10 s).
    pub stripe_timeout_ms: u64,
    /// Stripe price ids of a real account, applied by `tenantry seed`:
    /// `STRIPE_PRICE_<PLAN>_<REGION>_<CYCLE>` and/or `STRIPE_PRICES_FILE` (JSON
    /// `{"starter": {"US": {"MONTHLY": "price_..."}}}`); the variables win over the file.
    pub stripe_price_overrides: Vec<PriceOverride>,
    pub config_encryption_key: Option<[u8; 32]>,
    pub base_domain: Option<String>,
    pub log_format: LogFormat,
    pub admin_maintenance_mode: bool,
    pub rate_limits_enabled: bool,
    /// `RATE_LIMIT_ON_REDIS_ERROR`: what the rate limiter does when Redis fails.
    pub rate_limit_on_redis_error: RedisErrorPolicy,
    pub environment: String,
    pub request_timeout: Duration,
    pub usage_writers: usize,
    /// Seconds between scheduler ticks; 0 turns the in-process scheduler off.
    pub jobs_interval_secs: u64,
    /// Requests per minute by plan slug, overriding the plan's own number (`RATE_LIMIT_<PLAN>`).
    pub rate_limit_overrides: Vec<(String, u32)>,
    pub graphql: GraphqlLimits,
    pub bounds: TenantBounds,
    /// DNS server for custom-domain verification (`DOMAIN_VERIFICATION_DNS`, host:port);
    /// `None` = the system resolver.
    pub domain_verification_dns: Option<std::net::SocketAddr>,
    /// Rows per table a tenant export may hold (`EXPORT_MAX_ROWS`, default 100,000).
    pub export_max_rows: u64,
}

/// One catalogue price's Stripe id: (plan slug, region, billing cycle, price id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PriceOverride {
    pub plan: String,
    pub region: String,
    pub cycle: String,
    pub price_id: String,
}

const PRICE_PLANS: [&str; 4] = ["free", "starter", "professional", "enterprise"];
const PRICE_REGIONS: [&str; 5] = ["US", "CA", "EU", "GB", "AU"];
const PRICE_CYCLES: [&str; 2] = ["MONTHLY", "YEARLY"];

fn price_overrides(var: impl Fn(&str) -> Option<String>) -> anyhow::Result<Vec<PriceOverride>> {
    let file: serde_json::Value = match var("STRIPE_PRICES_FILE") {
        None => serde_json::Value::Null,
        Some(path) => {
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("STRIPE_PRICES_FILE: cannot read {path}"))?;
            serde_json::from_str(&text)
                .with_context(|| format!("STRIPE_PRICES_FILE: {path} is not JSON"))?
        }
    };
    let mut out = Vec::new();
    for plan in PRICE_PLANS {
        for region in PRICE_REGIONS {
            for cycle in PRICE_CYCLES {
                let key = format!(
                    "STRIPE_PRICE_{}_{region}_{cycle}",
                    plan.to_ascii_uppercase()
                );
                let price = var(&key).or_else(|| {
                    file.pointer(&format!("/{plan}/{region}/{cycle}"))
                        .and_then(|v| v.as_str())
                        .map(str::to_owned)
                });
                if let Some(price_id) = price {
                    if !price_id.starts_with("price_") {
                        bail!("{key}: a Stripe price id starts with price_, got {price_id:?}");
                    }
                    out.push(PriceOverride {
                        plan: plan.into(),
                        region: region.into(),
                        cycle: cycle.into(),
                        price_id,
                    });
                }
            }
        }
    }
    Ok(out)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BillingMode {
    /// Stripe is the source of truth (`STRIPE_SECRET_KEY` required).
    Stripe,
    /// No Stripe calls; plan changes apply at once (`billingMode: LOCAL`).
    Local,
}

/// `RATE_LIMIT_ON_REDIS_ERROR`: `open` lets requests through when the limiter's Redis fails
/// (counted), `closed` refuses them with `Retry-After`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedisErrorPolicy {
    Open,
    Closed,
}

/// Every secret shipped as an example in this repository (docker-compose.yml, .env.example,
/// README, tests, benches, older versions of them). Anyone can read these, so `serve` refuses
/// them with `APP_ENV=production`; a unit test checks the shipped files against this list.
pub const SHIPPED_EXAMPLE_SECRETS: &[&str] = &[
    // docker-compose.yml (before secrets became required)
    "change-me",
    "change-me-too",
    // .env.example
    "dev-secret-change-me",
    "dev-service-token",
    // tests and benches
    "test-secret-0123456789",
    "bench-secret",
    "bench-token",
];

/// `CONFIG_ENCRYPTION_KEY` values shipped as examples (base64).
pub const SHIPPED_EXAMPLE_KEYS: &[&str] = &[
    // docker-compose.yml and .env.example
    "ZGV2LWtleS1jaGFuZ2UtbWUtMzItYnl0ZXMtbG9uZyE=",
    // tests
    "a2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2s=",
];

/// Minimum length of an HS256 `JWT_SECRET` and of `SERVICE_TOKEN` in production.
pub const MIN_SECRET_BYTES: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Pretty,
}

pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@localhost:5432/tenantry";

impl Settings {
    /// Reads `.env` (when present) and the process environment.
    pub fn from_env() -> anyhow::Result<Self> {
        let _ = dotenvy::dotenv();
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// Builds settings from any key lookup; tests pass a map instead of mutating the process env.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> anyhow::Result<Self> {
        let var = |k: &str| {
            get(k)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let parse = |k: &str, default: u64| -> anyhow::Result<u64> {
            match var(k) {
                None => Ok(default),
                Some(v) => v
                    .parse()
                    .with_context(|| format!("{k} must be a whole number, got {v:?}")),
            }
        };
        let flag = |k: &str, default: bool| -> anyhow::Result<bool> {
            match var(k).map(|v| v.to_ascii_lowercase()) {
                None => Ok(default),
                Some(v) if ["1", "true", "yes", "on"].contains(&v.as_str()) => Ok(true),
                Some(v) if ["0", "false", "no", "off"].contains(&v.as_str()) => Ok(false),
                Some(v) => bail!("{k} must be true or false, got {v:?}"),
            }
        };

        let environment = var("APP_ENV").unwrap_or_else(|| "development".into());
        let production = environment == "production";

        let database_app_role = var("DATABASE_APP_ROLE").unwrap_or_else(|| "tenantry_app".into());
        if !is_plain_identifier(&database_app_role) {
            bail!("DATABASE_APP_ROLE must match [a-z_][a-z0-9_]* (got {database_app_role:?})");
        }

        let bind_addr = var("BIND_ADDR")
            .unwrap_or_else(|| "127.0.0.1:8080".into())
            .parse()
            .context("BIND_ADDR must be host:port, e.g. 127.0.0.1:8080")?;

        let log_format = match var("LOG_FORMAT").as_deref() {
            None if production => LogFormat::Json,
            None => LogFormat::Pretty,
            Some("json") => LogFormat::Json,
            Some("pretty") => LogFormat::Pretty,
            Some(other) => bail!("LOG_FORMAT must be json or pretty, got {other:?}"),
        };

        let config_encryption_key = match var("CONFIG_ENCRYPTION_KEY") {
            None => None,
            Some(b64) => Some(decode_key(&b64)?),
        };

        let jwt_public_key_pem = match var("JWT_PUBLIC_KEY_PEM") {
            Some(v) if !v.starts_with("-----") => Some(
                std::fs::read_to_string(&v)
                    .with_context(|| format!("JWT_PUBLIC_KEY_PEM: cannot read PEM file {v}"))?,
            ),
            other => other.map(|v| v.replace("\\n", "\n")),
        };

        let ranged = |k: &str, default: u64, min: u64, max: u64| -> anyhow::Result<i64> {
            let v = parse(k, default)?;
            if !(min..=max).contains(&v) {
                bail!("{k} must be between {min} and {max}, got {v}");
            }
            Ok(v as i64)
        };
        let bounds = TenantBounds {
            usage_max_amount: ranged(
                "USAGE_MAX_AMOUNT",
                1_000_000_000,
                1,
                crate::quotas::metering::MAX_AMOUNT as u64,
            )?,
            usage_member_soft_policy: MemberSoftPolicy::parse(
                var("USAGE_MEMBER_SOFT_POLICY").as_deref(),
            )?,
            config_max_entries: ranged("CONFIG_MAX_ENTRIES", 200, 1, 1_000_000)?,
            config_max_bytes: ranged("CONFIG_MAX_BYTES", 262_144, 1, 1 << 34)?,
        };

        let stripe_secret_key = var("STRIPE_SECRET_KEY");
        let billing_mode_explicit = var("BILLING_MODE").is_some();
        let billing_mode = match var("BILLING_MODE")
            .map(|v| v.to_ascii_lowercase())
            .as_deref()
        {
            None if stripe_secret_key.is_some() => BillingMode::Stripe,
            None => BillingMode::Local,
            Some("stripe") => BillingMode::Stripe,
            Some("local") => BillingMode::Local,
            Some(other) => bail!("BILLING_MODE must be stripe or local, got {other:?}"),
        };
        if billing_mode == BillingMode::Stripe && stripe_secret_key.is_none() {
            bail!(
                "BILLING_MODE=stripe needs STRIPE_SECRET_KEY (sk_live_... or sk_test_...); \
                 set it, or set BILLING_MODE=local to run billing without Stripe"
            );
        }
        if billing_mode == BillingMode::Local && stripe_secret_key.is_some() {
            bail!(
                "BILLING_MODE=local but STRIPE_SECRET_KEY is set: set BILLING_MODE=stripe to bill \
                 through Stripe, or unset STRIPE_SECRET_KEY to run billing locally"
            );
        }

        let rate_limit_on_redis_error = match var("RATE_LIMIT_ON_REDIS_ERROR")
            .map(|v| v.to_ascii_lowercase())
            .as_deref()
        {
            None | Some("open") => RedisErrorPolicy::Open,
            Some("closed") => RedisErrorPolicy::Closed,
            Some(other) => bail!("RATE_LIMIT_ON_REDIS_ERROR must be open or closed, got {other:?}"),
        };

        let introspection = flag("GRAPHQL_INTROSPECTION", !production)?;
        Ok(Settings {
            database_url: var("DATABASE_URL").unwrap_or_else(|| DEFAULT_DATABASE_URL.into()),
            database_app_role,
            database_pool_size: parse("DATABASE_POOL_SIZE", 16)? as u32,
            redis_url: var("REDIS_URL"),
            redis_prefix: var("REDIS_KEY_PREFIX").unwrap_or_else(|| "tenantry:".into()),
            bind_addr,
            jwt_secret: var("JWT_SECRET"),
            jwt_public_key_pem,
            jwt_jwks_url: var("JWT_JWKS_URL"),
            jwt_issuer: var("JWT_ISSUER"),
            jwt_audience: var("JWT_AUDIENCE"),
            service_token: var("SERVICE_TOKEN"),
            stripe_secret_key,
            billing_mode,
            billing_mode_explicit,
            stripe_webhook_secrets: var("STRIPE_WEBHOOK_SECRET")
                .map(|v| {
                    v.split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(String::from)
                        .collect()
                })
                .unwrap_or_default(),
            stripe_api_base: var("STRIPE_API_BASE"),
            stripe_timeout_ms: parse("STRIPE_TIMEOUT_MS", 10_000)?,
            stripe_price_overrides: price_overrides(var)?,
            config_encryption_key,
            base_domain: var("BASE_DOMAIN").map(|d| d.trim_start_matches('.').to_ascii_lowercase()),
            log_format,
            admin_maintenance_mode: flag("ADMIN_MAINTENANCE_MODE", false)?,
            rate_limits_enabled: flag("RATE_LIMITS_ENABLED", true)?,
            rate_limit_on_redis_error,
            request_timeout: Duration::from_secs(parse("REQUEST_TIMEOUT_SECS", 30)?),
            usage_writers: parse("USAGE_WRITERS", 4)?.clamp(1, 64) as usize,
            jobs_interval_secs: parse("JOBS_INTERVAL_SECS", 60)?,
            domain_verification_dns: var("DOMAIN_VERIFICATION_DNS")
                .map(|v| {
                    use std::net::ToSocketAddrs;
                    v.to_socket_addrs()
                        .ok()
                        .and_then(|mut a| a.next())
                        .with_context(|| {
                            format!("DOMAIN_VERIFICATION_DNS must be host:port, got {v:?}")
                        })
                })
                .transpose()?,
            export_max_rows: parse("EXPORT_MAX_ROWS", 100_000)?.clamp(1, 100_000_000),
            rate_limit_overrides: {
                let mut v = Vec::new();
                for plan in ["free", "starter", "professional", "enterprise"] {
                    let k = format!("RATE_LIMIT_{}", plan.to_ascii_uppercase());
                    if var(&k).is_some() {
                        let n = parse(&k, 0)?;
                        if !(1..=1_000_000).contains(&n) {
                            bail!("{k} must be between 1 and 1000000 requests a minute, got {n}");
                        }
                        v.push((plan.to_owned(), n as u32));
                    }
                }
                v
            },
            graphql: GraphqlLimits {
                max_depth: parse("GRAPHQL_MAX_DEPTH", 12)? as usize,
                max_complexity: parse("GRAPHQL_MAX_COMPLEXITY", 2000)? as usize,
                max_aliases: parse("GRAPHQL_MAX_ALIASES", 30)? as usize,
                max_query_bytes: parse("GRAPHQL_MAX_QUERY_BYTES", 32 * 1024)? as usize,
                max_batch: parse("GRAPHQL_MAX_BATCH", 10)? as usize,
                max_body_bytes: parse("HTTP_MAX_BODY_BYTES", 256 * 1024)? as usize,
                introspection,
                graphiql: flag("GRAPHIQL_ENABLED", introspection)?,
                apq_cache_bytes: parse("APQ_CACHE_BYTES", 4 * 1024 * 1024)?.clamp(1024, 1 << 32),
                ws: WsLimits {
                    init_timeout: Duration::from_secs(parse("WS_INIT_TIMEOUT_SECS", 10)?.max(1)),
                    max_operations: parse("WS_MAX_OPERATIONS", 20)?.max(1) as usize,
                    max_sockets_per_tenant: parse("WS_MAX_SOCKETS_PER_TENANT", 100)?.max(1)
                        as usize,
                    outbound_queue: parse("WS_OUTBOUND_QUEUE", 64)?.clamp(1, 10_000) as usize,
                },
            },
            environment,
            bounds,
        })
    }

    /// Local billing mode: no Stripe key, plan changes apply at once (SPEC §2).
    pub fn billing_live(&self) -> bool {
        self.billing_mode == BillingMode::Stripe && self.stripe_secret_key.is_some()
    }

    pub fn is_production(&self) -> bool {
        self.environment == "production"
    }

    /// What makes these settings unsafe to serve the public with: example secrets anyone can
    /// read in this repository, secrets too short to resist guessing, billing that would
    /// silently run without Stripe. Each line names the variable and how to fix it.
    pub fn production_problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let shipped = |v: &str| SHIPPED_EXAMPLE_SECRETS.contains(&v);
        let generate = "generate one with `openssl rand -base64 48`";
        if let Some(secret) = &self.jwt_secret {
            if shipped(secret) {
                problems.push(format!(
                    "JWT_SECRET is an example shipped with Tenantry (anyone can sign tokens with it); {generate}"
                ));
            } else if secret.len() < MIN_SECRET_BYTES {
                problems.push(format!(
                    "JWT_SECRET is {} bytes; HS256 needs at least {MIN_SECRET_BYTES} random bytes: {generate}",
                    secret.len()
                ));
            }
        }
        if let Some(token) = &self.service_token {
            if shipped(token) {
                problems.push(format!(
                    "SERVICE_TOKEN is an example shipped with Tenantry (anyone can call /internal/... with it); {generate}"
                ));
            } else if token.len() < MIN_SECRET_BYTES {
                problems.push(format!(
                    "SERVICE_TOKEN is {} bytes; it needs at least {MIN_SECRET_BYTES}: {generate}",
                    token.len()
                ));
            }
        }
        if let Some(key) = &self.config_encryption_key {
            if SHIPPED_EXAMPLE_KEYS
                .iter()
                .any(|example| decode_key(example).is_ok_and(|k| &k == key))
            {
                problems.push(
                    "CONFIG_ENCRYPTION_KEY is the example shipped with Tenantry (encrypted values \
                     would be readable by anyone); generate one with `openssl rand -base64 32`"
                        .into(),
                );
            }
        }
        if self.is_production()
            && self.billing_mode == BillingMode::Local
            && !self.billing_mode_explicit
        {
            problems.push(
                "STRIPE_SECRET_KEY is not set, so billing would silently run in LOCAL mode (plan \
                 changes free of charge); set STRIPE_SECRET_KEY, or BILLING_MODE=local if that \
                 is intended"
                    .into(),
            );
        }
        problems
    }

    /// `serve`'s gate: with `APP_ENV=production` every problem refuses the start, all of them
    /// named in one message; elsewhere they are returned for the caller to log as warnings.
    pub fn check_serve(&self) -> anyhow::Result<Vec<String>> {
        let problems = self.production_problems();
        if self.is_production() && !problems.is_empty() {
            bail!(
                "refusing to serve with APP_ENV=production:\n  - {}\n(development: set APP_ENV=development)",
                problems.join("\n  - ")
            );
        }
        Ok(problems)
    }
}

/// Role names are interpolated into `SET ROLE`/`GRANT`, so only plain identifiers are allowed.
pub fn is_plain_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && s.len() <= 63
}

fn decode_key(b64: &str) -> anyhow::Result<[u8; 32]> {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|e| anyhow!("CONFIG_ENCRYPTION_KEY must be base64: {e}"))?;
    bytes.try_into().map_err(|b: Vec<u8>| {
        anyhow!(
            "CONFIG_ENCRYPTION_KEY must decode to 32 bytes, got {}",
            b.len()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn settings(pairs: &[(&str, &str)]) -> anyhow::Result<Settings> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn stripe_price_ids_come_from_variables_over_the_file() {
        let path = std::env::temp_dir().join(format!("prices-{}.json", std::process::id()));
        std::fs::write(
            &path,
            r#"{"starter": {"US": {"MONTHLY": "price_file_a", "YEARLY": "price_file_b"}}}"#,
        )
        .unwrap();
        let s = settings(&[
            ("STRIPE_PRICES_FILE", path.to_str().unwrap()),
            ("STRIPE_PRICE_STARTER_US_MONTHLY", "price_env"),
            ("STRIPE_WEBHOOK_SECRET", "whsec_a, whsec_b,"),
        ])
        .unwrap();
        let got: Vec<(&str, &str)> = s
            .stripe_price_overrides
            .iter()
            .map(|o| (o.cycle.as_str(), o.price_id.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![("MONTHLY", "price_env"), ("YEARLY", "price_file_b")]
        );
        assert_eq!(s.stripe_webhook_secrets, vec!["whsec_a", "whsec_b"]);
        assert!(settings(&[("STRIPE_PRICE_STARTER_US_MONTHLY", "prod_x")]).is_err());
        std::fs::remove_file(path).ok();
    }

    #[test]
    fn defaults_are_the_contract() {
        let s = settings(&[]).unwrap();
        assert_eq!(s.database_url, DEFAULT_DATABASE_URL);
        assert_eq!(s.database_app_role, "tenantry_app");
        assert_eq!(s.bind_addr.to_string(), "127.0.0.1:8080");
        assert_eq!(s.graphql.max_depth, 12);
        assert_eq!(s.graphql.max_complexity, 2000);
        assert_eq!(s.graphql.max_aliases, 30);
        assert_eq!(s.graphql.max_batch, 10);
        assert!(s.rate_limits_enabled);
        assert!(!s.billing_live());
        assert_eq!(s.bounds.usage_max_amount, 1_000_000_000);
        assert_eq!(
            s.bounds.usage_member_soft_policy,
            MemberSoftPolicy::WithinLimit
        );
        assert_eq!(s.bounds.config_max_entries, 200);
        assert_eq!(s.bounds.config_max_bytes, 262_144);
    }

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

    #[test]
    fn bad_values_are_refused_with_the_variable_name() {
        let err = settings(&[("DATABASE_APP_ROLE", "x; drop")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("DATABASE_APP_ROLE"), "{err}");
        let err = settings(&[("RATE_LIMITS_ENABLED", "maybe")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("RATE_LIMITS_ENABLED"), "{err}");
        let err = settings(&[("CONFIG_ENCRYPTION_KEY", "c2hvcnQ=")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("32 bytes"), "{err}");
    }

    const STRONG: &str = "0123456789abcdef0123456789abcdef-strong";
    const KEY: &str = "c3Ryb25nLWtleS0zMi1ieXRlcy1sb25nLXJhbmRvbSE=";

    /// A production environment that passes, with one variable replaced (or removed: "").
    fn production(with: (&str, &str)) -> anyhow::Result<Settings> {
        let mut pairs = vec![
            ("APP_ENV", "production"),
            ("JWT_SECRET", STRONG),
            ("SERVICE_TOKEN", STRONG),
            ("CONFIG_ENCRYPTION_KEY", KEY),
            ("STRIPE_SECRET_KEY", "sk_live_x"),
        ];
        pairs.retain(|(k, _)| *k != with.0);
        pairs.push(with);
        settings(&pairs)
    }

    fn refusal(s: &Settings) -> String {
        s.check_serve().expect_err("serve must refuse").to_string()
    }

    #[test]
    fn production_refuses_shipped_and_short_secrets() {
        assert!(production(("RUST_LOG", "info"))
            .unwrap()
            .check_serve()
            .unwrap()
            .is_empty());
        for example in [
            "dev-secret-change-me",
            "change-me",
            "test-secret-0123456789",
        ] {
            let err = refusal(&production(("JWT_SECRET", example)).unwrap());
            assert!(err.contains("JWT_SECRET is an example"), "{err}");
            assert!(err.contains("openssl rand"), "{err}");
        }
        let err = refusal(&production(("JWT_SECRET", "short-but-not-shipped")).unwrap());
        assert!(err.contains("JWT_SECRET is 21 bytes"), "{err}");
        for token in ["dev-service-token", "change-me-too"] {
            let err = refusal(&production(("SERVICE_TOKEN", token)).unwrap());
            assert!(err.contains("SERVICE_TOKEN is an example"), "{err}");
        }
        let err = refusal(&production(("SERVICE_TOKEN", "tiny")).unwrap());
        assert!(err.contains("SERVICE_TOKEN is 4 bytes"), "{err}");
        let err = refusal(
            &production((
                "CONFIG_ENCRYPTION_KEY",
                "ZGV2LWtleS1jaGFuZ2UtbWUtMzItYnl0ZXMtbG9uZyE=",
            ))
            .unwrap(),
        );
        assert!(
            err.contains("CONFIG_ENCRYPTION_KEY is the example"),
            "{err}"
        );
        // Every problem is named at once.
        let s = settings(&[
            ("APP_ENV", "production"),
            ("JWT_SECRET", "change-me"),
            ("SERVICE_TOKEN", "change-me-too"),
        ])
        .unwrap();
        let err = refusal(&s);
        for var in [
            "JWT_SECRET",
            "SERVICE_TOKEN",
            "STRIPE_SECRET_KEY",
            "BILLING_MODE=local",
        ] {
            assert!(err.contains(var), "{var} missing from: {err}");
        }
        // Outside production the same settings serve, with warnings.
        let dev = settings(&[("JWT_SECRET", "change-me")]).unwrap();
        assert_eq!(dev.check_serve().unwrap().len(), 1);
    }

    #[test]
    fn billing_mode_is_explicit_in_production() {
        let err = refusal(&production(("STRIPE_SECRET_KEY", "")).unwrap());
        assert!(
            err.contains("STRIPE_SECRET_KEY is not set") && err.contains("BILLING_MODE=local"),
            "{err}"
        );
        let s = settings(&[
            ("APP_ENV", "production"),
            ("JWT_SECRET", STRONG),
            ("BILLING_MODE", "local"),
        ])
        .unwrap();
        assert!(s.check_serve().unwrap().is_empty());
        assert_eq!(s.billing_mode, BillingMode::Local);
        // Defaults: stripe with a key, local without (outside production).
        assert_eq!(
            settings(&[("STRIPE_SECRET_KEY", "sk_test_x")])
                .unwrap()
                .billing_mode,
            BillingMode::Stripe
        );
        assert_eq!(settings(&[]).unwrap().billing_mode, BillingMode::Local);
        // A key with an explicit local mode is a contradiction, refused rather than guessed.
        let err = settings(&[
            ("STRIPE_SECRET_KEY", "sk_test_x"),
            ("BILLING_MODE", "local"),
        ])
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("BILLING_MODE=local but STRIPE_SECRET_KEY is set"),
            "{err}"
        );
        // stripe without a key is refused everywhere, at once.
        for env in ["development", "production"] {
            let err = settings(&[("APP_ENV", env), ("BILLING_MODE", "stripe")])
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("BILLING_MODE=stripe needs STRIPE_SECRET_KEY"),
                "{err}"
            );
        }
        let err = settings(&[("BILLING_MODE", "free")])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("BILLING_MODE must be stripe or local"),
            "{err}"
        );
    }

    #[test]
    fn rate_limit_on_redis_error_is_open_unless_closed() {
        assert_eq!(
            settings(&[]).unwrap().rate_limit_on_redis_error,
            RedisErrorPolicy::Open
        );
        assert_eq!(
            settings(&[("RATE_LIMIT_ON_REDIS_ERROR", "Closed")])
                .unwrap()
                .rate_limit_on_redis_error,
            RedisErrorPolicy::Closed
        );
        let err = settings(&[("RATE_LIMIT_ON_REDIS_ERROR", "maybe")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("RATE_LIMIT_ON_REDIS_ERROR"), "{err}");
    }

    /// The list of refused examples covers every secret the shipped files carry.
    #[test]
    fn every_shipped_example_secret_is_in_the_list() {
        let files = [
            ("docker-compose.yml", include_str!("../docker-compose.yml")),
            (".env.example", include_str!("../.env.example")),
            ("README.md", include_str!("../README.md")),
        ];
        for (file, text) in files {
            for line in text.lines() {
                let line = line.trim().trim_start_matches('#').trim();
                for var in ["JWT_SECRET", "SERVICE_TOKEN", "CONFIG_ENCRYPTION_KEY"] {
                    // `VAR=value` (dotenv) or `VAR: value` (compose), values without spaces.
                    let Some(rest) = line
                        .strip_prefix(&format!("{var}="))
                        .or_else(|| line.strip_prefix(&format!("{var}: ")))
                    else {
                        continue;
                    };
                    let value = rest.split_whitespace().next().unwrap_or("");
                    if value.is_empty() || value.starts_with('$') || value.starts_with('<') {
                        continue; // `${VAR:?..}`, `$(openssl ..)` or a placeholder
                    }
                    let list: &[&str] = if var == "CONFIG_ENCRYPTION_KEY" {
                        SHIPPED_EXAMPLE_KEYS
                    } else {
                        SHIPPED_EXAMPLE_SECRETS
                    };
                    assert!(
                        list.contains(&value),
                        "{file}: {var}={value} is not in the shipped examples list"
                    );
                }
            }
        }
    }

    #[test]
    fn production_switches_introspection_and_graphiql_off() {
        let s = settings(&[("APP_ENV", "production")]).unwrap();
        assert!(!s.graphql.introspection && !s.graphql.graphiql);
        assert_eq!(s.log_format, LogFormat::Json);
    }
}
