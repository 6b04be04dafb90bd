//! Billing settings: whether Stripe is the source of truth (`BILLING_MODE`), the webhook
//! signing secrets, and the catalogue's Stripe price ids for `tenantry seed`.

use anyhow::{bail, Context as _};

use super::env::Env;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BillingMode {
    /// Stripe is the source of truth (`STRIPE_SECRET_KEY` required).
    Stripe,
    /// No Stripe calls; plan changes apply at once (`billingMode: LOCAL`).
    Local,
}

/// `BILLING_MODE` and whether it was set. Unset means Stripe with a key, local without; a
/// contradiction between the mode and the key is refused rather than guessed.
pub(super) fn billing_mode(
    env: &Env<impl Fn(&str) -> Option<String>>,
    stripe_secret_key: Option<&str>,
) -> anyhow::Result<(BillingMode, bool)> {
    let explicit = env.var("BILLING_MODE").is_some();
    let mode = match env.lower("BILLING_MODE").as_deref() {
        None if stripe_secret_key.is_some() => BillingMode::Stripe,
        None => BillingMode::Local,
        Some("stripe") => BillingMode::Stripe,
        Some("local") => BillingMode::Local,
        Some(other) => bail!("BILLING_MODE must be stripe or local, got {other:?}"),
    };
    if mode == BillingMode::Stripe && stripe_secret_key.is_none() {
        bail!(
            "BILLING_MODE=stripe needs STRIPE_SECRET_KEY (sk_live_... or sk_test_...); \
             set it, or set BILLING_MODE=local to run billing without Stripe"
        );
    }
    if mode == BillingMode::Local && stripe_secret_key.is_some() {
        bail!(
            "BILLING_MODE=local but STRIPE_SECRET_KEY is set: set BILLING_MODE=stripe to bill \
             through Stripe, or unset STRIPE_SECRET_KEY to run billing locally"
        );
    }
    Ok((mode, explicit))
}

/// `STRIPE_WEBHOOK_SECRET`: comma separated, so a rotated secret and its successor both verify.
pub(super) fn webhook_secrets(env: &Env<impl Fn(&str) -> Option<String>>) -> Vec<String> {
    env.var("STRIPE_WEBHOOK_SECRET")
        .map(|v| {
            v.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect()
        })
        .unwrap_or_default()
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

/// `STRIPE_PRICE_<PLAN>_<REGION>_<CYCLE>` and/or `STRIPE_PRICES_FILE`; the variables win.
pub(super) fn price_overrides(
    env: &Env<impl Fn(&str) -> Option<String>>,
) -> anyhow::Result<Vec<PriceOverride>> {
    let file: serde_json::Value = match env.var("STRIPE_PRICES_FILE") {
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
                let price = env.var(&key).or_else(|| {
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

#[cfg(test)]
mod tests {
    use super::super::tests::{production, refusal, settings, STRONG};
    use super::*;

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
}
