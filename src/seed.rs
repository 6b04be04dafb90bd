//! `tenantry seed`: the plan catalogue of SPEC §4 (plans, regional prices, features, quotas),
//! feature definitions and configuration defaults — idempotent, existing rows are kept — and,
//! with `--demo`/`--tenants N`, demo tenants created through the tenant service.

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use scoped_futures::ScopedFutureExt;
use serde_json::json;
use uuid::Uuid;

use crate::app::App;
use crate::auth::Actor;
use crate::db::schema::{
    config_defaults, feature_definitions, plan_features, plan_prices, plan_quotas, plans,
};
use crate::db::{Db, Scope};
use crate::error::AppError;
use crate::ids::PlanId;
use crate::tenants::model::TenantRow;
use crate::tenants::service::{self, CreateTenant};

const GIB: i64 = 1024 * 1024 * 1024;

pub const FEATURES: &[(&str, &str, &str)] = &[
    (
        "user_management",
        "User management",
        "Invite and manage users",
    ),
    ("file_storage", "File storage", "Store and share files"),
    (
        "api_access",
        "API access",
        "Programmatic access with API keys",
    ),
    ("real_time_chat", "Real-time chat", "Chat between users"),
    (
        "advanced_analytics",
        "Advanced analytics",
        "Usage analytics and time series",
    ),
    (
        "custom_branding",
        "Custom branding",
        "Own logo, colours and domain",
    ),
    ("audit_logs", "Audit logs", "Searchable audit trail"),
    (
        "sso_integration",
        "SSO integration",
        "SAML/OIDC single sign-on",
    ),
];

struct PlanSpec {
    slug: &'static str,
    name: &'static str,
    description: &'static str,
    trial_days: i32,
    rate_limit: i32,
    /// Monthly price per region in minor units: US/USD, CA/CAD, EU/EUR, GB/GBP, AU/AUD.
    monthly: [i64; 5],
    /// Features added on top of the previous plan's.
    adds: &'static [&'static str],
    users: i64,
    storage: i64,
    api_calls: i64,
    ai: i64,
}

const REGIONS: [(&str, &str); 5] = [
    ("US", "usd"),
    ("CA", "cad"),
    ("EU", "eur"),
    ("GB", "gbp"),
    ("AU", "aud"),
];

const PLANS: [PlanSpec; 4] = [
    PlanSpec {
        slug: "free",
        name: "Free",
        description: "For trying things out",
        trial_days: 0,
        rate_limit: 10,
        monthly: [0; 5],
        adds: &["user_management", "file_storage"],
        users: 3,
        storage: GIB,
        api_calls: 1_000,
        ai: 100,
    },
    PlanSpec {
        slug: "starter",
        name: "Starter",
        description: "For small teams",
        trial_days: 14,
        rate_limit: 60,
        monthly: [2_900, 3_900, 2_700, 2_300, 4_500],
        adds: &["api_access", "real_time_chat"],
        users: 10,
        storage: 5 * GIB,
        api_calls: 10_000,
        ai: 1_000,
    },
    PlanSpec {
        slug: "professional",
        name: "Professional",
        description: "For growing businesses",
        trial_days: 14,
        rate_limit: 300,
        monthly: [9_900, 13_400, 9_200, 7_900, 14_900],
        adds: &["advanced_analytics", "custom_branding", "audit_logs"],
        users: 100,
        storage: 50 * GIB,
        api_calls: 100_000,
        ai: 10_000,
    },
    PlanSpec {
        slug: "enterprise",
        name: "Enterprise",
        description: "For organisations at scale",
        trial_days: 0,
        rate_limit: 1_000,
        monthly: [29_900, 40_400, 27_900, 23_900, 44_900],
        adds: &["sso_integration"],
        users: 1_000,
        storage: 500 * GIB,
        api_calls: 1_000_000,
        ai: 100_000,
    },
];

/// Defaults of the tenant configuration layer (resetConfig restores them).
const CONFIG_DEFAULTS: &[(&str, &str, &str)] = &[
    ("branding", "primary_color", "STRING"),
    ("branding", "logo_url", "STRING"),
    ("notifications", "email_enabled", "BOOLEAN"),
    ("notifications", "quota_alert_emails", "BOOLEAN"),
    ("security", "session_timeout_minutes", "NUMBER"),
    ("security", "mfa_required", "BOOLEAN"),
    ("integrations", "webhook_url", "STRING"),
];

fn config_default_value(category: &str, key: &str) -> serde_json::Value {
    match (category, key) {
        ("branding", "primary_color") => json!("#4f46e5"),
        ("notifications", "email_enabled") | ("notifications", "quota_alert_emails") => json!(true),
        ("security", "session_timeout_minutes") => json!(60),
        ("security", "mfa_required") => json!(false),
        _ => json!(""),
    }
}

/// Inserts the catalogue; rows that exist are left as they are.
/// At `serve`: installs the default catalogue when the database has no plan at all, so a
/// fresh deployment (`docker compose up`) can create tenants with no other command. A
/// catalogue an operator already has is never touched; several instances starting at once
/// insert the same rows idempotently. Returns whether it installed anything.
pub async fn install_default_catalogue(
    db: &Db,
    overrides: &[crate::config::PriceOverride],
) -> Result<bool, AppError> {
    let existing: i64 = db
        .scoped(Scope::Anonymous, |c| {
            async move { Ok(plans::table.count().get_result(c).await?) }.scope_boxed()
        })
        .await?;
    if existing > 0 {
        return Ok(false);
    }
    seed_catalogue(db).await?;
    if !overrides.is_empty() {
        apply_price_overrides(db, overrides).await?;
    }
    Ok(true)
}

pub async fn seed_catalogue(db: &Db) -> Result<(), AppError> {
    db.scoped(Scope::Platform("seed"), |c| {
        async move {
            let defs: Vec<_> = FEATURES
                .iter()
                .map(|(k, n, d)| {
                    (
                        feature_definitions::key.eq(*k),
                        feature_definitions::name.eq(*n),
                        feature_definitions::description.eq(*d),
                    )
                })
                .collect();
            diesel::insert_into(feature_definitions::table)
                .values(&defs)
                .on_conflict_do_nothing()
                .execute(c)
                .await?;

            let mut included: Vec<&str> = Vec::new();
            for (order, p) in PLANS.iter().enumerate() {
                diesel::insert_into(plans::table)
                    .values((
                        plans::id.eq(PlanId::now_v7()),
                        plans::slug.eq(p.slug),
                        plans::name.eq(p.name),
                        plans::description.eq(p.description),
                        plans::sort_order.eq(order as i32),
                        plans::trial_days.eq(p.trial_days),
                        plans::rate_limit_per_minute.eq(p.rate_limit),
                    ))
                    .on_conflict(plans::slug)
                    .do_nothing()
                    .execute(c)
                    .await?;
                let plan_id: PlanId = plans::table
                    .filter(plans::slug.eq(p.slug))
                    .select(plans::id)
                    .first(c)
                    .await?;

                let mut prices = Vec::new();
                for (i, (region, currency)) in REGIONS.iter().enumerate() {
                    for (cycle, factor) in [("MONTHLY", 1), ("YEARLY", 10)] {
                        let stripe_price = (p.monthly[i] > 0).then(|| {
                            format!(
                                "price_{}_{}_{}",
                                p.slug,
                                region.to_lowercase(),
                                cycle.to_lowercase()
                            )
                        });
                        prices.push((
                            plan_prices::id.eq(Uuid::now_v7()),
                            plan_prices::plan_id.eq(plan_id),
                            plan_prices::region.eq(*region),
                            plan_prices::currency.eq(*currency),
                            plan_prices::billing_cycle.eq(cycle),
                            plan_prices::amount.eq(p.monthly[i] * factor),
                            plan_prices::stripe_price_id.eq(stripe_price),
                        ));
                    }
                }
                diesel::insert_into(plan_prices::table)
                    .values(&prices)
                    .on_conflict_do_nothing()
                    .execute(c)
                    .await?;

                included.extend(p.adds);
                let feats: Vec<_> = included
                    .iter()
                    .map(|f| {
                        (
                            plan_features::plan_id.eq(plan_id),
                            plan_features::feature_key.eq(*f),
                        )
                    })
                    .collect();
                diesel::insert_into(plan_features::table)
                    .values(&feats)
                    .on_conflict_do_nothing()
                    .execute(c)
                    .await?;

                // Paid plans bill API and AI overage (SOFT); the free plan stops at its limits.
                let metered = if p.monthly[0] > 0 { "SOFT" } else { "HARD" };
                let quotas = [
                    ("users", p.users, "users", "NEVER", "HARD"),
                    ("storage", p.storage, "bytes", "NEVER", "HARD"),
                    ("api_calls", p.api_calls, "calls", "MONTHLY", metered),
                    ("ai_interactions", p.ai, "interactions", "MONTHLY", metered),
                ];
                let rows: Vec<_> = quotas
                    .iter()
                    .map(|(r, l, u, period, enf)| {
                        (
                            plan_quotas::plan_id.eq(plan_id),
                            plan_quotas::resource.eq(*r),
                            plan_quotas::limit.eq(*l),
                            plan_quotas::unit.eq(*u),
                            plan_quotas::reset_period.eq(*period),
                            plan_quotas::enforcement.eq(*enf),
                        )
                    })
                    .collect();
                diesel::insert_into(plan_quotas::table)
                    .values(&rows)
                    .on_conflict_do_nothing()
                    .execute(c)
                    .await?;
            }

            let defaults: Vec<_> = CONFIG_DEFAULTS
                .iter()
                .map(|(cat, key, ty)| {
                    (
                        config_defaults::category.eq(*cat),
                        config_defaults::key.eq(*key),
                        config_defaults::value.eq(config_default_value(cat, key)),
                        config_defaults::data_type.eq(*ty),
                    )
                })
                .collect();
            diesel::insert_into(config_defaults::table)
                .values(&defaults)
                .on_conflict_do_nothing()
                .execute(c)
                .await?;
            Ok(())
        }
        .scope_boxed()
    })
    .await
}

/// Creates a tenant unless its slug exists; returns it either way.
pub async fn ensure_tenant(
    app: &App,
    name: &str,
    slug: &str,
    plan: &str,
) -> Result<TenantRow, AppError> {
    let input = CreateTenant {
        name: name.into(),
        slug: slug.into(),
        domain: None,
        plan_slug: Some(plan.into()),
        owner_id: Some(format!("{slug}-owner")),
        region: None,
    };
    let actor = Actor::system();
    match service::create(app, &actor, input).await {
        Err(AppError::Conflict {
            field: Some("slug"),
            ..
        }) => service::get_by_slug(&app.db, &actor, slug).await,
        other => other,
    }
}

pub const DEMO_TENANTS: [(&str, &str, &str); 3] = [
    ("Acme Corporation", "acme", "professional"),
    ("Globex", "globex", "starter"),
    ("Initech", "initech", "free"),
];

/// Tenants per transaction of `--tenants N` (bounded by PostgreSQL's 65,535 bind parameters
/// per statement: about 5 quotas × 9 columns per tenant).
const SEED_CHUNK: usize = 1_000;

/// `--tenants N`: N generated tenants across the plans, set-based (`tenants::bulk`), one
/// transaction per chunk, with a progress bar. Existing slugs are skipped.
pub async fn seed_many(app: &App, n: usize) -> Result<(), AppError> {
    let bar = indicatif::ProgressBar::new(n as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:40} {pos}/{len} tenants ({per_sec}, eta {eta})",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let plans = ["free", "starter", "professional", "enterprise"];
    let actor = Actor::system();
    let mut start = 0;
    while start < n {
        let end = (start + SEED_CHUNK).min(n);
        let specs: Vec<crate::tenants::bulk::Spec> = (start..end)
            .map(|i| crate::tenants::bulk::Spec {
                name: format!("Tenant {}", i + 1),
                slug: format!("tenant-{:06}", i + 1),
                plan_slug: plans[i % plans.len()].into(),
            })
            .collect();
        crate::tenants::bulk::create(&app.db, &actor, &specs).await?;
        bar.inc((end - start) as u64);
        start = end;
    }
    bar.finish();
    Ok(())
}

/// Points catalogue prices at a real Stripe account's price ids (see
/// [`crate::config::PriceOverride`]). Returns how many prices changed.
pub async fn apply_price_overrides(
    db: &Db,
    overrides: &[crate::config::PriceOverride],
) -> Result<usize, AppError> {
    let overrides = overrides.to_vec();
    db.scoped(Scope::Platform("seed"), |c| {
        async move {
            let mut n = 0;
            for o in &overrides {
                n += diesel::sql_query(
                    "UPDATE plan_prices p SET stripe_price_id = $4, updated_at = now()
                       FROM plans WHERE plans.id = p.plan_id AND plans.slug = $1
                        AND p.region = $2 AND p.billing_cycle = $3",
                )
                .bind::<diesel::sql_types::Text, _>(&o.plan)
                .bind::<diesel::sql_types::Text, _>(&o.region)
                .bind::<diesel::sql_types::Text, _>(&o.cycle)
                .bind::<diesel::sql_types::Text, _>(&o.price_id)
                .execute(c)
                .await?;
            }
            Ok(n)
        }
        .scope_boxed()
    })
    .await
}
