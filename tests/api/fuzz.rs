//! The whole schema fuzzed by a tool nobody here wrote: schemathesis in GraphQL mode (installed
//! by scripts/test.sh), a fixed number of cases per operation and a fixed seed, as every role
//! (platform admin, tenant admin, tenant member, anonymous), against the real binary. Zero 5xx
//! and zero INTERNAL answers (the check in tests/python/fuzz_hooks.py), zero panics and zero
//! internal errors in the server's log (every INTERNAL answer is logged as "internal error"),
//! and the server's resident memory grows by at most a few MiB over the whole run (read from
//! /proc before and after a warm-up pass).

use crate::common::{ServerProcess, TestApp};
use tenantry::auth::Role;

/// Cases per GraphQL operation and role (`FUZZ_CASES` overrides).
const CASES: &str = "8";
/// What the server may grow by over the whole run, after its warm-up.
const RSS_BUDGET_KIB: u64 = 16 * 1024;

fn schemathesis(base: &str, token: Option<&str>, report: &std::path::Path) -> (bool, String) {
    let cases = std::env::var("FUZZ_CASES").unwrap_or_else(|_| CASES.into());
    let mut cmd = std::process::Command::new("python3");
    // Our scalars' strategies and the contract's check (no 5xx, no INTERNAL): see the hooks.
    cmd.env("SCHEMATHESIS_HOOKS", "fuzz_hooks")
        .env(
            "PYTHONPATH",
            concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python"),
        )
        .current_dir(report.parent().unwrap_or(std::path::Path::new("/tmp")))
        .args(["-m", "schemathesis.cli", "run", &format!("{base}/graphql")])
        .args(["--max-examples", &cases, "--seed", "20261130"])
        .args(["--checks", "no_server_failure", "--continue-on-failure"])
        .args(["--generation-allow-x00", "true", "--request-timeout", "30"])
        .args([
            "--workers",
            "2",
            "--no-color",
            "--suppress-health-check",
            "all",
        ])
        .args(["--report", "ndjson", "--report-dir"])
        .arg(report);
    if let Some(t) = token {
        cmd.args(["-H", &format!("Authorization: Bearer {t}")]);
    }
    let out = cmd
        .output()
        .expect("python3 with schemathesis (scripts/test.sh installs it)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_server_error_panic_or_leak_as_any_role() {
    let app = TestApp::spawn_with(|env| {
        env.insert("JOBS_INTERVAL_SECS".into(), "0".into());
        env.insert("RUST_LOG".into(), "warn".into());
        env.insert("LOG_FORMAT".into(), "json".into());
    })
    .await;
    let t = app.tenant().plan("professional").create().await;
    let dir = std::env::temp_dir().join(format!("tenantry-fuzz-{}", t.id.simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join("server.log");
    let server = ServerProcess::start_logged(&app.env, &log).await;

    let roles = [
        ("anonymous", None),
        ("member", Some(t.member.clone())),
        ("tenant_admin", Some(t.admin.clone())),
        ("platform_admin", Some(app.token(Role::PlatformAdmin, None))),
    ];
    // Warm-up: one pass as a member sizes the caches, pools and buffers; then the budget.
    let (ok, out) = schemathesis(&server.base, roles[1].1.as_deref(), &dir.join("warmup"));
    assert!(ok, "schemathesis as member (warm-up) failed:\n{out}");
    let before = server.rss_kib();
    let mut failures = Vec::new();
    for (name, token) in &roles {
        let (ok, out) = schemathesis(&server.base, token.as_deref(), &dir.join(name));
        if !ok {
            failures.push(format!("== as {name} ==\n{out}"));
        }
    }
    let after = server.rss_kib();
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    let log = std::fs::read_to_string(&log).unwrap();
    let bad: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("panicked") || l.contains("internal error"))
        .take(20)
        .collect();
    assert!(bad.is_empty(), "the server logged:\n{}", bad.join("\n"));
    eprintln!("RSS {before} KiB before, {after} KiB after the fuzzing of every role");
    assert!(
        after <= before + RSS_BUDGET_KIB,
        "RSS grew from {before} KiB to {after} KiB"
    );
}
