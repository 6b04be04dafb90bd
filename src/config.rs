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
    pub stripe_secret_key: Option<String>,
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
    pub environment: String,
    pub request_timeout: Duration,
    pub usage_writers: usize,
    /// Seconds between scheduler ticks; 0 turns the in-process scheduler off.
    pub jobs_interval_secs: u64,
    /// Requests per minute by plan slug, overriding the plan's own number (`RATE_LIMIT_<PLAN>`).
    pub rate_limit_overrides: Vec<(String, u32)>,
    pub graphql: GraphqlLimits,
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
            stripe_secret_key: var("STRIPE_SECRET_KEY"),
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
            export_max_rows: parse("EXPORT_MAX_ROWS", 100_000)?.max(1),
            rate_limit_overrides: {
                let mut v = Vec::new();
                for plan in ["free", "starter", "professional", "enterprise"] {
                    let k = format!("RATE_LIMIT_{}", plan.to_ascii_uppercase());
                    if var(&k).is_some() {
                        v.push((plan.to_owned(), parse(&k, 0)? as u32));
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
            },
            environment,
        })
    }

    /// Local billing mode: no Stripe key, plan changes apply at once (SPEC §2).
    pub fn billing_live(&self) -> bool {
        self.stripe_secret_key.is_some()
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

    #[test]
    fn production_switches_introspection_and_graphiql_off() {
        let s = settings(&[("APP_ENV", "production")]).unwrap();
        assert!(!s.graphql.introspection && !s.graphql.graphiql);
        assert_eq!(s.log_format, LogFormat::Json);
    }
}
