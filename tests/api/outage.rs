//! Redis outages (docs/decisions.md "Redis outages"): with the Redis server of this test killed
//! under two running instances, reads, writes and recordUsage keep answering quickly, `/ready`
//! stays 200 as `degraded`, caches do not outlive missed invalidations for long, and the
//! `closed` rate-limit policy refuses with Retry-After. Once Redis is back, without a restart,
//! invalidations and quota alerts cross instances again and nothing acknowledged is missing
//! from PostgreSQL. Only the test's own redis-server is stopped, never the system one.

use crate::common;

use std::time::{Duration, Instant};

use crate::common::{count, free_port, TestApp};
use serde_json::{json, Value};
use tenantry::bus::Event;

/// A redis-server child process of this test, on its own port.
struct RedisChild {
    port: u16,
    child: Option<std::process::Child>,
}

impl RedisChild {
    async fn start() -> RedisChild {
        let mut r = RedisChild {
            port: free_port(),
            child: None,
        };
        r.restart().await;
        r
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    async fn restart(&mut self) {
        let child = std::process::Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("redis-server on PATH");
        self.child = Some(child);
        let client = redis::Client::open(self.url()).unwrap();
        for _ in 0..100 {
            if let Ok(mut c) = client.get_multiplexed_async_connection().await {
                if redis::cmd("PING")
                    .query_async::<String>(&mut c)
                    .await
                    .is_ok()
                {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("redis-server did not start on port {}", self.port);
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for RedisChild {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn eventually(what: &str, within: Duration, mut check: impl FnMut() -> bool) {
    let started = Instant::now();
    while !check() {
        assert!(started.elapsed() < within, "{what} not within {within:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Runs a request and asserts it answered within a second (a publish used to take 2 s).
async fn quick<T>(what: &str, fut: impl std::future::Future<Output = T>) -> T {
    let started = Instant::now();
    let out = fut.await;
    let took = started.elapsed();
    assert!(took < Duration::from_secs(1), "{what} took {took:?}");
    out
}

async fn ready(app: &TestApp) -> (u16, Value) {
    let (status, body) = app.get("/ready").await;
    (status, serde_json::from_str(&body).unwrap())
}

const CFG: &str = "{ tenant { configs(category: \"notifications\") { key value } } }";
const SET_CFG: &str = "mutation($v: JSON!) { setConfig(input: { category: \"notifications\", key: \"digest\", value: $v, dataType: NUMBER }) { key } }";
const USAGE: &str = "mutation($r: String!, $n: BigInt!, $k: String) { recordUsage(resource: $r, amount: $n, idempotencyKey: $k) { used } }";

fn digest(resp: &common::Gql) -> Option<i64> {
    resp.body["data"]["tenant"]["configs"]
        .as_array()?
        .iter()
        .find(|e| e["key"] == "digest")?["value"]
        .as_i64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_outage_degrades_nothing_and_recovery_needs_no_restart() {
    let mut redis = RedisChild::start().await;
    let url = redis.url();
    let a = TestApp::spawn_with(|env| {
        env.insert("REDIS_URL".into(), url.clone());
        // Rate limits on (policy `open`, the default), high enough for this test.
        env.insert("RATE_LIMITS_ENABLED".into(), "true".into());
        env.insert("RATE_LIMIT_STARTER".into(), "100000".into());
    })
    .await;
    let b = a.second_instance().await;
    let t = a.tenant().plan("starter").create().await;
    let admin = a.admin_token();
    eventually("both subscribed", Duration::from_secs(5), || {
        a.app.bus.is_subscribed() && b.app.bus.is_subscribed()
    })
    .await;
    let (status, body) = ready(&a).await;
    assert_eq!(
        (status, body["status"].as_str()),
        (200, Some("ready")),
        "{body}"
    );
    a.gql(Some(&t.admin), SET_CFG, json!({ "v": 0 })).await.ok();

    // ---- Redis dies mid-traffic.
    redis.stop();
    let (status, body) = quick("/ready", ready(&a)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "degraded", "{body}");
    assert_eq!(body["checks"]["redis"], "down", "{body}");
    assert_eq!(body["checks"]["postgres"], "ok", "{body}");
    assert_eq!(body["down"], json!(["redis"]), "{body}");

    let mut acknowledged = 0;
    for i in 1..=4 {
        let resp = quick("read on B", b.gql(Some(&t.member), CFG, json!({}))).await;
        resp.ok();
        quick(
            "setConfig on A",
            a.gql(Some(&t.admin), SET_CFG, json!({ "v": i })),
        )
        .await
        .ok();
        quick(
            "setFeature on A",
            a.gql(
                Some(&admin),
                "mutation($t: ID, $on: Boolean!) { setFeature(tenantId: $t, key: \"real_time_chat\", enabled: $on) { enabled } }",
                json!({ "t": t.id.to_string(), "on": i % 2 == 0 }),
            ),
        )
        .await
        .ok();
        let resp = quick(
            "recordUsage on B",
            b.gql(
                Some(&t.member),
                USAGE,
                json!({ "r": "ai_interactions", "n": 1, "k": format!("outage-{i}") }),
            ),
        )
        .await;
        assert_eq!(resp.ok()["recordUsage"]["used"], i);
        acknowledged += 1;
    }
    // B missed A's invalidations, but drops its caches while it is cut off: it shows the
    // last value within a few seconds, not after the cache TTL.
    let started = Instant::now();
    loop {
        let resp = b.gql(Some(&t.member), CFG, json!({})).await;
        if digest(&resp) == Some(4) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "B serves a stale config during the outage: {}",
            resp.body
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The `closed` policy refuses tenant traffic, with Retry-After, and runs nothing.
    let c = TestApp::spawn_with(|env| {
        env.insert("REDIS_URL".into(), redis.url());
        env.insert("RATE_LIMITS_ENABLED".into(), "true".into());
        env.insert("RATE_LIMIT_ON_REDIS_ERROR".into(), "closed".into());
    })
    .await;
    let ct = c.tenant().plan("starter").create().await;
    let resp = c.gql(Some(&ct.admin), SET_CFG, json!({ "v": 99 })).await;
    resp.err("RATE_LIMITED");
    assert_eq!(resp.status, 429);
    assert_eq!(resp.header("retry-after"), Some("5"));
    let mut cdb = c.db.superuser().await;
    let sql = format!(
        "select count(*) as n from configs where tenant_id = '{}' and key = 'digest'",
        ct.id
    );
    assert_eq!(count(&mut cdb, &sql).await, 0, "a refused request wrote");
    // Platform admins are not rate limited: they still get through.
    c.gql(Some(&c.admin_token()), "{ plans { slug } }", json!({}))
        .await
        .ok();

    // ---- Redis comes back: no restart of either instance.
    redis.restart().await;
    eventually("both resubscribed", Duration::from_secs(5), || {
        a.app.bus.is_subscribed() && b.app.bus.is_subscribed()
    })
    .await;
    let started = Instant::now();
    loop {
        let (status, body) = ready(&a).await;
        if status == 200 && body["status"] == "ready" {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(5), "{body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Let the resyncs of the reconnection pass, then warm B's cache with the current value.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    for _ in 0..2 {
        assert_eq!(
            digest(&b.gql(Some(&t.member), CFG, json!({})).await),
            Some(4)
        );
    }
    a.gql(Some(&t.admin), SET_CFG, json!({ "v": 5 })).await.ok();
    let started = Instant::now();
    loop {
        let resp = b.gql(Some(&t.member), CFG, json!({})).await;
        if digest(&resp) == Some(5) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "invalidation does not reach B after recovery: {}",
            resp.body
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // A quota alert raised on A reaches a subscriber on B.
    let mut alerts = b.app.bus.subscribe();
    let resp = a
        .gql(
            Some(&t.member),
            USAGE,
            json!({ "r": "api_calls", "n": 7600, "k": "after" }),
        )
        .await;
    assert_eq!(resp.ok()["recordUsage"]["used"], 7600);
    let alert = tokio::time::timeout(Duration::from_secs(3), async {
        loop {
            match alerts.recv().await {
                Ok(Event::QuotaAlert(a)) if a.tenant_id == t.id.into() => return a,
                Ok(_) => continue,
                Err(e) => panic!("bus: {e}"),
            }
        }
    })
    .await
    .expect("the alert reaches instance B");
    assert_eq!(
        (alert.resource.as_str(), alert.threshold),
        ("api_calls", 75)
    );

    // Nothing acknowledged is missing from PostgreSQL.
    let mut db = a.db.superuser().await;
    let tid = t.id;
    assert_eq!(
        count(&mut db, &format!("select count(*) as n from usage_records where tenant_id = '{tid}' and resource = 'ai_interactions'")).await,
        acknowledged
    );
    assert_eq!(
        count(&mut db, &format!("select used as n from quotas where tenant_id = '{tid}' and resource = 'ai_interactions'")).await,
        acknowledged
    );
    assert_eq!(
        count(&mut db, &format!("select (value #>> '{{}}')::bigint as n from configs where tenant_id = '{tid}' and key = 'digest'")).await,
        5
    );
    assert_eq!(
        count(&mut db, &format!("select count(*) as n from audit_logs where tenant_id = '{tid}' and entity_type = 'config'")).await,
        6
    );
}
