//! Cross-check with Stripe's own Python library (`stripe` on PyPI, installed by
//! scripts/test.sh): a header it generates is accepted by our endpoint, and the headers the
//! tests' fake Stripe signs are accepted by its `Webhook.construct_event`.

use std::process::{Command, Stdio};

use crate::common::stripe::{deliver_raw, event, invoice, now, signature};
use crate::common::TestApp;
use std::io::Write;

const SECRET: &str = "whsec_python_crosscheck";

fn python(script: &str, stdin: &str) -> (bool, String) {
    let mut child = Command::new("python3")
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        !err.contains("No module named 'stripe'"),
        "the stripe Python package is missing: run scripts/test.sh"
    );
    (
        out.status.success(),
        if out.status.success() { text } else { err },
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signatures_agree_with_stripes_python_library() {
    let app = TestApp::spawn_with(|env| {
        env.insert("STRIPE_WEBHOOK_SECRET".into(), SECRET.into());
    })
    .await;
    let body = event(
        "evt_py",
        "invoice.created",
        now(),
        invoice("in_py", "cus_unknown", "sub_py", "draft", 100),
    )
    .to_string();

    // Stripe's library signs, our endpoint verifies.
    let (ok, header) = python(
        &format!("import sys, stripe; print(stripe.WebhookSignature.generate_signature_header(sys.stdin.read(), '{SECRET}'))"),
        &body,
    );
    assert!(ok, "{header}");
    let (status, resp) = deliver_raw(&app.base, &body, &header).await;
    assert_eq!(status, 200, "{resp}");
    let (ok, bad) = python(
        "import sys, stripe; print(stripe.WebhookSignature.generate_signature_header(sys.stdin.read(), 'whsec_other'))",
        &body,
    );
    assert!(ok);
    assert_eq!(deliver_raw(&app.base, &body, &bad).await.0, 400);

    // The tests' signer signs, Stripe's library verifies (so the fake signs as Stripe does).
    let ours = signature(SECRET, now(), &body);
    let (ok, out) = python(
        &format!("import sys, stripe; e = stripe.Webhook.construct_event(sys.stdin.read(), '{ours}', '{SECRET}'); print(e['id'])"),
        &body,
    );
    assert!(ok, "{out}");
    assert_eq!(out, "evt_py");
    let stale = signature(SECRET, now() - 301, &body);
    let (ok, _) = python(
        &format!("import sys, stripe; stripe.Webhook.construct_event(sys.stdin.read(), '{stale}', '{SECRET}')"),
        &body,
    );
    assert!(!ok, "Stripe's library refuses a 301 s old signature too");
}
