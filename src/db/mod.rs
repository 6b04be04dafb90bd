//! PostgreSQL access: the pool, migrations, the application role, and the one helper that runs a
//! unit of work in a transaction with the tenant scope set transaction-locally ([`Db::scoped`]).
//!
//! Nothing else in the code base opens a transaction or sets `app.tenant_id`: a scope is a value
//! ([`Scope`]) chosen by the caller, and the platform bypass is a visible variant of it.

pub mod page;
mod prepared;
pub mod roles;
pub mod schema;
mod stats;
pub mod text_enum;

use std::sync::Arc;
use std::time::Duration;

use diesel::sql_types::Text;
use diesel_async::pooled_connection::bb8::Pool;
use diesel_async::pooled_connection::{
    AsyncDieselConnectionManager, ManagerConfig, RecyclingMethod,
};
use diesel_async::{
    AnsiTransactionManager, AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection,
    TransactionManager,
};
use futures_util::FutureExt;
pub use scoped_futures::{ScopedBoxFuture, ScopedFutureExt};

use crate::error::AppResult;
use crate::ids::TenantId;
pub use prepared::{prepared, Prepared};
pub use stats::RequestStats;

pub type PgPool = Pool<AsyncPgConnection>;
pub type Conn = AsyncPgConnection;

/// Whose rows a unit of work may see. Applied by [`Db::scoped`] through RLS settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Only this tenant's rows.
    Tenant(TenantId),
    /// Every tenant's rows: the explicit, audited platform bypass. The reason is logged and
    /// counted (`tenantry_rls_bypass_total{reason}`).
    Platform(&'static str),
    /// No tenant: tenant-owned tables answer no rows (global tables such as plans stay readable).
    Anonymous,
}

impl Scope {
    /// The statements that open a unit of work in this scope, sent as ONE simple-protocol
    /// message (one round trip): `BEGIN`, then the scope set transaction-locally (`SET LOCAL`,
    /// the utility-statement form of `set_config(.., true)`: no planning), so a pooled
    /// connection never carries it to the next user. The only value spliced in is a typed
    /// [`TenantId`] (a UUID's canonical text), never caller input.
    fn begin_sql(&self, snapshot: bool) -> String {
        let (tenant, bypass) = match self {
            Scope::Tenant(id) => (id.to_string(), "off"),
            Scope::Platform(_) => (String::new(), "on"),
            Scope::Anonymous => (String::new(), "off"),
        };
        // REPEATABLE READ must be chosen before any other statement of the transaction.
        let begin = if snapshot {
            "begin isolation level repeatable read, read only"
        } else {
            "begin"
        };
        format!(
            "{begin}; set local app.tenant_id = '{tenant}'; set local app.bypass_rls = '{bypass}'"
        )
    }
}

/// Pool handle plus, for a request, the counter of SQL statements it ran.
#[derive(Clone)]
pub struct Db {
    pool: PgPool,
    stats: Option<Arc<RequestStats>>,
}

impl Db {
    /// Connects a pool whose every connection switches to `app_role` (`SET ROLE`), so queries
    /// run under RLS even when `DATABASE_URL` logs in as an owner or superuser.
    pub async fn connect(url: &str, app_role: &str, size: u32) -> anyhow::Result<Self> {
        let role = app_role.to_owned();
        let mut config = ManagerConfig::<AsyncPgConnection>::default();
        // No `SELECT 1` on every checkout: a broken connection fails its unit of work and the
        // pool discards it (`/ready` and clients see SERVICE_UNAVAILABLE, then recovery).
        config.recycling_method = RecyclingMethod::Fast;
        config.custom_setup = Box::new(move |url| {
            let role = role.clone();
            async move {
                let mut conn = AsyncPgConnection::establish(url).await?;
                conn.batch_execute(&format!("SET ROLE \"{role}\""))
                    .await
                    .map_err(diesel::ConnectionError::CouldntSetupConfiguration)?;
                Ok(conn)
            }
            .boxed()
        });
        let manager = AsyncDieselConnectionManager::new_with_config(url, config);
        let pool = Pool::builder()
            .max_size(size)
            .min_idle(Some(1))
            .connection_timeout(Duration::from_secs(5))
            .build(manager)
            .await?;
        Ok(Db { pool, stats: None })
    }

    /// The same pool, counting the statements of one request into `stats`.
    pub fn for_request(&self, stats: Arc<RequestStats>) -> Db {
        Db {
            pool: self.pool.clone(),
            stats: Some(stats),
        }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Runs `f` in one transaction with the scope set transaction-locally
    /// (`set_config(.., true)`), so a pooled connection never carries it to the next user.
    pub async fn scoped<'a, R, F>(&self, scope: Scope, f: F) -> AppResult<R>
    where
        F: for<'r> FnOnce(&'r mut Conn) -> ScopedBoxFuture<'a, 'r, AppResult<R>> + Send + 'a,
        R: Send + 'a,
    {
        self.run(scope, false, f).await
    }

    /// Like [`Db::scoped`], in a `REPEATABLE READ, READ ONLY` transaction: every statement of
    /// `f` sees the same snapshot (the streamed tenant export reads page after page in it).
    pub async fn snapshot<'a, R, F>(&self, scope: Scope, f: F) -> AppResult<R>
    where
        F: for<'r> FnOnce(&'r mut Conn) -> ScopedBoxFuture<'a, 'r, AppResult<R>> + Send + 'a,
        R: Send + 'a,
    {
        self.run(scope, true, f).await
    }

    async fn run<'a, R, F>(&self, scope: Scope, snapshot: bool, f: F) -> AppResult<R>
    where
        F: for<'r> FnOnce(&'r mut Conn) -> ScopedBoxFuture<'a, 'r, AppResult<R>> + Send + 'a,
        R: Send + 'a,
    {
        if let Scope::Platform(reason) = scope {
            metrics::counter!("tenantry_rls_bypass_total", "reason" => reason).increment(1);
            tracing::debug!(reason, "platform scope (RLS bypass)");
        }
        let mut conn = self.pool.get().await?;
        conn.set_instrumentation(stats::StatementCounter::new(self.stats.clone()));
        let conn: &mut Conn = &mut conn;
        if let Err(err) =
            AnsiTransactionManager::begin_transaction_sql(conn, &scope.begin_sql(snapshot)).await
        {
            // The message may have opened the transaction before failing. Rather than a
            // rollback that could itself be cancelled halfway, the connection is marked
            // broken: the pool discards it, and no one is handed a connection inside an
            // aborted transaction.
            tracing::warn!(error = %err, "opening a transaction failed; connection discarded");
            AnsiTransactionManager::transaction_manager_status_mut(conn).set_in_error();
            conn.set_instrumentation(stats::StatementCounter::new(None));
            return Err(err.into());
        }
        let result = f(&mut *conn).await;
        // Back in the pool, the connection counts for nobody.
        let outcome = match result {
            Ok(value) => AnsiTransactionManager::commit_transaction(conn)
                .await
                .map(|()| value)
                .map_err(Into::into),
            Err(err) => {
                // A failed rollback leaves the connection broken; the pool then discards it.
                if let Err(rollback) = AnsiTransactionManager::rollback_transaction(conn).await {
                    tracing::warn!(error = %rollback, "rollback failed");
                }
                Err(err)
            }
        };
        conn.set_instrumentation(stats::StatementCounter::new(None));
        outcome
    }

    /// `select 1` with a deadline, for `/ready`.
    pub async fn ping(&self, timeout: Duration) -> bool {
        let check = async {
            let mut conn = self.pool.get().await.ok()?;
            conn.batch_execute("select 1").await.ok()
        };
        matches!(tokio::time::timeout(timeout, check).await, Ok(Some(())))
    }
}

/// Switches the current transaction's tenant scope (transaction-local, like [`Db::scoped`]).
/// For batched units of work that serve several tenants one after another — the metering
/// writer — so that RLS still confines each item to its own tenant.
pub async fn switch_tenant_scope(conn: &mut Conn, tenant_id: TenantId) -> diesel::QueryResult<()> {
    diesel::sql_query(
        "select set_config('app.tenant_id', $1, true), set_config('app.bypass_rls', 'off', true)",
    )
    .bind::<Text, _>(tenant_id.to_string())
    .execute(conn)
    .await
    .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::Scope;
    use crate::ids::TenantId;

    #[test]
    fn a_scope_opens_with_one_message_naming_only_its_tenant() {
        let id: TenantId = uuid::Uuid::nil().into();
        assert_eq!(
            Scope::Tenant(id).begin_sql(false),
            "begin; set local app.tenant_id = '00000000-0000-0000-0000-000000000000'; set local app.bypass_rls = 'off'"
        );
        assert_eq!(
            Scope::Platform("x").begin_sql(true),
            "begin isolation level repeatable read, read only; set local app.tenant_id = ''; set local app.bypass_rls = 'on'"
        );
        assert!(Scope::Anonymous
            .begin_sql(false)
            .ends_with("app.tenant_id = ''; set local app.bypass_rls = 'off'"));
    }
}
