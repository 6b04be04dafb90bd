//! `/ready` follows its dependencies: 503 naming PostgreSQL when it is down, 200 "degraded" naming
//! Redis when only Redis is, 200 again when it is back, without a restart. PostgreSQL is taken
//! away through a TCP proxy the test owns, so the shared server is never stopped.

use std::time::Duration;

use crate::common::{free_port, TestApp};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

/// Forwards 127.0.0.1:`port` to PostgreSQL until dropped; dropping closes every connection.
struct Proxy {
    tasks: JoinSet<()>,
}

impl Proxy {
    async fn start(port: u16) -> Proxy {
        let listener = loop {
            match TcpListener::bind(("127.0.0.1", port)).await {
                Ok(l) => break l,
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        };
        let mut tasks = JoinSet::new();
        tasks.spawn(async move {
            let mut conns = JoinSet::new();
            while let Ok((mut inbound, _)) = listener.accept().await {
                conns.spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect("127.0.0.1:5432").await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        Proxy { tasks }
    }
}

async fn ready(app: &TestApp) -> (u16, serde_json::Value) {
    let resp = tokio::time::timeout(
        Duration::from_secs(10),
        app.client.get(format!("{}/ready", app.base)).send(),
    )
    .await
    .expect("/ready answers in time")
    .unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_follows_postgres_without_restart() {
    let port = free_port();
    let mut proxy = Some(Proxy::start(port).await);
    let app = TestApp::spawn_with(|env| {
        let url = env["DATABASE_URL"].replace("127.0.0.1:5432", &format!("127.0.0.1:{port}"));
        env.insert("DATABASE_URL".into(), url);
    })
    .await;
    assert_eq!(ready(&app).await.0, 200);

    proxy.take().unwrap().tasks.shutdown().await;
    let (status, body) = ready(&app).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["checks"]["postgres"], "down");
    assert!(body["down"]
        .as_array()
        .unwrap()
        .contains(&"postgres".into()));
    assert_eq!(
        app.get("/health").await.0,
        200,
        "liveness does not depend on PostgreSQL"
    );

    let _proxy = Proxy::start(port).await;
    let mut last = (0, serde_json::Value::Null);
    for _ in 0..50 {
        last = ready(&app).await;
        if last.0 == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(last.0, 200, "{}", last.1);
    // And the API works again on the same process.
    app.gql(None, "{ plans { slug } }", serde_json::json!({}))
        .await
        .ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_names_redis_when_it_is_down() {
    let closed = free_port();
    let app = TestApp::spawn_with(|env| {
        env.insert("REDIS_URL".into(), format!("redis://127.0.0.1:{closed}"));
    })
    .await;
    // Redis down alone degrades, it does not take the instance out of rotation
    // (docs/decisions.md "Redis outages"); tests/outage.rs covers a Redis dying mid-traffic.
    let (status, body) = ready(&app).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "degraded", "{body}");
    assert_eq!(body["down"], serde_json::json!(["redis"]), "{body}");
    assert_eq!(body["checks"]["redis"], "down");
    assert_eq!(body["checks"]["postgres"], "ok");

    let ok = TestApp::spawn().await;
    let (status, body) = ready(&ok).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["checks"]["redis"], "ok");
}
