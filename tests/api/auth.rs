//! JWT acceptance (SPEC §3): which tokens are accepted, which answer UNAUTHENTICATED with no
//! data, how RS256 and issuer/audience settings change that, and what each role may do.

use crate::common::{count, TestApp, JWT_SECRET};
use base64::Engine as _;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use uuid::Uuid;

const ME: &str = "{ me { role } }";
const RSA_PRIVATE: &[u8] = include_bytes!("../fixtures/rsa_private.pem");
const RSA_PUBLIC: &str = include_str!("../fixtures/rsa_public.pem");

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Claims valid for an hour; tests add, change or remove fields.
fn claims(role: &str, tenant: Option<Uuid>) -> Value {
    let mut c = json!({
        "sub": format!("user-{}", Uuid::new_v4().simple()),
        "role": role,
        "iat": now(),
        "exp": now() + 3600,
    });
    if let Some(t) = tenant {
        c["tenant_id"] = json!(t.to_string());
    }
    c
}

fn hs256(claims: &Value, secret: &[u8]) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret),
    )
    .unwrap()
}

fn rs256(claims: &Value) -> String {
    encode(
        &Header::new(Algorithm::RS256),
        claims,
        &EncodingKey::from_rsa_pem(RSA_PRIVATE).unwrap(),
    )
    .unwrap()
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Asserts `{ me { role } }` is refused with UNAUTHENTICATED and no data.
async fn assert_unauthenticated(app: &TestApp, headers: &[(&str, &str)], why: &str) {
    let resp = app.gql_with(None, headers, ME, json!({})).await;
    assert!(resp.status < 500, "{why}: HTTP {}", resp.status);
    assert_eq!(resp.code(), Some("UNAUTHENTICATED"), "{why}: {}", resp.body);
    assert!(
        resp.body["data"].is_null(),
        "{why}: data leaked: {}",
        resp.body
    );
}

async fn assert_token_unauthenticated(app: &TestApp, token: &str, why: &str) {
    let auth = format!("Bearer {token}");
    assert_unauthenticated(app, &[("authorization", auth.as_str())], why).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_or_missing_tokens_are_unauthenticated() {
    let app = TestApp::spawn().await;
    let secret = JWT_SECRET.as_bytes();

    // Sanity: the hand-built claims are accepted when nothing is wrong with them.
    let good = hs256(&claims("platform_admin", None), secret);
    let resp = app.gql(Some(&good), ME, json!({})).await;
    assert_eq!(resp.ok()["me"]["role"], "PLATFORM_ADMIN");

    assert_unauthenticated(&app, &[], "no token").await;

    let mut expired = claims("platform_admin", None);
    expired["iat"] = json!(now() - 7200);
    expired["exp"] = json!(now() - 3600);
    assert_token_unauthenticated(&app, &hs256(&expired, secret), "expired").await;

    // Just beyond the verifier's 5 s leeway.
    let mut barely = claims("platform_admin", None);
    barely["exp"] = json!(now() - 60);
    assert_token_unauthenticated(&app, &hs256(&barely, secret), "expired a minute ago").await;

    let other = hs256(
        &claims("platform_admin", None),
        b"another-secret-9876543210",
    );
    assert_token_unauthenticated(&app, &other, "signed with a different secret").await;

    // alg: none, with an empty signature and with the good token's signature kept.
    let header = b64(br#"{"alg":"none","typ":"JWT"}"#);
    let payload = b64(claims("platform_admin", None).to_string().as_bytes());
    let none = format!("{header}.{payload}.");
    assert_token_unauthenticated(&app, &none, "alg none, empty signature").await;
    let good_sig = good.rsplit('.').next().unwrap();
    let none_signed = format!("{header}.{payload}.{good_sig}");
    assert_token_unauthenticated(&app, &none_signed, "alg none, signature kept").await;
    let none_upper = format!("{}.{payload}.", b64(br#"{"alg":"NONE","typ":"JWT"}"#));
    assert_token_unauthenticated(&app, &none_upper, "alg NONE").await;

    let mut immature = claims("platform_admin", None);
    immature["nbf"] = json!(now() + 3600);
    assert_token_unauthenticated(&app, &hs256(&immature, secret), "nbf in the future").await;

    // A token without exp (exp is required).
    let mut no_exp = claims("platform_admin", None);
    no_exp.as_object_mut().unwrap().remove("exp");
    assert_token_unauthenticated(&app, &hs256(&no_exp, secret), "no exp").await;

    // A tampered payload under the good signature.
    let mut parts: Vec<String> = good.split('.').map(str::to_owned).collect();
    parts[1] = b64(claims("platform_admin", None).to_string().as_bytes());
    assert_token_unauthenticated(&app, &parts.join("."), "payload swapped").await;

    // An unknown role.
    let root = hs256(&claims("root", None), secret);
    assert_token_unauthenticated(&app, &root, "unknown role").await;

    // Wrong schemes and garbage.
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("admin:password")
    );
    assert_unauthenticated(&app, &[("authorization", basic.as_str())], "Basic auth").await;
    let basic_jwt = format!("Basic {good}");
    assert_unauthenticated(
        &app,
        &[("authorization", basic_jwt.as_str())],
        "a valid JWT under the Basic scheme",
    )
    .await;
    assert_unauthenticated(
        &app,
        &[("authorization", good.as_str())],
        "JWT without a scheme",
    )
    .await;
    for garbage in ["garbage", "a.b.c", "eyJhbGciOiJIUzI1NiJ9..", "Bearer"] {
        assert_token_unauthenticated(&app, garbage, &format!("Bearer {garbage:?}")).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rs256_tokens_are_verified_and_algorithm_confusion_is_refused() {
    let app = TestApp::spawn_with(|env| {
        env.remove("JWT_SECRET");
        env.insert("JWT_PUBLIC_KEY_PEM".into(), RSA_PUBLIC.to_string());
    })
    .await;

    let admin = rs256(&claims("platform_admin", None));
    let resp = app
        .gql(
            Some(&admin),
            "{ me { userId role tenant { id } } }",
            json!({}),
        )
        .await;
    let me = &resp.ok()["me"];
    assert_eq!(me["role"], "PLATFORM_ADMIN");
    assert!(me["tenant"].is_null());

    // A tenant created with the RS256 admin token, then used by an RS256 tenant admin.
    let slug = format!("rs-{}", &Uuid::new_v4().simple().to_string()[..10]);
    let created = app
        .gql(
            Some(&admin),
            "mutation($input: CreateTenantInput!) { createTenant(input: $input) { id } }",
            json!({ "input": { "name": "RS tenant", "slug": slug } }),
        )
        .await;
    let id = Uuid::parse_str(created.ok()["createTenant"]["id"].as_str().unwrap()).unwrap();
    let tenant_admin = rs256(&claims("tenant_admin", Some(id)));
    let resp = app
        .gql(
            Some(&tenant_admin),
            "{ me { role tenant { slug } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        resp.ok()["me"],
        json!({ "role": "TENANT_ADMIN", "tenant": { "slug": slug } })
    );

    // Algorithm confusion: HS256 keyed with the public key's PEM bytes.
    let confused = hs256(&claims("platform_admin", None), RSA_PUBLIC.as_bytes());
    assert_token_unauthenticated(&app, &confused, "HS256 keyed with the public PEM").await;
    let confused_trimmed = hs256(
        &claims("platform_admin", None),
        RSA_PUBLIC.trim().as_bytes(),
    );
    assert_token_unauthenticated(&app, &confused_trimmed, "HS256 keyed with the trimmed PEM").await;
    // HS256 with the (unconfigured here) test secret.
    let hs = hs256(&claims("platform_admin", None), JWT_SECRET.as_bytes());
    assert_token_unauthenticated(&app, &hs, "HS256 when only RS256 is configured").await;

    // RS256 failures: expired, signed by another key (a token from the test secret re-labelled).
    let mut expired = claims("platform_admin", None);
    expired["exp"] = json!(now() - 3600);
    assert_token_unauthenticated(&app, &rs256(&expired), "expired RS256").await;
    let relabelled = {
        let parts: Vec<&str> = hs.split('.').collect();
        format!(
            "{}.{}.{}",
            b64(br#"{"alg":"RS256","typ":"JWT"}"#),
            parts[1],
            parts[2]
        )
    };
    assert_token_unauthenticated(&app, &relabelled, "RS256 header, HMAC signature").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_both_keys_configured_the_public_key_is_no_hmac_secret() {
    let app = TestApp::spawn_with(|env| {
        env.insert("JWT_PUBLIC_KEY_PEM".into(), RSA_PUBLIC.to_string());
    })
    .await;
    let rs = rs256(&claims("platform_admin", None));
    assert_eq!(
        app.gql(Some(&rs), ME, json!({})).await.ok()["me"]["role"],
        "PLATFORM_ADMIN"
    );
    let hs = hs256(&claims("platform_admin", None), JWT_SECRET.as_bytes());
    assert_eq!(
        app.gql(Some(&hs), ME, json!({})).await.ok()["me"]["role"],
        "PLATFORM_ADMIN"
    );
    let confused = hs256(&claims("platform_admin", None), RSA_PUBLIC.as_bytes());
    assert_token_unauthenticated(&app, &confused, "HS256 keyed with the public PEM").await;
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
        let mut c = claims("platform_admin", None);
        if let Some(iss) = iss {
            c["iss"] = json!(iss);
        }
        if let Some(aud) = aud {
            c["aud"] = json!(aud);
        }
        hs256(&c, secret)
    };

    let good = with(Some("https://issuer.test"), Some("tenantry"));
    assert_eq!(
        app.gql(Some(&good), ME, json!({})).await.ok()["me"]["role"],
        "PLATFORM_ADMIN"
    );
    // The harness's own tokens carry the configured iss/aud.
    let t = app.tenant().create().await;
    assert_eq!(
        app.gql(Some(&t.member), ME, json!({})).await.ok()["me"]["role"],
        "TENANT_MEMBER"
    );

    let cases = [
        (
            with(Some("https://evil.test"), Some("tenantry")),
            "wrong issuer",
        ),
        (
            with(Some("https://issuer.test/"), Some("tenantry")),
            "issuer with a trailing slash",
        ),
        (with(None, Some("tenantry")), "missing issuer"),
        (
            with(Some("https://issuer.test"), Some("other-api")),
            "wrong audience",
        ),
        (with(Some("https://issuer.test"), None), "missing audience"),
        (with(None, None), "neither issuer nor audience"),
    ];
    for (token, why) in &cases {
        assert_token_unauthenticated(&app, token, why).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_members_cannot_manage_tenants_and_nothing_is_written() {
    let app = TestApp::spawn().await;
    let t = app
        .tenant()
        .plan("starter")
        .name("Original Name")
        .create()
        .await;
    let mut conn = app.db.superuser().await;
    let tenants_before = count(&mut conn, "select count(*) as n from tenants").await;
    let audit_sql = format!(
        "select count(*) as n from audit_logs where tenant_id = '{}'",
        t.id
    );
    let audit_before = count(&mut conn, &audit_sql).await;

    let slug = format!("m-{}", &Uuid::new_v4().simple().to_string()[..10]);
    let create = app
        .gql(
            Some(&t.member),
            "mutation($input: CreateTenantInput!) { createTenant(input: $input) { id } }",
            json!({ "input": { "name": "By a member", "slug": slug } }),
        )
        .await;
    create.err("FORBIDDEN");
    assert!(create.body["data"].is_null(), "{}", create.body);

    let update = app
        .gql(
            Some(&t.member),
            "mutation($id: ID!) { updateTenant(id: $id, input: { name: \"Renamed\" }) { id name } }",
            json!({ "id": t.id.to_string() }),
        )
        .await;
    update.err("FORBIDDEN");
    assert!(update.body["data"].is_null(), "{}", update.body);

    let suspend = app
        .gql(
            Some(&t.member),
            "mutation($id: ID!) { suspendTenant(id: $id, reason: \"no\") { id status } }",
            json!({ "id": t.id.to_string() }),
        )
        .await;
    suspend.err("FORBIDDEN");
    assert!(suspend.body["data"].is_null(), "{}", suspend.body);

    // A tenant admin may not create or suspend tenants either.
    app.gql(
        Some(&t.admin),
        "mutation($input: CreateTenantInput!) { createTenant(input: $input) { id } }",
        json!({ "input": { "name": "By an admin", "slug": slug } }),
    )
    .await
    .err("FORBIDDEN");
    app.gql(
        Some(&t.admin),
        "mutation($id: ID!) { suspendTenant(id: $id, reason: \"no\") { id } }",
        json!({ "id": t.id.to_string() }),
    )
    .await
    .err("FORBIDDEN");

    assert_eq!(
        count(&mut conn, "select count(*) as n from tenants").await,
        tenants_before,
        "a tenant was created"
    );
    let slug_sql = format!("select count(*) as n from tenants where slug = '{slug}'");
    assert_eq!(count(&mut conn, &slug_sql).await, 0);
    let unchanged = format!(
        "select count(*) as n from tenants where id = '{}' and name = 'Original Name' \
         and status = 'ACTIVE' and suspended_at is null",
        t.id
    );
    assert_eq!(
        count(&mut conn, &unchanged).await,
        1,
        "the tenant was changed"
    );
    assert_eq!(
        count(&mut conn, &audit_sql).await,
        audit_before,
        "a refused mutation was audited as done"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_claims_must_name_an_existing_tenant() {
    let app = TestApp::spawn().await;
    let secret = JWT_SECRET.as_bytes();

    for role in ["tenant_admin", "tenant_member"] {
        let token = hs256(&claims(role, None), secret);
        assert_token_unauthenticated(&app, &token, &format!("{role} without tenant_id")).await;
    }

    let ghost = app.token(tenantry::auth::Role::TenantAdmin, Some(Uuid::new_v4()));
    let resp = app.gql(Some(&ghost), ME, json!({})).await;
    resp.err("NOT_FOUND");
    assert!(resp.body["data"].is_null(), "{}", resp.body);
    assert!(resp.status < 500, "HTTP {}", resp.status);

    // A tenant_id that is not a UUID is no valid token.
    let mut bad = claims("tenant_admin", None);
    bad["tenant_id"] = json!("not-a-uuid");
    assert_token_unauthenticated(&app, &hs256(&bad, secret), "tenant_id not a UUID").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn me_describes_the_caller() {
    let app = TestApp::spawn().await;
    let t = app.tenant().create().await;
    let mut c = claims("tenant_admin", Some(t.id));
    c["sub"] = json!("alice@example.test");
    let token = hs256(&c, JWT_SECRET.as_bytes());
    let resp = app
        .gql(
            Some(&token),
            "{ me { userId role tenant { id slug } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        resp.ok()["me"],
        json!({
            "userId": "alice@example.test",
            "role": "TENANT_ADMIN",
            "tenant": { "id": t.id.to_string(), "slug": t.slug },
        })
    );

    let resp = app
        .gql(Some(&t.member), "{ me { role tenant { id } } }", json!({}))
        .await;
    assert_eq!(
        resp.ok()["me"],
        json!({ "role": "TENANT_MEMBER", "tenant": { "id": t.id.to_string() } })
    );

    let resp = app
        .gql(
            Some(&app.admin_token()),
            "{ me { role tenant { id } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        resp.ok()["me"],
        json!({ "role": "PLATFORM_ADMIN", "tenant": null })
    );
}
