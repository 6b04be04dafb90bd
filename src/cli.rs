//! The `tenantry` command line: serve | migrate | seed | token | schema.

use std::net::SocketAddr;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use uuid::Uuid;

use crate::app::{self, App};
use crate::auth::{jwt, Role};
use crate::config::Settings;
use crate::db::roles;
use crate::ids::TenantId;
use crate::{graphql, jobs, seed, telemetry};

#[derive(Parser, Debug)]
#[command(
    name = "tenantry",
    version,
    about = "Control plane of a multi-tenant SaaS (GraphQL API)"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the API server (applies pending migrations first unless --no-migrate, and installs
    /// the default plans when the catalogue is empty).
    Serve {
        #[arg(long)]
        no_migrate: bool,
    },
    /// Apply migrations, create/grant the application role, and exit.
    Migrate,
    /// Insert the default plans (idempotent); --demo adds demo tenants and prints tokens.
    Seed {
        #[arg(long)]
        demo: bool,
        /// Also create N generated tenants (progress bar).
        #[arg(long)]
        tenants: Option<usize>,
    },
    /// Print a JWT signed with JWT_SECRET (development and tests).
    Token {
        /// platform_admin | tenant_admin | tenant_member
        #[arg(long)]
        role: String,
        /// Tenant slug or id (required for tenant roles).
        #[arg(long)]
        tenant: Option<String>,
        /// Subject (user id).
        #[arg(long)]
        sub: Option<String>,
        /// Lifetime, e.g. 15m, 1h, 7d.
        #[arg(long, default_value = "1h")]
        ttl: humantime::Duration,
    },
    /// Print the GraphQL schema (SDL); `schema.graphql` must equal it.
    Schema {
        /// The federation subgraph SDL instead (`_service { sdl }`); `schema.subgraph.graphql`
        /// must equal it.
        #[arg(long)]
        federation: bool,
    },
    /// Background jobs (the server also runs them on a schedule).
    Jobs {
        #[command(subcommand)]
        command: JobsCommand,
    },
}

#[derive(Subcommand, Debug)]
pub enum JobsCommand {
    /// Run one job once now (skipped if another instance is running it).
    Run { name: jobs::Job },
    /// List the jobs.
    List,
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    if let Command::Schema { federation } = cli.command {
        if federation {
            print!("{}", graphql::federation_sdl());
        } else {
            print!("{}", graphql::sdl());
        }
        return Ok(());
    }
    let settings = Settings::from_env()?;
    telemetry::init_logging(settings.log_format);
    match cli.command {
        Command::Schema { .. } => unreachable!("handled above"),
        Command::Migrate => {
            let applied =
                roles::migrate(&settings.database_url, &settings.database_app_role).await?;
            eprintln!(
                "migrations applied: {}; role {} granted",
                applied.len(),
                settings.database_app_role
            );
            Ok(())
        }
        Command::Serve { no_migrate } => serve(settings, no_migrate).await,
        Command::Jobs {
            command: JobsCommand::List,
        } => {
            for j in jobs::Job::ALL {
                println!("{}", j.name());
            }
            Ok(())
        }
        Command::Jobs {
            command: JobsCommand::Run { name },
        } => {
            let app = App::new(settings).await?;
            let outcome = jobs::run_once(&app, name)
                .await
                .map_err(|e| anyhow::anyhow!("{}", e.public_message()))?;
            println!("{}: {outcome:?}", name.name());
            Ok(())
        }
        Command::Seed { demo, tenants } => run_seed(settings, demo, tenants).await,
        Command::Token {
            role,
            tenant,
            sub,
            ttl,
        } => {
            let role = Role::parse(&role).ok_or_else(|| {
                anyhow::anyhow!("--role must be platform_admin, tenant_admin or tenant_member")
            })?;
            let tenant_id = match tenant {
                None if role != Role::PlatformAdmin => {
                    anyhow::bail!("--tenant is required for {}", role.as_str())
                }
                None => None,
                Some(t) => Some(tenant_id_of(&settings, &t).await?),
            };
            let sub = sub.unwrap_or_else(|| format!("cli-{}", role.as_str()));
            println!(
                "{}",
                jwt::issue(&settings, role, tenant_id, &sub, ttl.into())?
            );
            Ok(())
        }
    }
}

async fn tenant_id_of(settings: &Settings, key: &str) -> anyhow::Result<TenantId> {
    if let Ok(id) = Uuid::parse_str(key) {
        return Ok(id.into());
    }
    let app = App::new(settings.clone()).await?;
    let row = app
        .tenant_cache
        .by_id_or_slug(&app.db, key)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(row
        .ok_or_else(|| anyhow::anyhow!("no tenant with slug {key:?}"))?
        .id)
}

async fn serve(settings: Settings, no_migrate: bool) -> anyhow::Result<()> {
    // Before anything touches the database: a production start with example secrets stops here.
    for warning in settings.check_serve()? {
        tracing::warn!("{warning} (allowed because APP_ENV is not production)");
    }
    if !no_migrate {
        let applied = roles::migrate(&settings.database_url, &settings.database_app_role).await?;
        tracing::info!(count = applied.len(), "migrations applied");
    }
    let addr: SocketAddr = settings.bind_addr;
    let app = App::new(settings).await?;
    if !no_migrate
        && seed::install_default_catalogue(&app.db, &app.settings.stripe_price_overrides)
            .await
            .map_err(|e| anyhow::anyhow!("installing the default catalogue: {e}"))?
    {
        tracing::info!(
            "empty catalogue: default plans installed (free, starter, professional, enterprise)"
        );
    }
    if app.settings.jobs_interval_secs > 0 {
        jobs::spawn_scheduler(
            app.clone(),
            std::time::Duration::from_secs(app.settings.jobs_interval_secs),
        );
    }
    crate::notifications::worker::start(&app);
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(addr = %listener.local_addr()?, billing = if app.settings.billing_live() { "stripe" } else { "local" }, "listening");
    axum::serve(listener, app::router(app))
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutting down");
}

async fn run_seed(settings: Settings, demo: bool, tenants: Option<usize>) -> anyhow::Result<()> {
    roles::migrate(&settings.database_url, &settings.database_app_role).await?;
    let app: Arc<App> = App::new(settings).await?;
    seed::seed_catalogue(&app.db)
        .await
        .map_err(|e| anyhow::anyhow!("seeding plans: {e}"))?;
    eprintln!("plans seeded: free, starter, professional, enterprise");
    let overrides = &app.settings.stripe_price_overrides;
    if !overrides.is_empty() {
        let n = seed::apply_price_overrides(&app.db, overrides)
            .await
            .map_err(|e| anyhow::anyhow!("applying Stripe price ids: {e}"))?;
        eprintln!("Stripe price ids applied to {n} catalogue prices");
    }
    if demo {
        let mut rows = Vec::new();
        for (name, slug, plan) in seed::DEMO_TENANTS {
            rows.push(
                seed::ensure_tenant(&app, name, slug, plan)
                    .await
                    .map_err(|e| anyhow::anyhow!("{slug}: {e}"))?,
            );
        }
        println!(
            "demo tenants: {}",
            rows.iter()
                .map(|t| t.slug.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
        let s = &app.settings;
        if s.jwt_secret.is_some() {
            let ttl = std::time::Duration::from_secs(7 * 24 * 3600);
            println!(
                "\nplatform admin token:\n{}",
                jwt::issue(s, Role::PlatformAdmin, None, "demo-admin", ttl)?
            );
            let acme = &rows[0];
            println!(
                "\nacme tenant_admin token:\n{}",
                jwt::issue(s, Role::TenantAdmin, Some(acme.id), "acme-admin", ttl)?
            );
            println!(
                "\nacme tenant_member token:\n{}",
                jwt::issue(s, Role::TenantMember, Some(acme.id), "acme-member", ttl)?
            );
        } else {
            println!("\n(set JWT_SECRET to print ready-to-use tokens)");
        }
        println!("\nGraphiQL: http://{}/graphql", s.bind_addr);
    }
    if let Some(n) = tenants {
        seed::seed_many(&app, n)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    Ok(())
}
