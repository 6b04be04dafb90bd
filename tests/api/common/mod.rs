//! Test harness: a migrated + seeded template database, one fresh copy per test, the real
//! router on a random port, tokens, and fixture builders.
//!
//! Environment: `TEST_DATABASE_URL` (a superuser URL to the maintenance database, default
//! `postgres://postgres@127.0.0.1:5432/postgres`), `TEST_REDIS_URL` (default
//! `redis://127.0.0.1:6379`), `TEST_LOG=1` to see the server's logs.
#![allow(dead_code)]

pub mod domain;
pub mod receiver;
pub mod smtp;
pub mod stripe;
pub mod ws;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
use serde_json::{json, Value};
use tenantry::app::{self, App};
use tenantry::auth::Role;
use tenantry::config::Settings;
use uuid::Uuid;

pub const JWT_SECRET: &str = "test-secret-0123456789";
pub const APP_ROLE: &str = "tenantry_app";

pub fn admin_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

pub fn redis_url() -> String {
    std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// `postgres://.../postgres` → `postgres://.../<db>`.
pub fn url_for(db: &str) -> String {
    let base = admin_url();
    let (prefix, _) = base
        .rsplit_once('/')
        .expect("TEST_DATABASE_URL has a database name");
    format!("{prefix}/{db}")
}

fn init_logs() {
    if std::env::var("TEST_LOG").is_ok() {
        tenantry::telemetry::init_logging(tenantry::config::LogFormat::Pretty);
    }
}

/// Fingerprint of everything that goes into the template: migrations and the seed code.
fn template_name() -> String {
    use std::hash::{Hash, Hasher};
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = files_under(&root.join("migrations"));
    files.push(root.join("src/seed.rs"));
    files.sort();
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for f in files {
        f.strip_prefix(root).unwrap().hash(&mut h);
        std::fs::read(&f).expect("read").hash(&mut h);
    }
    format!("tenantry_tpl_{:016x}", h.finish())
}

/// Every file under `dir`, at any depth (unordered).
pub fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        for entry in entries {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files
}

async fn admin_conn() -> AsyncPgConnection {
    AsyncPgConnection::establish(&admin_url())
        .await
        .expect("connect to TEST_DATABASE_URL")
}

#[derive(diesel::QueryableByName)]
struct Exists {
    #[diesel(sql_type = diesel::sql_types::Bool)]
    exists: bool,
}

/// Creates the template once per machine and version (an advisory lock serializes processes).
async fn ensure_template() -> String {
    use diesel_async::RunQueryDsl;
    let name = template_name();
    let mut conn = admin_conn().await;
    conn.batch_execute("select pg_advisory_lock(727274)")
        .await
        .unwrap();
    let exists: Exists =
        diesel::sql_query("select exists(select 1 from pg_database where datname = $1) as exists")
            .bind::<diesel::sql_types::Text, _>(&name)
            .get_result(&mut conn)
            .await
            .unwrap();
    if !exists.exists {
        let tmp = format!("{name}_build");
        conn.batch_execute(&format!("drop database if exists {tmp} with (force)"))
            .await
            .unwrap();
        conn.batch_execute(&format!("create database {tmp}"))
            .await
            .unwrap();
        tenantry::db::roles::migrate(&url_for(&tmp), APP_ROLE)
            .await
            .expect("migrate template");
        {
            let db = tenantry::db::Db::connect(&url_for(&tmp), APP_ROLE, 2)
                .await
                .expect("connect template");
            tenantry::seed::seed_catalogue(&db)
                .await
                .expect("seed template");
        }
        // Close stragglers of the seeding pool, then freeze the template.
        for sql in [
            format!(
                "select pg_terminate_backend(pid) from pg_stat_activity where datname = '{tmp}'"
            ),
            format!("alter database {tmp} rename to {name}"),
            format!("alter database {name} is_template true"),
        ] {
            conn.batch_execute(&sql).await.unwrap();
        }
    }
    conn.batch_execute("select pg_advisory_unlock(727274)")
        .await
        .unwrap();
    name
}

/// A database of this test's own, copied from the template; dropped when the value drops.
pub struct TestDb {
    pub name: String,
    pub url: String,
}

impl TestDb {
    pub async fn new() -> TestDb {
        let template = ensure_template().await;
        let name = format!("tenantry_test_{}", Uuid::new_v4().simple());
        let mut conn = admin_conn().await;
        // The template may be briefly busy when many tests start at once.
        let mut attempt = 0;
        loop {
            match conn
                .batch_execute(&format!("create database {name} template {template}"))
                .await
            {
                Ok(()) => break,
                Err(e) if attempt < 50 => {
                    attempt += 1;
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("create test database: {e}"),
            }
        }
        TestDb {
            url: url_for(&name),
            name,
        }
    }

    /// A database with nothing in it: no migrations, no catalogue (what a new deployment
    /// starts from).
    pub async fn empty() -> TestDb {
        let name = format!("tenantry_test_{}", Uuid::new_v4().simple());
        admin_conn()
            .await
            .batch_execute(&format!("create database {name}"))
            .await
            .expect("create empty test database");
        TestDb {
            url: url_for(&name),
            name,
        }
    }

    /// A superuser connection to this database (fixtures and assertions only).
    pub async fn superuser(&self) -> AsyncPgConnection {
        AsyncPgConnection::establish(&self.url)
            .await
            .expect("connect test db")
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                if let Ok(mut conn) = AsyncPgConnection::establish(&admin_url()).await {
                    let _ = conn
                        .batch_execute(&format!("drop database if exists {name} with (force)"))
                        .await;
                }
            });
        })
        .join();
    }
}

/// The settings a test server runs with; tests adjust them through `TestApp::spawn_with`.
pub fn test_env(db: &TestDb) -> HashMap<String, String> {
    HashMap::from([
        ("DATABASE_URL".to_string(), db.url.clone()),
        ("DATABASE_APP_ROLE".to_string(), APP_ROLE.to_string()),
        ("DATABASE_POOL_SIZE".to_string(), "8".to_string()),
        ("REDIS_URL".to_string(), redis_url()),
        ("JWT_SECRET".to_string(), JWT_SECRET.to_string()),
        ("BIND_ADDR".to_string(), "127.0.0.1:0".to_string()),
        ("BASE_DOMAIN".to_string(), "tenantry.test".to_string()),
        ("REDIS_KEY_PREFIX".to_string(), format!("test:{}:", db.name)),
        // Notification delivery is off but where a test turns it on (NOTIFICATION_WORKERS).
        ("NOTIFICATION_WORKERS".to_string(), "0".to_string()),
        // Tests make many requests per minute; the rate-limit tests switch it back on.
        ("RATE_LIMITS_ENABLED".to_string(), "false".to_string()),
        (
            "CONFIG_ENCRYPTION_KEY".to_string(),
            "a2tra2tra2tra2tra2tra2tra2tra2tra2tra2tra2s=".to_string(),
        ),
    ])
}

pub fn settings_from(env: &HashMap<String, String>) -> Settings {
    Settings::from_lookup(|k| env.get(k).cloned()).expect("test settings")
}

pub struct TestApp {
    pub addr: SocketAddr,
    pub base: String,
    pub app: Arc<App>,
    pub client: reqwest::Client,
    pub db: Arc<TestDb>,
    pub env: HashMap<String, String>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl TestApp {
    pub async fn spawn() -> TestApp {
        Self::spawn_with(|_| {}).await
    }

    pub async fn spawn_with(adjust: impl FnOnce(&mut HashMap<String, String>)) -> TestApp {
        init_logs();
        let db = TestDb::new().await;
        let mut env = test_env(&db);
        adjust(&mut env);
        Self::start(Arc::new(db), env).await
    }

    /// Another server instance on the same database and Redis (same settings).
    pub async fn second_instance(&self) -> TestApp {
        Self::start(self.db.clone(), self.env.clone()).await
    }

    pub async fn start(db: Arc<TestDb>, env: HashMap<String, String>) -> TestApp {
        let app = App::new(settings_from(&env)).await.expect("app starts");
        tenantry::notifications::worker::start(&app);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let router = app::router(app.clone());
        let server = tokio::spawn(async move {
            axum::serve(listener, router).await.unwrap();
        });
        TestApp {
            addr,
            base: format!("http://{addr}"),
            app,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
            db,
            env,
            server,
        }
    }

    pub fn token(&self, role: Role, tenant: Option<Uuid>) -> String {
        let sub = format!("user-{}", Uuid::new_v4().simple());
        tenantry::auth::jwt::issue(
            &self.app.settings,
            role,
            tenant.map(Into::into),
            &sub,
            Duration::from_secs(3600),
        )
        .unwrap()
    }

    pub fn admin_token(&self) -> String {
        self.token(Role::PlatformAdmin, None)
    }

    pub async fn gql(&self, token: Option<&str>, query: &str, variables: Value) -> Gql {
        self.gql_with(token, &[], query, variables).await
    }

    pub async fn gql_with(
        &self,
        token: Option<&str>,
        headers: &[(&str, &str)],
        query: &str,
        variables: Value,
    ) -> Gql {
        let body = json!({ "query": query, "variables": variables });
        self.post_json("/graphql", token, headers, &body).await
    }

    pub async fn post_json(
        &self,
        path: &str,
        token: Option<&str>,
        headers: &[(&str, &str)],
        body: &Value,
    ) -> Gql {
        let mut req = self.client.post(format!("{}{path}", self.base)).json(body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        Gql::from_response(req.send().await.expect("request")).await
    }

    pub async fn get(&self, path: &str) -> (u16, String) {
        let resp = self
            .client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("request");
        let status = resp.status().as_u16();
        (status, resp.text().await.unwrap())
    }

    /// Creates a tenant through the API as a platform admin.
    pub fn tenant(&self) -> TenantBuilder<'_> {
        TenantBuilder {
            app: self,
            name: None,
            slug: None,
            plan: "free".into(),
            domain: None,
            owner: None,
        }
    }
}

/// The hex SHA-256 of a query, as APQ names it.
pub fn sha256_hex(query: &str) -> String {
    ring::digest::digest(&ring::digest::SHA256, query.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `GET /graphql?query=…` with a bearer token.
pub async fn get_query(app: &TestApp, token: &str, query: &str) -> Gql {
    let resp = app
        .client
        .get(format!("{}/graphql", app.base))
        .query(&[("query", query)])
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    Gql::from_response(resp).await
}

/// A GraphQL (or JSON) response as a client sees it.
pub struct Gql {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Gql {
    pub async fn from_response(resp: reqwest::Response) -> Gql {
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Gql {
            status,
            headers,
            body,
        }
    }

    /// `data`, asserting there were no errors.
    pub fn ok(&self) -> &Value {
        assert!(
            self.body.get("errors").is_none(),
            "unexpected errors (HTTP {}): {}",
            self.status,
            serde_json::to_string_pretty(&self.body).unwrap()
        );
        &self.body["data"]
    }

    /// The first error's `extensions.code`.
    pub fn code(&self) -> Option<&str> {
        self.body["errors"][0]["extensions"]["code"].as_str()
    }

    /// Asserts the first error's code and returns the error.
    pub fn err(&self, code: &str) -> &Value {
        assert_eq!(
            self.code(),
            Some(code),
            "expected {code} (HTTP {}), got: {}",
            self.status,
            serde_json::to_string_pretty(&self.body).unwrap()
        );
        &self.body["errors"][0]
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

pub struct TenantBuilder<'a> {
    app: &'a TestApp,
    name: Option<String>,
    slug: Option<String>,
    plan: String,
    domain: Option<String>,
    owner: Option<String>,
}

/// A tenant created for a test, with ready-made tokens.
pub struct TestTenant {
    pub id: Uuid,
    pub slug: String,
    pub admin: String,
    pub member: String,
}

impl TenantBuilder<'_> {
    pub fn plan(mut self, plan: &str) -> Self {
        self.plan = plan.into();
        self
    }
    pub fn slug(mut self, slug: &str) -> Self {
        self.slug = Some(slug.into());
        self
    }
    pub fn name(mut self, name: &str) -> Self {
        self.name = Some(name.into());
        self
    }
    /// `createTenant`'s `ownerId`: the tenant's first OWNER member.
    pub fn owner(mut self, owner: &str) -> Self {
        self.owner = Some(owner.into());
        self
    }
    pub fn domain(mut self, domain: &str) -> Self {
        self.domain = Some(domain.into());
        self
    }

    pub async fn create(self) -> TestTenant {
        let slug = self
            .slug
            .unwrap_or_else(|| format!("t-{}", &Uuid::new_v4().simple().to_string()[..12]));
        let name = self.name.unwrap_or_else(|| format!("Tenant {slug}"));
        let resp = self
            .app
            .gql(
                Some(&self.app.admin_token()),
                "mutation($input: CreateTenantInput!) { createTenant(input: $input) { id slug } }",
                json!({ "input": { "name": name, "slug": slug, "planSlug": self.plan, "domain": self.domain, "ownerId": self.owner } }),
            )
            .await;
        let id = Uuid::parse_str(resp.ok()["createTenant"]["id"].as_str().unwrap()).unwrap();
        TestTenant {
            id,
            slug,
            admin: self.app.token(Role::TenantAdmin, Some(id)),
            member: self.app.token(Role::TenantMember, Some(id)),
        }
    }
}

/// Runs `sql` returning one bigint column named `n`.
pub async fn count(conn: &mut AsyncPgConnection, sql: &str) -> i64 {
    use diesel_async::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct N {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let row: N = diesel::sql_query(sql)
        .get_result(conn)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    row.n
}

/// The text column `v` of the first row of `sql`, if any.
pub async fn text(conn: &mut AsyncPgConnection, sql: &str) -> Option<String> {
    use diesel_async::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct V {
        #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
        v: Option<String>,
    }
    let rows: Vec<V> = diesel::sql_query(sql)
        .load(conn)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    rows.into_iter().next().and_then(|r| r.v)
}

/// A free TCP port on loopback (bound, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The compiled `tenantry` binary, run from a scratch directory (so no `.env` is read) with
/// exactly the given settings on top of the inherited environment minus Tenantry's own.
pub fn binary(args: &[&str], env: &HashMap<String, String>) -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_tenantry"));
    cmd.args(args).current_dir(std::env::temp_dir());
    for (key, _) in std::env::vars() {
        if key.starts_with("DATABASE_")
            || key.starts_with("JWT_")
            || key.starts_with("REDIS_")
            || key == "BIND_ADDR"
        {
            cmd.env_remove(key);
        }
    }
    cmd.envs(env);
    cmd
}

/// A `tenantry serve` process on a free port; killed when dropped.
pub struct ServerProcess {
    pub base: String,
    child: std::process::Child,
}

impl ServerProcess {
    pub async fn start(env: &HashMap<String, String>) -> ServerProcess {
        let quiet = std::env::var("TEST_LOG").is_err();
        Self::start_with_stderr(
            env,
            if quiet {
                std::process::Stdio::null()
            } else {
                std::process::Stdio::inherit()
            },
        )
        .await
    }

    /// Like [`ServerProcess::start`], with the server's log written to `log`.
    pub async fn start_logged(
        env: &HashMap<String, String>,
        log: &std::path::Path,
    ) -> ServerProcess {
        let file = std::fs::File::create(log).expect("log file");
        Self::start_with_stderr(env, file.into()).await
    }

    async fn start_with_stderr(
        env: &HashMap<String, String>,
        stderr: std::process::Stdio,
    ) -> ServerProcess {
        let port = free_port();
        let mut env = env.clone();
        env.insert("BIND_ADDR".into(), format!("127.0.0.1:{port}"));
        let child = binary(&["serve"], &env)
            .stdout(std::process::Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("start tenantry serve");
        let server = ServerProcess {
            base: format!("http://127.0.0.1:{port}"),
            child,
        };
        let client = reqwest::Client::new();
        for _ in 0..200 {
            if let Ok(r) = client.get(format!("{}/ready", server.base)).send().await {
                if r.status() == 200 {
                    return server;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("tenantry serve did not become ready on port {port}");
    }

    pub async fn gql(&self, token: &str, query: &str, variables: Value) -> Gql {
        let resp = reqwest::Client::new()
            .post(format!("{}/graphql", self.base))
            .bearer_auth(token)
            .json(&json!({ "query": query, "variables": variables }))
            .send()
            .await
            .expect("request");
        Gql::from_response(resp).await
    }

    /// Resident memory of the process in KiB (Linux `/proc`).
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("/proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .expect("VmRSS")
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Inserts one row for `tenant` into every tenant-owned table that the API does not fill yet.
pub async fn fill_every_table(conn: &mut diesel_async::AsyncPgConnection, tenant: Uuid) {
    let t = tenant;
    conn.batch_execute(&format!(
        r##"
        insert into tenant_features (tenant_id, feature_key, enabled) values ('{t}', 'sso_integration', true);
        insert into configs (tenant_id, category, key, value, data_type) values ('{t}', 'branding', 'primary_color', '"#000000"', 'STRING');
        insert into usage_records (tenant_id, resource, amount, period_start, used_after, limit_at) values ('{t}', 'api_calls', 1, now(), 1, 10);
        insert into usage_hourly (tenant_id, resource, hour_start, amount) values ('{t}', 'api_calls', date_trunc('hour', now()), 1);
        insert into quota_alerts (tenant_id, id, resource, threshold, used, "limit", period_start) values ('{t}', gen_random_uuid(), 'api_calls', 75, 8, 10, now());
        insert into billing_subscriptions (tenant_id, status, plan_id) select id, 'ACTIVE', plan_id from tenants where id = '{t}'
            on conflict (tenant_id) do nothing;
        insert into invoices (tenant_id, id, stripe_invoice_id, currency, status) values ('{t}', gen_random_uuid(), 'in_{t}', 'usd', 'OPEN');
        insert into plan_change_intents (tenant_id, id, from_plan_id, to_plan_id, billing_cycle, expires_at)
            select id, gen_random_uuid(), plan_id, plan_id, 'MONTHLY', now() + interval '1 day' from tenants where id = '{t}';
        insert into usage_reports (tenant_id, resource, period_start, quantity, identifier) values ('{t}', 'api_calls', now(), 1, 'r-{t}');
        insert into stripe_events (id, event_type, tenant_id, payload, event_created) values ('evt_{t}', 'invoice.paid', '{t}', '{{}}', now());
        insert into tenant_domain_claims (tenant_id, domain, token, expires_at) values ('{t}', 'claim-{t}.example.com', 'token-{t}', now() + interval '1 day');
        insert into notification_outbox (tenant_id, id, event_type, data) values ('{t}', gen_random_uuid(), 'tenant.suspended', '{{}}');
        insert into members (tenant_id, id, user_id, role, status) values ('{t}', gen_random_uuid(), 'fixture-{t}', 'MEMBER', 'ACTIVE');
        insert into invitations (tenant_id, id, member_id, email, role, token_hash, invited_by, expires_at)
            values ('{t}', gen_random_uuid(), gen_random_uuid(), 'fixture@example.com', 'MEMBER', 'hash-{t}', 'fixture', now() + interval '1 day');
        insert into api_keys (tenant_id, id, name, prefix, secret_hash, role, created_by) values ('{t}', gen_random_uuid(), 'fixture', 'tnt_fixture0', sha256(convert_to('tnt_fixture-{t}', 'UTF8')), 'tenant_admin', 'fixture');
        insert into webhook_endpoints (tenant_id, id, url, events, secret_prefix, secret_sealed) values ('{t}', gen_random_uuid(), 'https://hooks.example.com/{t}', '{{*}}', 'whsec_fixtur', '\x00');
        insert into notification_deliveries (tenant_id, id, event_id, event_seq, event_type, channel, endpoint_id, status)
            select '{t}', gen_random_uuid(), o.id, o.seq, o.event_type, 'WEBHOOK', e.id, 'FAILED'
              from notification_outbox o, webhook_endpoints e where o.tenant_id = '{t}' and e.tenant_id = '{t}' limit 1;
        "##
    ))
    .await
    .expect("fixtures");
}

/// Set in the environment of a test re-run by [`in_own_process`].
const OWN_PROCESS: &str = "TENANTRY_TEST_OWN_PROCESS";

/// Whether the calling test, `name` (its path in this binary, e.g. `observability::x`), should
/// run its body here: yes when it has the process to itself — under cargo-nextest, which runs
/// each test in its own process, or when this is the re-run. Under plain `cargo test`, where
/// all tests share one process and so the process-wide Prometheus recorder, it runs the test
/// again alone in a child process, asserts that it passed there, and answers no.
pub fn in_own_process(name: &str) -> bool {
    let nextest = std::env::var("NEXTEST_EXECUTION_MODE").is_ok_and(|m| m == "process-per-test");
    if nextest || std::env::var_os(OWN_PROCESS).is_some() {
        return true;
    }
    let out = std::process::Command::new(std::env::current_exe().expect("test binary"))
        .args([name, "--exact", "--test-threads=1", "--nocapture"])
        .env(OWN_PROCESS, "1")
        .output()
        .expect("re-run the test");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("test result: ok. 1 passed"),
        "{name} in its own process:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    false
}

/// Polls `check` until it holds; fails after one second naming `what` and the last answer
/// (a change made on one instance must show on another within that time).
pub async fn within_a_second<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let started = std::time::Instant::now();
    loop {
        match check().await {
            Ok(()) => return,
            Err(last) if started.elapsed() > Duration::from_secs(1) => {
                panic!("{what} not visible within 1 s: {last}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// The SQL statements the server counted for one request (`x-sql-statements`).
pub fn statements(resp: &Gql) -> u64 {
    resp.header("x-sql-statements").unwrap().parse().unwrap()
}
