//! The server never queries as a role that could bypass row level security, even though one
//! DATABASE_URL (here: the postgres superuser) is all a user configures; and it refuses to
//! serve production with example or weak secrets.

use crate::common;

use std::collections::HashMap;
use std::time::Duration;

use crate::common::{binary, free_port, test_env, TestApp, TestDb};
use diesel_async::{AsyncConnection, RunQueryDsl, SimpleAsyncConnection};

#[derive(diesel::QueryableByName)]
struct Who {
    #[diesel(sql_type = diesel::sql_types::Text)]
    who: String,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_superuser_url_still_queries_as_the_app_role() {
    let app = TestApp::spawn().await;
    // Several pooled connections at once, all switched.
    let pool = app.app.db.pool().clone();
    let mut conns = Vec::new();
    for _ in 0..4 {
        conns.push(pool.get_owned().await.unwrap());
    }
    for conn in &mut conns {
        let who: Who = diesel::sql_query("select current_user::text as who")
            .get_result(&mut **conn)
            .await
            .unwrap();
        assert_eq!(who.who, "tenantry_app");
    }
    let role = tenantry::db::roles::effective_role(&mut conns[0])
        .await
        .unwrap();
    assert!(!role.superuser && !role.bypass_rls);
    // The login role really is a superuser.
    let mut su = app.db.superuser().await;
    let who: Who = diesel::sql_query("select current_user::text as who")
        .get_result(&mut su)
        .await
        .unwrap();
    assert_eq!(who.who, "postgres");
}

async fn wait_for_exit(
    child: &mut std::process::Child,
    within: Duration,
) -> Option<std::process::ExitStatus> {
    let deadline = tokio::time::Instant::now() + within;
    while tokio::time::Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

fn stderr_of(child: std::process::Child) -> String {
    String::from_utf8_lossy(&child.wait_with_output().unwrap().stderr).into_owned()
}

async fn serve_refuses(db: &TestDb, role: &str, expected: &str) {
    let mut env: HashMap<String, String> = test_env(db);
    env.insert("DATABASE_APP_ROLE".into(), role.into());
    env.insert("BIND_ADDR".into(), format!("127.0.0.1:{}", free_port()));
    let mut child = binary(&["serve"], &env)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let status = wait_for_exit(&mut child, Duration::from_secs(30)).await;
    if status.is_none() {
        child.kill().unwrap();
        panic!("serve kept running with app role {role}");
    }
    assert!(!status.unwrap().success());
    let stderr = stderr_of(child);
    assert!(
        stderr.contains(expected),
        "stderr lacks {expected:?}: {stderr}"
    );
    assert!(
        stderr.contains("DATABASE_APP_ROLE"),
        "the message says how to fix it: {stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_refuses_a_bypassrls_or_superuser_app_role() {
    let db = TestDb::new().await;
    let role = format!(
        "bypass_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    let mut admin = diesel_async::AsyncPgConnection::establish(&common::admin_url())
        .await
        .unwrap();
    admin
        .batch_execute(&format!("create role {role} nologin bypassrls"))
        .await
        .unwrap();

    serve_refuses(&db, &role, "BYPASSRLS").await;
    serve_refuses(&db, "postgres", "superuser").await;

    // Clean up the cluster-wide role (its grants live in the test database).
    let mut conn = db.superuser().await;
    conn.batch_execute(&format!("drop owned by {role}"))
        .await
        .unwrap();
    drop(conn);
    drop(db);
    admin
        .batch_execute(&format!("drop role if exists {role}"))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_creates_the_app_role_and_serve_uses_it() {
    let db = TestDb::new().await;
    let role = format!("app_{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let mut env = test_env(&db);
    env.insert("DATABASE_APP_ROLE".into(), role.clone());
    let out = binary(&["migrate"], &env).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    #[derive(diesel::QueryableByName)]
    struct Attrs {
        #[diesel(sql_type = diesel::sql_types::Bool)]
        rolsuper: bool,
        #[diesel(sql_type = diesel::sql_types::Bool)]
        rolbypassrls: bool,
        #[diesel(sql_type = diesel::sql_types::Bool)]
        rolcanlogin: bool,
    }
    let mut conn = db.superuser().await;
    let a: Attrs = diesel::sql_query(format!(
        "select rolsuper, rolbypassrls, rolcanlogin from pg_roles where rolname = '{role}'"
    ))
    .get_result(&mut conn)
    .await
    .unwrap();
    assert!(!a.rolsuper && !a.rolbypassrls && !a.rolcanlogin);

    // serve (which migrates again: idempotent) comes up with it and answers /ready.
    let port = free_port();
    env.insert("BIND_ADDR".into(), format!("127.0.0.1:{port}"));
    let mut child = binary(&["serve"], &env)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let client = reqwest::Client::new();
    let mut ready = false;
    for _ in 0..100 {
        if let Ok(r) = client
            .get(format!("http://127.0.0.1:{port}/ready"))
            .send()
            .await
        {
            ready = r.status() == 200;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    child.kill().unwrap();
    let stderr = stderr_of(child);
    assert!(ready, "serve did not become ready: {stderr}");

    conn.batch_execute(&format!("drop owned by {role}"))
        .await
        .unwrap();
    drop(conn);
    drop(db);
    let mut admin = diesel_async::AsyncPgConnection::establish(&common::admin_url())
        .await
        .unwrap();
    admin
        .batch_execute(&format!("drop role if exists {role}"))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn production_serve_refuses_example_secrets_before_touching_anything() {
    // No database behind this URL: the refusal comes before any connection or migration.
    let mut env: HashMap<String, String> = HashMap::from([
        ("APP_ENV".into(), "production".into()),
        (
            "DATABASE_URL".into(),
            "postgres://postgres@127.0.0.1:1/none".into(),
        ),
        ("JWT_SECRET".into(), "dev-secret-change-me".into()),
        ("SERVICE_TOKEN".into(), "short".into()),
        (
            "CONFIG_ENCRYPTION_KEY".into(),
            "ZGV2LWtleS1jaGFuZ2UtbWUtMzItYnl0ZXMtbG9uZyE=".into(),
        ),
        ("BIND_ADDR".into(), format!("127.0.0.1:{}", free_port())),
    ]);
    let out = binary(&["serve"], &env)
        .env_remove("STRIPE_SECRET_KEY")
        .env_remove("BILLING_MODE")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success(), "serve started");
    let stderr = String::from_utf8_lossy(&out.stderr);
    for expected in [
        "refusing to serve with APP_ENV=production",
        "JWT_SECRET is an example",
        "SERVICE_TOKEN is 5 bytes",
        "CONFIG_ENCRYPTION_KEY is the example",
        "BILLING_MODE=local",
        "openssl rand",
    ] {
        assert!(
            stderr.contains(expected),
            "stderr lacks {expected:?}: {stderr}"
        );
    }
    assert!(!stderr.contains("cannot connect"), "{stderr}");

    // BILLING_MODE=stripe without a key is refused in development too.
    env.insert("APP_ENV".into(), "development".into());
    env.insert("BILLING_MODE".into(), "stripe".into());
    let out = binary(&["serve"], &env)
        .env_remove("STRIPE_SECRET_KEY")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("BILLING_MODE=stripe needs STRIPE_SECRET_KEY"),
        "{stderr}"
    );
}
