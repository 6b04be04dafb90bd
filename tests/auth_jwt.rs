//! JWT verification and roles (SPEC §3): every malformed, expired, forged or misdirected token
//! is UNAUTHENTICATED with no data; roles decide what an authenticated caller may do.

mod common;

use base64::Engine as _;
use chrono::Utc;
use common::{count, TestApp, JWT_SECRET};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

const ME: &str = "{ me { role userId tenant { id } } }";

fn sign(claims: &Value, alg: Algorithm, key: &EncodingKey) -> String {
    encode(&Header::new(alg), claims, key).unwrap()
}

fn hs(claims: &Value, secret: &[u8]) -> String {
    sign(claims, Algorithm::HS256, &EncodingKey::from_secret(secret))
}

fn claims(tenant: Option<uuid::Uuid>, role: &str) -> Value {
    let now = Utc::now().timestamp();
    let mut c = json!({ "sub": "user-1", "role": role, "exp": now + 600, "iat": now });
    if let Some(t) = tenant {
        c["tenant_id"] = json!(t.to_string());
    }
    c
}

fn b64(v: &Value) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
}

async fn assert_unauthenticated(app: &TestApp, token: Option<&str>, why: &str) {
    let resp = app.gql(token, ME, json!({})).await;
    assert_eq!(resp.code(), Some("UNAUTHENTICATED"), "{why}: {}", resp.body);
    assert!(
        resp.body["data"].is_null() || resp.body["data"]["me"].is_null(),
        "{why}: data leaked {}",
        resp.body
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tokens_are_unauthenticated() {
    let app = TestApp::spawn().await;
    let t = app.tenant().create().await;
    let secret = JWT_SECRET.as_bytes();
    let now = Utc::now().timestamp();

    // Sanity: a good token works.
    let good = hs(&claims(Some(t.id), "tenant_member"), secret);
    assert_eq!(
        app.gql(Some(&good), ME, json!({})).await.ok()["me"]["role"],
        "TENANT_MEMBER"
    );

    assert_unauthenticated(&app, None, "no token").await;
    let mut expired = claims(Some(t.id), "tenant_member");
    expired["exp"] = json!(now - 120);
    assert_unauthenticated(&app, Some(&hs(&expired, secret)), "expired").await;
    let mut early = claims(Some(t.id), "tenant_member");
    early["nbf"] = json!(now + 600);
    assert_unauthenticated(&app, Some(&hs(&early, secret)), "not yet valid").await;
    let mut no_exp = claims(Some(t.id), "tenant_member");
    no_exp.as_object_mut().unwrap().remove("exp");
    assert_unauthenticated(&app, Some(&hs(&no_exp, secret)), "no exp").await;
    assert_unauthenticated(
        &app,
        Some(&hs(&claims(Some(t.id), "tenant_member"), b"another-secret")),
        "bad signature",
    )
    .await;
    let none = format!(
        "{}.{}.",
        b64(&json!({ "alg": "none", "typ": "JWT" })),
        b64(&claims(Some(t.id), "platform_admin"))
    );
    assert_unauthenticated(&app, Some(&none), "alg none").await;
    let mut tampered: Vec<String> = good.split('.').map(str::to_owned).collect();
    tampered[1] = b64(&claims(Some(t.id), "platform_admin"));
    assert_unauthenticated(&app, Some(&tampered.join(".")), "payload swapped").await;
    assert_unauthenticated(&app, Some("garbage"), "garbage").await;
    assert_unauthenticated(
        &app,
        Some(&hs(&claims(None, "tenant_admin"), secret)),
        "tenant role without tenant_id",
    )
    .await;
    assert_unauthenticated(
        &app,
        Some(&hs(&claims(Some(t.id), "superuser"), secret)),
        "unknown role",
    )
    .await;
    let resp = app
        .gql_with(
            None,
            &[("authorization", "Basic dXNlcjpwYXNz")],
            ME,
            json!({}),
        )
        .await;
    resp.err("UNAUTHENTICATED");

    // A valid token for a tenant that does not exist.
    let ghost = hs(&claims(Some(uuid::Uuid::new_v4()), "tenant_admin"), secret);
    app.gql(Some(&ghost), ME, json!({})).await.err("NOT_FOUND");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rs256_is_verified_and_algorithm_confusion_is_refused() {
    let public = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/rsa_public.pem"
    ))
    .unwrap();
    let private = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/rsa_private.pem"
    ))
    .unwrap();
    let app = TestApp::spawn_with(|env| {
        env.remove("JWT_SECRET");
        env.insert("JWT_PUBLIC_KEY_PEM".into(), public.clone());
    })
    .await;
    let rsa = EncodingKey::from_rsa_pem(&private).unwrap();
    let admin = sign(&claims(None, "platform_admin"), Algorithm::RS256, &rsa);
    assert_eq!(
        app.gql(Some(&admin), ME, json!({})).await.ok()["me"]["role"],
        "PLATFORM_ADMIN"
    );
    // HS256 signed with the public key's bytes: the classic confusion attack.
    let confused = hs(&claims(None, "platform_admin"), public.as_bytes());
    assert_unauthenticated(&app, Some(&confused), "HS256 with the public key").await;
    // HS256 with any secret while only RS256 is configured.
    assert_unauthenticated(
        &app,
        Some(&hs(&claims(None, "platform_admin"), JWT_SECRET.as_bytes())),
        "HS256 while RS256",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issuer_and_audience_are_checked_when_configured() {
    let app = TestApp::spawn_with(|env| {
        env.insert("JWT_ISSUER".into(), "https://issuer.test".into());
        env.insert("JWT_AUDIENCE".into(), "tenantry".into());
    })
    .await;
    let secret = JWT_SECRET.as_bytes();
    let with = |iss: Option<&str>, aud: Option<&str>| {
        let mut c = claims(None, "platform_admin");
        if let Some(i) = iss {
            c["iss"] = json!(i);
        }
        if let Some(a) = aud {
            c["aud"] = json!(a);
        }
        hs(&c, secret)
    };
    let ok = with(Some("https://issuer.test"), Some("tenantry"));
    assert_eq!(
        app.gql(Some(&ok), ME, json!({})).await.ok()["me"]["role"],
        "PLATFORM_ADMIN"
    );
    assert_unauthenticated(
        &app,
        Some(&with(Some("https://evil.test"), Some("tenantry"))),
        "wrong iss",
    )
    .await;
    assert_unauthenticated(&app, Some(&with(None, Some("tenantry"))), "missing iss").await;
    assert_unauthenticated(
        &app,
        Some(&with(Some("https://issuer.test"), Some("other"))),
        "wrong aud",
    )
    .await;
    assert_unauthenticated(
        &app,
        Some(&with(Some("https://issuer.test"), None)),
        "missing aud",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_decide_what_a_caller_may_do() {
    let app = TestApp::spawn().await;
    let t = app.tenant().create().await;
    let id = t.id.to_string();
    let resp = app.gql(Some(&t.admin), ME, json!({})).await;
    assert_eq!(resp.ok()["me"]["role"], "TENANT_ADMIN");
    assert_eq!(resp.ok()["me"]["tenant"]["id"], id);
    assert!(resp.ok()["me"]["userId"]
        .as_str()
        .unwrap()
        .starts_with("user-"));

    let admin_only = [
        (
            "mutation { createTenant(input: { name: \"X\", slug: \"by-member\" }) { id } }",
            json!({}),
        ),
        (
            "mutation($id: ID!) { suspendTenant(id: $id, reason: \"r\") { id } }",
            json!({ "id": id }),
        ),
        (
            "mutation($id: ID!) { deleteTenant(id: $id) { id } }",
            json!({ "id": id }),
        ),
        (
            "mutation($id: ID!) { updateTenant(id: $id, input: { name: \"by member\" }) { id } }",
            json!({ "id": id }),
        ),
    ];
    for (q, vars) in &admin_only {
        let resp = app.gql(Some(&t.member), q, vars.clone()).await;
        resp.err("FORBIDDEN");
        assert!(resp.body["data"].is_null(), "{}", resp.body);
    }
    // Tenant admins cannot run platform operations either.
    app.gql(Some(&t.admin), admin_only[0].0, json!({}))
        .await
        .err("FORBIDDEN");
    app.gql(Some(&t.admin), admin_only[1].0, admin_only[1].1.clone())
        .await
        .err("FORBIDDEN");
    let mut db = app.db.superuser().await;
    assert_eq!(
        count(
            &mut db,
            "select count(*) as n from tenants where slug = 'by-member' or name = 'by member'"
        )
        .await,
        0
    );
    assert_eq!(
        count(
            &mut db,
            &format!("select count(*) as n from tenants where id = '{id}' and status = 'ACTIVE'")
        )
        .await,
        1
    );
}
