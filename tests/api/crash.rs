//! Durability of the metering hot path: the server is killed with SIGKILL in the middle of a
//! stream of increments. Every acknowledged increment must be in PostgreSQL after a restart,
//! and retrying the unacknowledged ones with their idempotency keys converges exactly.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::{count, ServerProcess, TestApp};
use serde_json::json;

const TOKEN: &str = "crash-test-service-token";

async fn send(client: &reqwest::Client, base: &str, tenant: uuid::Uuid, key: &str) -> Option<i64> {
    let resp = client
        .post(format!("{base}/internal/tenants/{tenant}/usage"))
        .header("x-service-token", TOKEN)
        .json(&json!({ "resource": "api_calls", "amount": 1, "idempotencyKey": key }))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .ok()?;
    if resp.status() != 200 {
        return None;
    }
    resp.json::<serde_json::Value>().await.ok()?["used"].as_i64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_acknowledged_increment_is_lost_to_kill_9() {
    let setup = TestApp::spawn_with(|env| {
        env.insert("SERVICE_TOKEN".into(), TOKEN.into());
    })
    .await;
    let t = setup.tenant().plan("enterprise").create().await;
    let server = Arc::new(Mutex::new(ServerProcess::start(&setup.env).await));
    let base = server.lock().unwrap().base.clone();

    let acked: Arc<Mutex<HashSet<String>>> = Arc::default();
    let attempted: Arc<Mutex<Vec<String>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = tokio::task::JoinSet::new();
    for w in 0..16 {
        let (acked, attempted, stop, base) =
            (acked.clone(), attempted.clone(), stop.clone(), base.clone());
        let tenant = t.id;
        writers.spawn(async move {
            let client = reqwest::Client::new();
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let key = format!("w{w}-{i}");
                i += 1;
                attempted.lock().unwrap().push(key.clone());
                if send(&client, &base, tenant, &key).await.is_some() {
                    acked.lock().unwrap().insert(key);
                } else {
                    break; // the server is gone
                }
            }
        });
    }
    // Let acknowledged writes accumulate, then kill -9 mid-stream.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    server.lock().unwrap().kill();
    stop.store(true, Ordering::Relaxed);
    while writers.join_next().await.is_some() {}

    let acked = acked.lock().unwrap().clone();
    let attempted = attempted.lock().unwrap().clone();
    assert!(
        acked.len() > 50,
        "the stream was running: {} acknowledged",
        acked.len()
    );

    // Restart and compare acknowledged with stored.
    let restarted = ServerProcess::start(&setup.env).await;
    let mut db = setup.db.superuser().await;
    let tid = t.id;
    let stored = count(
        &mut db,
        &format!("select count(*) as n from usage_records where tenant_id = '{tid}'"),
    )
    .await;
    let used = count(
        &mut db,
        &format!(
            "select used as n from quotas where tenant_id = '{tid}' and resource = 'api_calls'"
        ),
    )
    .await;
    assert_eq!(stored, used, "records and the counter agree");
    let keys = format!(
        "select count(*) as n from usage_records where tenant_id = '{tid}' and idempotency_key = any(array[{}])",
        acked.iter().map(|k| format!("'{k}'")).collect::<Vec<_>>().join(",")
    );
    assert_eq!(
        count(&mut db, &keys).await,
        acked.len() as i64,
        "an acknowledged increment was lost"
    );
    let in_flight = attempted.len() - acked.len();
    assert!(
        stored as usize <= acked.len() + in_flight,
        "stored {stored} > attempted {}",
        attempted.len()
    );

    // Retrying the unacknowledged ones with their keys converges on exactly one each.
    let client = reqwest::Client::new();
    for key in attempted.iter().filter(|k| !acked.contains(*k)) {
        assert!(send(&client, &restarted.base, tid, key).await.is_some());
    }
    let stored = count(
        &mut db,
        &format!("select count(*) as n from usage_records where tenant_id = '{tid}'"),
    )
    .await;
    assert_eq!(stored, attempted.len() as i64);
    let used = count(
        &mut db,
        &format!(
            "select used as n from quotas where tenant_id = '{tid}' and resource = 'api_calls'"
        ),
    )
    .await;
    assert_eq!(used, attempted.len() as i64);
}
