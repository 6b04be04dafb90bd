//! Settings, read once from the environment (and `.env`) at start-up and validated there, so a
//! bad value stops the process with a message instead of failing a request later.
//!
//! `mod.rs` holds `Settings` and the order in which it is read; each group of settings with
//! rules of its own has a file: `limits` (GraphQL, WebSocket, per-tenant bounds), `billing`
//! (mode, webhook secrets, Stripe price ids), `mail` (SMTP and the sender), `production` (the
//! gate `serve` passes) and `env` (how one variable is read and parsed).

mod billing;
mod env;
mod limits;
mod mail;
mod notifications;
mod production;

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{bail, Context as _};

pub use billing::{BillingMode, PriceOverride};
pub use env::is_plain_identifier;
use env::{decode_key, Env};
pub use limits::{BucketShape, GraphqlLimits, MemberSoftPolicy, TenantBounds, WsLimits};
pub use mail::{SmtpUrl, DEFAULT_MAIL_FROM};
pub use notifications::DeliverySettings;
pub use production::{MIN_SECRET_BYTES, SHIPPED_EXAMPLE_KEYS, SHIPPED_EXAMPLE_SECRETS};

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
    /// `JWT_JWKS_URL`: an identity provider's published signing keys (http(s) URL).
    pub jwt_jwks_url: Option<String>,
    /// `JWT_JWKS_TTL`: how long a fetched key set is used before it is fetched again.
    pub jwt_jwks_ttl: Duration,
    /// `JWT_JWKS_MIN_REFRESH`: the least time between two fetches caused by unknown `kid`s
    /// (and the longest wait between retries while the set cannot be fetched).
    pub jwt_jwks_min_refresh: Duration,
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
    /// `MEMBERSHIP_ENFORCED` (default true): tenant users' JWTs are checked against the
    /// tenant's members (`members::membership`); false keeps claim-only behaviour.
    pub membership_enforced: bool,
    pub log_format: LogFormat,
    pub admin_maintenance_mode: bool,
    pub rate_limits_enabled: bool,
    /// `API_KEY_ROTATION_OVERLAP`: how long a rotated API key keeps working (default 24 h).
    pub api_key_rotation_overlap: Duration,
    /// `RATE_LIMIT_ON_REDIS_ERROR`: what the rate limiter does when Redis fails.
    pub rate_limit_on_redis_error: RedisErrorPolicy,
    pub environment: String,
    pub request_timeout: Duration,
    pub usage_writers: usize,
    /// Seconds between scheduler ticks; 0 turns the in-process scheduler off.
    pub jobs_interval_secs: u64,
    /// Requests per minute by plan slug, overriding the plan's own number (`RATE_LIMIT_<PLAN>`).
    pub rate_limit_overrides: Vec<(String, u32)>,
    /// Cost buckets by plan slug, overriding the one derived from the plan's requests a
    /// minute (`COST_LIMIT_<PLAN>` = `<size>` or `<size>/<points a second>`).
    pub cost_limit_overrides: Vec<(String, BucketShape)>,
    pub graphql: GraphqlLimits,
    pub bounds: TenantBounds,
    /// DNS server for custom-domain verification (`DOMAIN_VERIFICATION_DNS`, host:port);
    /// `None` = the system resolver.
    pub domain_verification_dns: Option<std::net::SocketAddr>,
    /// Rows per table a tenant export may hold (`EXPORT_MAX_ROWS`, default 100,000).
    pub export_max_rows: u64,
    /// Outbound webhooks and the notification workers.
    pub delivery: DeliverySettings,
    /// `SMTP_URL`: where notification mail goes; `None`: mail is logged, not sent.
    pub smtp_url: Option<SmtpUrl>,
    /// `MAIL_FROM`: the sender of notification mail (default `Tenantry <no-reply@localhost>`).
    pub mail_from: lettre::message::Mailbox,
}

/// `RATE_LIMIT_ON_REDIS_ERROR`: `open` lets requests through when the limiter's Redis fails
/// (counted), `closed` refuses them with `Retry-After`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedisErrorPolicy {
    Open,
    Closed,
}

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
        let env = Env::new(get);
        let var = |k: &str| env.var(k);
        let parse = |k: &str, default: u64| env.number(k, default);
        let flag = |k: &str, default: bool| env.flag(k, default);

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

        let jwt_jwks_url = var("JWT_JWKS_URL").map(check_jwks_url).transpose()?;
        let jwt_jwks_ttl = env.duration("JWT_JWKS_TTL", Duration::from_secs(600))?;
        let jwt_jwks_min_refresh = env.duration("JWT_JWKS_MIN_REFRESH", Duration::from_secs(30))?;
        for (k, d) in [
            ("JWT_JWKS_TTL", jwt_jwks_ttl),
            ("JWT_JWKS_MIN_REFRESH", jwt_jwks_min_refresh),
        ] {
            if d < Duration::from_secs(1) {
                bail!("{k} must be at least 1s, got {d:?}");
            }
        }

        let bounds = TenantBounds::read(&env)?;

        let stripe_secret_key = var("STRIPE_SECRET_KEY");
        let (billing_mode, billing_mode_explicit) =
            billing::billing_mode(&env, stripe_secret_key.as_deref())?;

        let rate_limit_on_redis_error = match env.lower("RATE_LIMIT_ON_REDIS_ERROR").as_deref() {
            None | Some("open") => RedisErrorPolicy::Open,
            Some("closed") => RedisErrorPolicy::Closed,
            Some(other) => bail!("RATE_LIMIT_ON_REDIS_ERROR must be open or closed, got {other:?}"),
        };

        Ok(Settings {
            database_url: var("DATABASE_URL").unwrap_or_else(|| DEFAULT_DATABASE_URL.into()),
            database_app_role,
            database_pool_size: parse("DATABASE_POOL_SIZE", 16)? as u32,
            redis_url: var("REDIS_URL"),
            redis_prefix: var("REDIS_KEY_PREFIX").unwrap_or_else(|| "tenantry:".into()),
            bind_addr,
            jwt_secret: var("JWT_SECRET"),
            jwt_public_key_pem,
            jwt_jwks_url,
            jwt_jwks_ttl,
            jwt_jwks_min_refresh,
            jwt_issuer: var("JWT_ISSUER"),
            jwt_audience: var("JWT_AUDIENCE"),
            service_token: var("SERVICE_TOKEN"),
            stripe_secret_key,
            billing_mode,
            billing_mode_explicit,
            stripe_webhook_secrets: billing::webhook_secrets(&env),
            stripe_api_base: var("STRIPE_API_BASE"),
            stripe_timeout_ms: parse("STRIPE_TIMEOUT_MS", 10_000)?,
            stripe_price_overrides: billing::price_overrides(&env)?,
            config_encryption_key,
            base_domain: var("BASE_DOMAIN").map(|d| d.trim_start_matches('.').to_ascii_lowercase()),
            log_format,
            admin_maintenance_mode: flag("ADMIN_MAINTENANCE_MODE", false)?,
            rate_limits_enabled: flag("RATE_LIMITS_ENABLED", true)?,
            membership_enforced: flag("MEMBERSHIP_ENFORCED", true)?,
            api_key_rotation_overlap: env
                .duration("API_KEY_ROTATION_OVERLAP", Duration::from_secs(24 * 3600))?,
            rate_limit_on_redis_error,
            request_timeout: Duration::from_secs(parse("REQUEST_TIMEOUT_SECS", 30)?),
            usage_writers: parse("USAGE_WRITERS", 2)?.clamp(1, 64) as usize,
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
            smtp_url: var("SMTP_URL").as_deref().map(SmtpUrl::parse).transpose()?,
            mail_from: mail::mail_from(var("MAIL_FROM"))?,
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
            cost_limit_overrides: {
                let mut v = Vec::new();
                for plan in ["free", "starter", "professional", "enterprise"] {
                    let k = format!("COST_LIMIT_{}", plan.to_ascii_uppercase());
                    if let Some(raw) = var(&k) {
                        v.push((plan.to_owned(), bucket_shape(&k, &raw)?));
                    }
                }
                v
            },
            graphql: GraphqlLimits::read(&env, production)?,
            delivery: DeliverySettings::read(
                &env,
                environment == "development",
                parse("DATABASE_POOL_SIZE", 16)?,
            )?,
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
}

/// `<size>` (refilled in a minute) or `<size>/<points a second>`.
fn bucket_shape(key: &str, raw: &str) -> anyhow::Result<BucketShape> {
    let (size, rate) = match raw.split_once('/') {
        Some((s, r)) => (s.trim(), Some(r.trim())),
        None => (raw.trim(), None),
    };
    let size: u32 = size
        .parse()
        .ok()
        .filter(|n| (1..=100_000_000).contains(n))
        .with_context(|| format!("{key} must be <size>[/<points a second>] with a size from 1 to 100000000, got {raw:?}"))?;
    let restore_rate = match rate {
        None => f64::from(size) / 60.0,
        Some(r) => r
            .parse::<f64>()
            .ok()
            .filter(|r| r.is_finite() && *r > 0.0 && *r <= 100_000_000.0)
            .with_context(|| format!("{key}: the restore rate must be a positive number of points a second, got {raw:?}"))?,
    };
    Ok(BucketShape { size, restore_rate })
}

/// `JWT_JWKS_URL` must be an absolute http(s) URL (production also refuses plain http to
/// another host: see `production`).
fn check_jwks_url(url: String) -> anyhow::Result<String> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"));
    match rest {
        Some(rest) if !rest.is_empty() && !rest.starts_with('/') => Ok(url),
        _ => bail!(
            "JWT_JWKS_URL must be an https:// URL (e.g. https://auth.example.com/.well-known/jwks.json), got {url:?}"
        ),
    }
}

#[cfg(test)]
mod tests {
    //! `settings(..)` and the production fixtures serve the tests of every file of `config`.
    use super::*;
    use std::collections::HashMap;

    pub(super) fn settings(pairs: &[(&str, &str)]) -> anyhow::Result<Settings> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::from_lookup(|k| map.get(k).cloned())
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
        assert_eq!(s.jwt_jwks_ttl, Duration::from_secs(600));
        assert_eq!(s.jwt_jwks_min_refresh, Duration::from_secs(30));
    }

    #[test]
    fn jwks_settings_are_checked() {
        let s = settings(&[
            ("JWT_JWKS_URL", "https://idp.example.com/jwks"),
            ("JWT_JWKS_TTL", "5m"),
        ])
        .unwrap();
        assert_eq!(
            s.jwt_jwks_url.as_deref(),
            Some("https://idp.example.com/jwks")
        );
        assert_eq!(s.jwt_jwks_ttl, Duration::from_secs(300));
        for (k, v) in [
            ("JWT_JWKS_URL", "idp.example.com/jwks"),
            ("JWT_JWKS_URL", "ftp://idp.example.com/jwks"),
            ("JWT_JWKS_MIN_REFRESH", "0s"),
            ("JWT_JWKS_TTL", "often"),
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

    pub(super) const STRONG: &str = "0123456789abcdef0123456789abcdef-strong";
    pub(super) const KEY: &str = "c3Ryb25nLWtleS0zMi1ieXRlcy1sb25nLXJhbmRvbSE=";

    /// A production environment that passes, with one variable replaced (or removed: "").
    pub(super) fn production(with: (&str, &str)) -> anyhow::Result<Settings> {
        let mut pairs = vec![
            ("APP_ENV", "production"),
            ("JWT_SECRET", STRONG),
            ("SERVICE_TOKEN", STRONG),
            ("CONFIG_ENCRYPTION_KEY", KEY),
            ("STRIPE_SECRET_KEY", "sk_live_x"),
            ("JWT_ISSUER", "https://idp.example.com/"),
            ("JWT_AUDIENCE", "tenantry"),
        ];
        pairs.retain(|(k, _)| *k != with.0);
        pairs.push(with);
        settings(&pairs)
    }

    pub(super) fn refusal(s: &Settings) -> String {
        s.check_serve().expect_err("serve must refuse").to_string()
    }

    #[test]
    fn cost_limits_take_a_size_and_a_rate() {
        let s = settings(&[("COST_LIMIT_FREE", "300/100"), ("COST_LIMIT_PRO", "1")]).unwrap();
        let free = BucketShape {
            size: 300,
            restore_rate: 100.0,
        };
        assert_eq!(s.cost_limit_overrides, vec![("free".to_owned(), free)]);
        let s = settings(&[("COST_LIMIT_STARTER", "600")]).unwrap();
        assert_eq!(s.cost_limit_overrides[0].1.restore_rate, 10.0);
        for bad in ["0", "x", "10/0", "10/-1", "10/nan"] {
            let err = settings(&[("COST_LIMIT_FREE", bad)])
                .unwrap_err()
                .to_string();
            assert!(err.contains("COST_LIMIT_FREE"), "{bad}: {err}");
        }
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

    #[test]
    fn production_switches_introspection_and_graphiql_off() {
        let s = settings(&[("APP_ENV", "production")]).unwrap();
        assert!(!s.graphql.introspection && !s.graphql.graphiql);
        assert_eq!(s.log_format, LogFormat::Json);
    }
}
