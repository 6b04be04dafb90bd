//! Migrations and the application role (SPEC §3). `migrate` runs as whoever `DATABASE_URL`
//! logs in as (owner or superuser), applies the embedded migrations, then creates the
//! unprivileged `DATABASE_APP_ROLE` and grants it exactly what the server needs. `serve` checks
//! the effective role before it accepts a request.

use diesel_async::{AsyncConnection, AsyncMigrationHarness, AsyncPgConnection, RunQueryDsl};
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

use crate::config::is_plain_identifier;

pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");

/// Applies pending migrations and (re)grants the app role. Idempotent.
pub async fn migrate(url: &str, app_role: &str) -> anyhow::Result<Vec<String>> {
    anyhow::ensure!(
        is_plain_identifier(app_role),
        "invalid role name {app_role:?}"
    );
    let mut conn = AsyncPgConnection::establish(url).await?;
    // Instances starting together migrate one at a time (the lock ends with the session).
    {
        use diesel_async::SimpleAsyncConnection;
        conn.batch_execute("select pg_advisory_lock(72740001)")
            .await?;
    }
    // The harness drives diesel's sync migration code with `block_in_place`.
    let (conn, applied) = tokio::task::spawn_blocking(move || {
        let mut harness = AsyncMigrationHarness::new(conn);
        let applied = harness
            .run_pending_migrations(MIGRATIONS)
            .map(|v| v.iter().map(|m| m.to_string()).collect::<Vec<_>>())
            .map_err(|e| anyhow::anyhow!("migration failed: {e}"));
        (harness.into_inner(), applied)
    })
    .await?;
    let applied = applied?;
    let mut conn = conn;
    grant_app_role(&mut conn, app_role).await?;
    {
        use diesel_async::SimpleAsyncConnection;
        conn.batch_execute("select pg_advisory_unlock(72740001)")
            .await?;
    }
    Ok(applied)
}

async fn grant_app_role(conn: &mut AsyncPgConnection, role: &str) -> anyhow::Result<()> {
    use diesel_async::SimpleAsyncConnection;
    // Role names were validated as plain identifiers, so quoting is exact.
    let sql = format!(
        r#"
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{role}') THEN
        CREATE ROLE "{role}" NOLOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;
    END IF;
    IF current_user <> '{role}' AND NOT pg_has_role(current_user, '{role}', 'MEMBER') THEN
        EXECUTE format('GRANT %I TO %I', '{role}', current_user);
    END IF;
END $$;
GRANT USAGE ON SCHEMA public TO "{role}";
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO "{role}";
REVOKE ALL ON TABLE __diesel_schema_migrations FROM "{role}";
GRANT SELECT ON TABLE __diesel_schema_migrations TO "{role}";
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO "{role}";
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA public TO "{role}";
"#
    );
    conn.batch_execute(&sql).await.map_err(|e| {
        anyhow::anyhow!(
            "could not create or grant the application role {role:?}: {e}. \
             Run `tenantry migrate` with a DATABASE_URL that owns the database \
             (or may CREATE ROLE), or create the role yourself."
        )
    })?;
    Ok(())
}

#[derive(diesel::QueryableByName, Debug)]
pub struct EffectiveRole {
    #[diesel(sql_type = diesel::sql_types::Text)]
    pub name: String,
    #[diesel(sql_type = diesel::sql_types::Bool)]
    pub superuser: bool,
    #[diesel(sql_type = diesel::sql_types::Bool)]
    pub bypass_rls: bool,
}

/// The role pooled connections run as, with the two attributes that would defeat RLS.
pub async fn effective_role(conn: &mut AsyncPgConnection) -> diesel::QueryResult<EffectiveRole> {
    diesel::sql_query(
        "select current_user::text as name, r.rolsuper as superuser, r.rolbypassrls as bypass_rls \
         from pg_roles r where r.rolname = current_user",
    )
    .get_result(conn)
    .await
}

/// Refuses to serve when RLS could be bypassed by the role queries run as.
pub fn check_unprivileged(role: &EffectiveRole) -> anyhow::Result<()> {
    if role.superuser || role.bypass_rls {
        let what = if role.superuser {
            "is a superuser"
        } else {
            "has BYPASSRLS"
        };
        anyhow::bail!(
            "refusing to serve: queries would run as role {name:?}, which {what}, so row level \
             security could not isolate tenants. Fix: set DATABASE_APP_ROLE to an unprivileged \
             role (the default tenantry_app is created by `tenantry migrate`), or run \
             `ALTER ROLE \"{name}\" NOSUPERUSER NOBYPASSRLS;` as a superuser.",
            name = role.name
        );
    }
    Ok(())
}
