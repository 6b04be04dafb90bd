//! The scheduler inside two `tenantry serve` processes: a due job runs exactly once, and when
//! the process holding a job's lock is killed mid-job, its work rolls back and the other
//! process takes the job over on its next tick.

use std::time::{Duration, Instant};

use crate::common::{count, ServerProcess, TestApp};
use diesel_async::SimpleAsyncConnection;
use tenantry::jobs::Job;

async fn wait_until(what: &str, secs: u64, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what} did not happen within {secs}s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_due_job_runs_once_and_survives_the_death_of_its_runner() {
    let app = TestApp::spawn().await;
    let process = |name: &str| {
        let mut env = app.env.clone();
        env.insert("JOBS_INTERVAL_SECS".into(), "1".into());
        let url = &env["DATABASE_URL"];
        let sep = if url.contains('?') { '&' } else { '?' };
        env.insert(
            "DATABASE_URL".into(),
            format!("{url}{sep}application_name={name}"),
        );
        env
    };
    let mut a = Some(ServerProcess::start(&process("runner-a")).await);
    let mut b = Some(ServerProcess::start(&process("runner-b")).await);
    let mut c = app.db.superuser().await;

    // A trial that ended a minute ago: expired exactly once, although both processes tick.
    let t1 = app.tenant().plan("starter").create().await;
    count(&mut c, &format!("with u as (update billing_subscriptions set trial_end = now() - interval '1 minute' where tenant_id = '{}' returning 1) select count(*) as n from u", t1.id)).await;
    let expired = format!("select count(*) as n from billing_subscriptions where tenant_id = '{}' and status = 'EXPIRED'", t1.id);
    let mut probe = app.db.superuser().await;
    wait_until("trial expiry", 10, async || {
        count(&mut probe, &expired).await == 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let audits = format!("select count(*) as n from audit_logs where tenant_id = '{}' and action = 'TRIAL_EXPIRED' and actor_type = 'SYSTEM'", t1.id);
    assert_eq!(count(&mut c, &audits).await, 1);

    // The next due trial, while this test holds the audit table: whichever process takes the
    // job blocks mid-way (after its UPDATE, at the audit insert) holding the job's lock; the
    // other one keeps skipping.
    let t2 = app.tenant().plan("starter").create().await;
    let mut blocker = app.db.superuser().await;
    blocker
        .batch_execute("begin; lock table audit_logs in exclusive mode")
        .await
        .unwrap();
    count(&mut c, &format!("with u as (update billing_subscriptions set trial_end = now() - interval '1 minute' where tenant_id = '{}' returning 1) select count(*) as n from u", t2.id)).await;
    let holder_sql = format!(
        "select count(*) filter (where a.application_name = 'runner-a') as n from pg_locks l join pg_stat_activity a on a.pid = l.pid
          where l.locktype = 'advisory' and l.granted and l.objid = {}",
        Job::TrialExpiry.lock_key()
    );
    let any_holder = holder_sql.replace("filter (where a.application_name = 'runner-a') ", "");
    let mut probe = app.db.superuser().await;
    wait_until("a process holding the trial-expiry lock", 10, async || {
        count(&mut probe, &any_holder).await == 1
    })
    .await;
    let a_holds = count(&mut c, &holder_sql).await == 1;

    // Kill the holder, then let its blocked statement go: without its process the
    // transaction never commits, so nothing of it remains, and the survivor takes over.
    if a_holds { a.take() } else { b.take() }.unwrap().kill();
    blocker.batch_execute("rollback").await.unwrap();
    drop(blocker);
    let expired2 = format!("select count(*) as n from billing_subscriptions where tenant_id = '{}' and status = 'EXPIRED'", t2.id);
    let mut probe = app.db.superuser().await;
    wait_until("the surviving process expiring the trial", 15, async || {
        count(&mut probe, &expired2).await == 1
    })
    .await;
    let audits2 = format!(
        "select count(*) as n from audit_logs where tenant_id = '{}' and action = 'TRIAL_EXPIRED'",
        t2.id
    );
    assert_eq!(count(&mut c, &audits2).await, 1);
    let survivor = a.as_ref().or(b.as_ref()).unwrap();
    let resp = survivor
        .gql(
            &t2.member,
            "{ tenant { plan { slug } subscription { status } } }",
            serde_json::json!({}),
        )
        .await;
    assert_eq!(resp.ok()["tenant"]["subscription"]["status"], "EXPIRED");
    assert_eq!(
        resp.ok()["tenant"]["plan"]["slug"],
        "free",
        "paid trial entitlements end"
    );
}
