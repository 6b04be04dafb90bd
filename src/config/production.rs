//! The production gate: settings that are fine on a laptop but unsafe to serve the public
//! with (example secrets shipped in this repository, short secrets, billing that silently
//! runs without Stripe, an SMTP password sent in clear). `serve` refuses them with
//! `APP_ENV=production`, warns elsewhere.

use anyhow::bail;

use super::env::decode_key;
use super::{BillingMode, Settings};

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
    "bGxsbGxsbGxsbGxsbGxsbGxsbGxsbGxsbGxsbGxsbGw=",
];

/// Minimum length of an HS256 `JWT_SECRET` and of `SERVICE_TOKEN` in production.
pub const MIN_SECRET_BYTES: usize = 32;

impl Settings {
    /// What makes these settings unsafe to serve the public with: example secrets anyone can
    /// read in this repository, secrets too short to resist guessing, billing that would
    /// silently run without Stripe. Each line names the variable and how to fix it.
    pub fn production_problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let secrets = [
            (
                "JWT_SECRET",
                &self.jwt_secret,
                "anyone can sign tokens with it",
                format!("HS256 needs at least {MIN_SECRET_BYTES} random bytes"),
            ),
            (
                "SERVICE_TOKEN",
                &self.service_token,
                "anyone can call /internal/... with it",
                format!("it needs at least {MIN_SECRET_BYTES}"),
            ),
        ];
        for (var, value, misuse, need) in secrets {
            problems.extend(
                value
                    .as_deref()
                    .and_then(|v| weak_secret(var, v, misuse, &need)),
            );
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
        if let Some(url) = self
            .jwt_jwks_url
            .as_deref()
            .filter(|u| plain_http_off_host(u))
        {
            problems.push(format!(
                "JWT_JWKS_URL is plain http to another host ({url}): anyone on the path could \
                 swap the signing keys and mint tokens; use https (http is accepted for \
                 localhost only)"
            ));
        }
        if self.jwt_jwks_url.is_some() && (self.jwt_issuer.is_none() || self.jwt_audience.is_none())
        {
            problems.push(
                "JWT_JWKS_URL is set without JWT_ISSUER and JWT_AUDIENCE: an identity provider's \
                 keys sign tokens for every application it serves, so any of them carrying a \
                 role claim would be accepted here; set both to this API's issuer and audience"
                    .into(),
            );
        }
        if let Some(url) = self
            .smtp_url
            .as_ref()
            .filter(|u| u.has_credentials() && u.may_be_plain_text() && !is_loopback(&u.host()))
        {
            problems.push(format!(
                "SMTP_URL sends its password to {} over plain SMTP (anyone on the path could \
                 read it and every mail); use smtps://...:465 or smtp://...:587?tls=required",
                url.redacted()
            ));
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

/// An `http://` URL whose host is not the loopback interface.
fn plain_http_off_host(url: &str) -> bool {
    let Some(rest) = url.strip_prefix("http://") else {
        return false;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = match host_port.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => host_port.split(':').next().unwrap_or_default(),
    };
    !is_loopback(host)
}

/// `localhost` or a loopback address.
fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Why a shared secret is unsafe, if it is: shipped as an example, or too short to resist
/// guessing. `misuse` says what its holder can do, `need` what a good one takes.
fn weak_secret(var: &str, value: &str, misuse: &str, need: &str) -> Option<String> {
    let generate = "generate one with `openssl rand -base64 48`";
    if SHIPPED_EXAMPLE_SECRETS.contains(&value) {
        Some(format!(
            "{var} is an example shipped with Tenantry ({misuse}); {generate}"
        ))
    } else if value.len() < MIN_SECRET_BYTES {
        Some(format!(
            "{var} is {} bytes; {need}: {generate}",
            value.len()
        ))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{production, refusal, settings, KEY, STRONG};
    use super::*;

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
    fn production_refuses_a_jwks_url_over_plain_http_to_another_host() {
        for ok in [
            "https://idp.example.com/jwks",
            "http://127.0.0.1:8081/jwks",
            "http://localhost/jwks",
            "http://[::1]:9000/jwks",
        ] {
            assert!(!plain_http_off_host(ok), "{ok}");
            assert!(production(("JWT_JWKS_URL", ok))
                .unwrap()
                .check_serve()
                .is_ok());
        }
        for bad in [
            "http://idp.example.com/jwks",
            "http://localhost@evil.example/jwks",
        ] {
            let err = refusal(&production(("JWT_JWKS_URL", bad)).unwrap());
            assert!(err.contains("JWT_JWKS_URL is plain http"), "{err}");
        }
    }

    #[test]
    fn production_refuses_a_jwks_url_without_issuer_and_audience() {
        let base = [
            ("APP_ENV", "production"),
            ("JWT_JWKS_URL", "https://idp.example.com/jwks"),
            ("SERVICE_TOKEN", STRONG),
            ("CONFIG_ENCRYPTION_KEY", KEY),
            ("STRIPE_SECRET_KEY", "sk_live_x"),
        ];
        for (extra, ok) in [
            (vec![], false),
            (vec![("JWT_ISSUER", "https://idp.example.com/")], false),
            (vec![("JWT_AUDIENCE", "tenantry")], false),
            (
                vec![
                    ("JWT_ISSUER", "https://idp.example.com/"),
                    ("JWT_AUDIENCE", "tenantry"),
                ],
                true,
            ),
        ] {
            let pairs: Vec<_> = base.iter().copied().chain(extra.clone()).collect();
            let s = settings(&pairs).unwrap();
            match s.check_serve() {
                Ok(_) => assert!(ok, "{extra:?} must be refused"),
                Err(e) => {
                    assert!(!ok, "{extra:?}: {e}");
                    assert!(e.to_string().contains("JWT_ISSUER and JWT_AUDIENCE"), "{e}");
                }
            }
        }
    }

    #[test]
    fn production_refuses_an_smtp_password_over_plain_smtp_to_another_host() {
        for ok in [
            "smtps://user:pw@mail.example.com:465",
            "smtp://user:pw@mail.example.com:587?tls=required",
            "smtp://mail.example.com:25",
            "smtp://user:pw@127.0.0.1:2525",
        ] {
            assert!(
                production(("SMTP_URL", ok)).unwrap().check_serve().is_ok(),
                "{ok}"
            );
        }
        for bad in [
            "smtp://user:pw@mail.example.com:587",
            "smtp://user:pw@mail.example.com:587?tls=opportunistic",
        ] {
            let err = refusal(&production(("SMTP_URL", bad)).unwrap());
            assert!(err.contains("SMTP_URL sends its password"), "{err}");
            assert!(!err.contains("pw@"), "{err}");
        }
    }

    /// The list of refused examples covers every secret the shipped files carry.
    #[test]
    fn every_shipped_example_secret_is_in_the_list() {
        let files = [
            (
                "docker-compose.yml",
                include_str!("../../docker-compose.yml"),
            ),
            (".env.example", include_str!("../../.env.example")),
            ("README.md", include_str!("../../README.md")),
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
}
