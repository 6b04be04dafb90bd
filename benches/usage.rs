//! Throughput of the metering hot path (`bench/run.sh` runs this; it is not a test).
//!
//! Starts the API in-process (release build) on a fresh database, then drives it over loopback
//! HTTP with `BENCH_CLIENTS` concurrent clients (default 64) for `BENCH_SECS` seconds each
//! (default 10), and prints increments/s with p50/p99 latency for:
//! - `POST /internal/tenants/{id}/usage`, one tenant (one hot quota row),
//! - the same spread over 64 tenants,
//! - GraphQL `recordUsage`, one tenant,
//!
//! next to `pgbench` running a single-row `UPDATE ... SET n = n + 1` with the same number of
//! clients in the same run, so the ratio holds on a noisy machine.

use std::sync::Arc;
use std::time::{Duration, Instant};

use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
use serde_json::json;
use tenantry::app::{self, App};
use tenantry::auth::{Actor, Role};
use tenantry::config::Settings;
use tenantry::quotas::service::SetQuota;
use tenantry::tenants::service::CreateTenant;

const DB: &str = "tenantry_bench";
const SERVICE_TOKEN: &str = "bench-token";

fn env_or(k: &str, d: u64) -> u64 {
    std::env::var(k)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(d)
}

struct Figures {
    ok: u64,
    errors: u64,
    secs: f64,
    p50: Duration,
    p99: Duration,
}

impl Figures {
    fn print(&self, name: &str) {
        println!(
            "{name:<44} {:>9.0} incr/s   p50 {:>7.2} ms   p99 {:>7.2} ms   ({} ok, {} errors)",
            self.ok as f64 / self.secs,
            self.p50.as_secs_f64() * 1e3,
            self.p99.as_secs_f64() * 1e3,
            self.ok,
            self.errors
        );
    }
}

async fn load<F, Fut>(clients: usize, secs: u64, call: F) -> Figures
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let call = Arc::new(call);
    let deadline = Instant::now() + Duration::from_secs(secs);
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..clients {
        let call = call.clone();
        tasks.spawn(async move {
            let (mut lat, mut errors, mut i) = (Vec::new(), 0u64, 0u64);
            while Instant::now() < deadline {
                let t = Instant::now();
                if call(c, i).await {
                    lat.push(t.elapsed());
                } else {
                    errors += 1;
                }
                i += 1;
            }
            (lat, errors)
        });
    }
    let (mut all, mut errors) = (Vec::new(), 0);
    while let Some(r) = tasks.join_next().await {
        let (lat, e) = r.unwrap();
        all.extend(lat);
        errors += e;
    }
    all.sort();
    let pick = |q: f64| {
        all.get(((all.len() as f64 * q) as usize).min(all.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    Figures {
        ok: all.len() as u64,
        errors,
        secs: started.elapsed().as_secs_f64(),
        p50: pick(0.5),
        p99: pick(0.99),
    }
}

fn pgbench(url: &str, clients: usize, secs: u64) -> Option<f64> {
    let script = std::env::temp_dir().join("tenantry_bench_update.sql");
    std::fs::write(
        &script,
        "UPDATE bench_counter SET n = n + 1 WHERE id = 1;\n",
    )
    .ok()?;
    let out = std::process::Command::new("pgbench")
        .args([
            "-n",
            "-c",
            &clients.to_string(),
            "-j",
            "2",
            "-T",
            &secs.to_string(),
            "-f",
        ])
        .arg(&script)
        .arg(url)
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find(|l| l.starts_with("tps"))
        .and_then(|l| l.split_whitespace().nth(2))
        .and_then(|v| v.parse().ok())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let clients = env_or("BENCH_CLIENTS", 64) as usize;
    let secs = env_or("BENCH_SECS", 10);
    let admin = std::env::var("BENCH_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let url = format!("{}/{DB}", admin.rsplit_once('/').unwrap().0);
    {
        let mut c = AsyncPgConnection::establish(&admin).await?;
        c.batch_execute(&format!("drop database if exists {DB} with (force)"))
            .await?;
        c.batch_execute(&format!("create database {DB}")).await?;
    }
    tenantry::db::roles::migrate(&url, "tenantry_app").await?;
    let env = [
        ("DATABASE_URL", url.as_str()),
        ("DATABASE_POOL_SIZE", "16"),
        ("JWT_SECRET", "bench-secret"),
        ("SERVICE_TOKEN", SERVICE_TOKEN),
        ("RATE_LIMITS_ENABLED", "false"),
        ("REDIS_URL", "redis://127.0.0.1:6379"),
        ("REDIS_KEY_PREFIX", "bench:"),
        ("LOG_FORMAT", "json"),
    ];
    let settings = Settings::from_lookup(|k| {
        env.iter()
            .find(|(n, _)| *n == k)
            .map(|(_, v)| v.to_string())
    })?;
    let app = App::new(settings).await?;
    tenantry::seed::seed_catalogue(&app.db).await?;
    let mut tenants = Vec::new();
    for i in 0..64 {
        let input = CreateTenant {
            name: format!("Bench {i}"),
            slug: format!("bench-{i}"),
            domain: None,
            plan_slug: Some("enterprise".into()),
            owner_id: None,
            region: None,
        };
        let t = tenantry::tenants::service::create(&app, &Actor::system(), input).await?;
        let q = SetQuota {
            resource: "api_calls".into(),
            limit: i64::MAX / 2,
            unit: None,
            reset_period: None,
            alert_thresholds: Some(vec![1000]),
            enforcement: None,
        };
        tenantry::quotas::service::set_quota(&app, &Actor::system(), t.id, q).await?;
        tenants.push(t.id);
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let router = app::router(app.clone());
    tokio::spawn(async move { axum::serve(listener, router).await });
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(clients)
        .build()?;
    let token = tenantry::auth::jwt::issue(
        &app.settings,
        Role::TenantMember,
        Some(tenants[0]),
        "bench",
        Duration::from_secs(3600),
    )?;

    println!(
        "tenantry metering benchmark: {clients} clients, {secs} s per run, release build, loopback"
    );
    let (h, b, t0) = (http.clone(), base.clone(), tenants[0]);
    load(clients, secs, move |_, _| {
        let (h, b) = (h.clone(), b.clone());
        async move {
            let r = h
                .post(format!("{b}/internal/tenants/{t0}/usage"))
                .header("x-service-token", SERVICE_TOKEN)
                .json(&json!({ "resource": "api_calls", "amount": 1 }))
                .send()
                .await;
            matches!(r, Ok(r) if r.status() == 200)
        }
    })
    .await
    .print("POST /internal/.../usage, 1 tenant");

    let (h, b, ts) = (http.clone(), base.clone(), Arc::new(tenants.clone()));
    load(clients, secs, move |c, _| {
        let (h, b, t) = (h.clone(), b.clone(), ts[c % ts.len()]);
        async move {
            let r = h
                .post(format!("{b}/internal/tenants/{t}/usage"))
                .header("x-service-token", SERVICE_TOKEN)
                .json(&json!({ "resource": "api_calls", "amount": 1 }))
                .send()
                .await;
            matches!(r, Ok(r) if r.status() == 200)
        }
    })
    .await
    .print("POST /internal/.../usage, 64 tenants");

    let (h, b, tok) = (http.clone(), base.clone(), Arc::new(token));
    load(clients, secs, move |_, _| {
        let (h, b, tok) = (h.clone(), b.clone(), tok.clone());
        async move {
            let r = h.post(format!("{b}/graphql")).bearer_auth(tok.as_str())
                .json(&json!({ "query": "mutation { recordUsage(resource: \"api_calls\", amount: 1) { used } }" }))
                .send().await;
            match r {
                Ok(r) => r.json::<serde_json::Value>().await.map(|v| v.get("errors").is_none()).unwrap_or(false),
                Err(_) => false,
            }
        }
    })
    .await
    .print("GraphQL recordUsage, 1 tenant");

    {
        let mut c = AsyncPgConnection::establish(&url).await?;
        c.batch_execute("create table bench_counter (id int primary key, n bigint not null); insert into bench_counter values (1, 0)").await?;
    }
    match pgbench(&url, clients, secs) {
        Some(tps) => println!(
            "{:<44} {:>9.0} tps (baseline: single-row UPDATE, {clients} clients)",
            "pgbench", tps
        ),
        None => println!(
            "pgbench: not available (apt-get install postgresql-contrib / postgresql-client)"
        ),
    }
    Ok(())
}
