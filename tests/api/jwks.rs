//! Keys published by an identity provider as a JWK set (`JWT_JWKS_URL`): a local provider
//! started by each test serves a set it can rotate and counts its fetches. Tokens signed by a
//! new key are accepted after a rotation without a restart (HTTP and WebSocket); unknown
//! `kid`s cost at most one fetch per `JWT_JWKS_MIN_REFRESH`; the algorithm comes from the key,
//! never the token; `/ready` answers 503 naming the JWKS until keys are fetched, then 200, and
//! a provider failing later degrades it while the keys in hand keep working.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Json;
use base64::Engine as _;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::common::ws;
use crate::common::{free_port, TestApp, JWT_SECRET};

const ME: &str = "{ me { role } }";
const RSA_A_PRIVATE: &[u8] = include_bytes!("../fixtures/rsa_private.pem");
const RSA_A_PUBLIC: &[u8] = include_bytes!("../fixtures/rsa_public.pem");
const RSA_A_JWK: &str = include_str!("../fixtures/jwk_rsa.json");
const RSA_B_PRIVATE: &[u8] = include_bytes!("../fixtures/rsa_b_private.pem");
const RSA_B_JWK: &str = include_str!("../fixtures/jwk_rsa_b.json");

/// A local identity provider: serves `set` at `/.well-known/jwks.json`, counts fetches.
struct Provider {
    addr: SocketAddr,
    published: Arc<Published>,
    task: tokio::task::JoinHandle<()>,
}

struct Published {
    set: Mutex<Value>,
    fetches: AtomicUsize,
    /// Answer 503 instead of the set.
    failing: AtomicBool,
}

impl Provider {
    async fn start(set: Value) -> Provider {
        Self::start_on(0, set).await
    }

    /// On a given port (waits until the port can be bound).
    async fn start_on(port: u16, set: Value) -> Provider {
        let listener = loop {
            match tokio::net::TcpListener::bind(("127.0.0.1", port)).await {
                Ok(l) => break l,
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        };
        let published = Arc::new(Published {
            set: Mutex::new(set),
            fetches: AtomicUsize::new(0),
            failing: AtomicBool::new(false),
        });
        let router = axum::Router::new()
            .route(
                "/.well-known/jwks.json",
                get(|State(p): State<Arc<Published>>| async move {
                    p.fetches.fetch_add(1, Ordering::SeqCst);
                    if p.failing.load(Ordering::SeqCst) {
                        return axum::http::StatusCode::SERVICE_UNAVAILABLE.into_response();
                    }
                    Json(p.set.lock().unwrap().clone()).into_response()
                }),
            )
            .with_state(published.clone());
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            axum::serve(listener, router).await.unwrap();
        });
        Provider {
            addr,
            published,
            task,
        }
    }

    fn url(&self) -> String {
        url_on(self.addr.port())
    }

    fn publish(&self, set: Value) {
        *self.published.set.lock().unwrap() = set;
    }

    fn fetches(&self) -> usize {
        self.published.fetches.load(Ordering::SeqCst)
    }
}

impl Drop for Provider {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn url_on(port: u16) -> String {
    format!("http://127.0.0.1:{port}/.well-known/jwks.json")
}

/// A JWK from a fixture with `kid` (and any other members) added.
fn jwk(fixture: &str, extra: Value) -> Value {
    let mut key: Value = serde_json::from_str(fixture).unwrap();
    for (k, v) in extra.as_object().unwrap() {
        key[k] = v.clone();
    }
    key
}

fn set(keys: &[&Value]) -> Value {
    json!({ "keys": keys })
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A fresh P-256 key pair: its signing key and its public JWK (no `alg`: ES256 from the curve).
fn p256(kid: &str) -> (EncodingKey, Value) {
    use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let pair =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap();
    let point = pair.public_key().as_ref(); // 0x04 || x || y
    let jwk = json!({
        "kty": "EC", "crv": "P-256", "use": "sig", "kid": kid,
        "x": b64(&point[1..33]), "y": b64(&point[33..65]),
    });
    (EncodingKey::from_ec_der(pkcs8.as_ref()), jwk)
}

fn admin_claims() -> Value {
    let now = chrono::Utc::now().timestamp();
    json!({
        "sub": format!("idp-user-{}", Uuid::new_v4().simple()),
        "role": "platform_admin",
        "iat": now,
        "exp": now + 3600,
    })
}

fn token(alg: Algorithm, kid: Option<&str>, key: &EncodingKey) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    encode(&header, &admin_claims(), key).unwrap()
}

fn rsa_a() -> EncodingKey {
    EncodingKey::from_rsa_pem(RSA_A_PRIVATE).unwrap()
}

fn rsa_b() -> EncodingKey {
    EncodingKey::from_rsa_pem(RSA_B_PRIVATE).unwrap()
}

/// A server whose tokens come from `provider` (besides `JWT_SECRET`), ready to serve.
async fn app_with(provider_url: &str, min_refresh: &str) -> TestApp {
    let app = TestApp::spawn_with(|env| {
        env.insert("JWT_JWKS_URL".into(), provider_url.into());
        env.insert("JWT_JWKS_MIN_REFRESH".into(), min_refresh.into());
    })
    .await;
    wait_ready(&app).await;
    app
}

async fn ready(app: &TestApp) -> (u16, Value) {
    let (status, body) = app.get("/ready").await;
    (status, serde_json::from_str(&body).unwrap())
}

async fn wait_ready(app: &TestApp) {
    let mut last = (0, Value::Null);
    for _ in 0..100 {
        last = ready(app).await;
        if last.0 == 200 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("not ready within 10 s: {}", last.1);
}

/// Asserts `{ me { role } }` answers as a platform admin with this token.
async fn assert_accepted(app: &TestApp, token: &str, why: &str) {
    let resp = app.gql(Some(token), ME, json!({})).await;
    assert!(
        resp.body.get("errors").is_none(),
        "{why}: refused: {}",
        resp.body
    );
    assert_eq!(resp.body["data"]["me"]["role"], "PLATFORM_ADMIN", "{why}");
}

/// Asserts the token is refused with UNAUTHENTICATED and no data; returns the message.
async fn assert_refused(app: &TestApp, token: &str, why: &str) -> String {
    let resp = app.gql(Some(token), ME, json!({})).await;
    assert!(resp.status < 500, "{why}: HTTP {}", resp.status);
    assert_eq!(resp.code(), Some("UNAUTHENTICATED"), "{why}: {}", resp.body);
    assert!(resp.body["data"].is_null(), "{why}: data: {}", resp.body);
    resp.body["errors"][0]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_key_is_accepted_without_restart() {
    let key_a = jwk(
        RSA_A_JWK,
        json!({ "kid": "a", "alg": "RS256", "use": "sig" }),
    );
    let key_b = jwk(
        RSA_B_JWK,
        json!({ "kid": "b", "alg": "RS256", "use": "sig" }),
    );
    let provider = Provider::start(set(&[&key_a])).await;
    let app = app_with(&provider.url(), "60s").await;
    assert_eq!(provider.fetches(), 1, "one fetch at start");

    let token_a = token(Algorithm::RS256, Some("a"), &rsa_a());
    assert_accepted(&app, &token_a, "RS256 token of the published key").await;
    // HS256 (JWT_SECRET) keeps working beside the JWKS.
    assert_accepted(&app, &app.admin_token(), "HS256 beside the JWKS").await;

    // The provider rotates: only B is published now.
    provider.publish(set(&[&key_b]));
    let token_b = token(Algorithm::RS256, Some("b"), &rsa_b());
    assert_accepted(&app, &token_b, "token of the new key, after rotation").await;
    assert_eq!(provider.fetches(), 2, "the unknown kid caused one fetch");

    // The new set is the one in use: A is gone, and that costs no fetch within the interval.
    let msg = assert_refused(&app, &token_a, "token of the retired key").await;
    assert!(msg.contains("kid"), "{msg}");
    assert_eq!(provider.fetches(), 2);

    // WebSocket connection_init checks tokens the same way.
    let mut socket = ws::open(&app, &token_b).await;
    let result = ws::execute(&mut socket, "1", ME, json!({})).await;
    assert_eq!(result["data"]["me"]["role"], "PLATFORM_ADMIN", "{result}");
    let mut refused = ws::connect(&app, "graphql-transport-ws").await;
    ws::send(
        &mut refused,
        json!({ "type": "connection_init", "payload": { "Authorization": format!("Bearer {token_a}") } }),
    )
    .await;
    let closed = ws::next_json(&mut refused).await;
    assert_eq!(closed, Some(json!({ "closed": 4401 })), "{closed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_kids_cost_at_most_one_fetch_per_interval() {
    let key_a = jwk(RSA_A_JWK, json!({ "kid": "a" }));
    let provider = Provider::start(set(&[&key_a])).await;
    let interval = Duration::from_secs(2);
    let app = Arc::new(app_with(&provider.url(), "2s").await);
    let before = provider.fetches();

    // Tokens signed with a real key under kids the provider never published, all at once and
    // then one after another.
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..24 {
        let app = app.clone();
        tasks.spawn(async move {
            let t = token(Algorithm::RS256, Some(&format!("forged-{i}")), &rsa_a());
            assert_refused(&app, &t, "unknown kid").await
        });
    }
    while let Some(msg) = tasks.join_next().await {
        assert!(msg.unwrap().contains("kid"));
    }
    for i in 0..16 {
        let t = token(Algorithm::RS256, Some(&format!("again-{i}")), &rsa_a());
        assert_refused(&app, &t, "unknown kid").await;
    }
    let elapsed = started.elapsed();
    let allowed = 1 + (elapsed.as_millis() / interval.as_millis()) as usize;
    let caused = provider.fetches() - before;
    assert!(
        (1..=allowed).contains(&caused),
        "{caused} fetches for 40 unknown kids in {elapsed:?} (at most {allowed})"
    );

    // Once the interval has passed, an unknown kid may fetch again (a rotation is found).
    tokio::time::sleep(interval + Duration::from_millis(200)).await;
    let before = provider.fetches();
    let key_b = jwk(RSA_B_JWK, json!({ "kid": "b" }));
    provider.publish(set(&[&key_a, &key_b]));
    let token_b = token(Algorithm::RS256, Some("b"), &rsa_b());
    assert_accepted(&app, &token_b, "new key after the interval").await;
    assert_eq!(provider.fetches() - before, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn es256_keys_are_accepted() {
    let (signer, key_e) = p256("e");
    let key_a = jwk(RSA_A_JWK, json!({ "kid": "a" }));
    let provider = Provider::start(set(&[&key_a, &key_e])).await;
    let app = app_with(&provider.url(), "60s").await;

    assert_accepted(&app, &token(Algorithm::ES256, Some("e"), &signer), "ES256").await;
    assert_accepted(&app, &token(Algorithm::RS256, Some("a"), &rsa_a()), "RS256").await;
    // Two keys: a token must say which one signed it.
    let msg = assert_refused(&app, &token(Algorithm::ES256, None, &signer), "no kid").await;
    assert!(msg.contains("kid"), "{msg}");
    // Another P-256 key under the published kid: a bad signature.
    let (other, _) = p256("e");
    assert_refused(
        &app,
        &token(Algorithm::ES256, Some("e"), &other),
        "wrong key",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hmac_tokens_and_algorithm_confusion_fail_against_jwks_keys() {
    let (ec_signer, key_e) = p256("e");
    let key_a = jwk(RSA_A_JWK, json!({ "kid": "a", "alg": "RS256" }));
    // A provider that (wrongly) publishes a symmetric key: it is never used.
    let published_secret = b"published-secret-0123456789abcdef";
    let key_h = json!({ "kty": "oct", "kid": "h", "alg": "HS256", "k": b64(published_secret) });
    let provider = Provider::start(set(&[&key_a, &key_e, &key_h])).await;
    // JWKS only: no JWT_SECRET.
    let app = TestApp::spawn_with(|env| {
        env.remove("JWT_SECRET");
        env.insert("JWT_JWKS_URL".into(), provider.url());
    })
    .await;
    wait_ready(&app).await;
    assert_accepted(
        &app,
        &token(Algorithm::RS256, Some("a"), &rsa_a()),
        "sanity",
    )
    .await;

    let hs = |kid: &str, secret: &[u8]| {
        token(
            Algorithm::HS256,
            Some(kid),
            &EncodingKey::from_secret(secret),
        )
    };
    for (why, t) in [
        ("HS256 with some secret", hs("a", JWT_SECRET.as_bytes())),
        (
            "HS256 with the RSA public key as secret",
            hs("a", RSA_A_PUBLIC),
        ),
        (
            "HS256 with the published oct key",
            hs("h", published_secret),
        ),
        (
            "RS256 token under the EC key's kid",
            token(Algorithm::RS256, Some("e"), &rsa_a()),
        ),
        (
            "PS256 token under an RS256 key",
            token(Algorithm::PS256, Some("a"), &rsa_a()),
        ),
        (
            "ES256 token under the RSA key's kid",
            token(Algorithm::ES256, Some("a"), &ec_signer),
        ),
    ] {
        assert_refused(&app, &t, why).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_names_the_jwks_until_keys_are_fetched_then_recovers_without_restart() {
    // Nothing listens on the provider's port at start.
    let port = free_port();
    let app = TestApp::spawn_with(|env| {
        env.insert("JWT_JWKS_URL".into(), url_on(port));
        env.insert("JWT_JWKS_MIN_REFRESH".into(), "1s".into());
    })
    .await;
    let (status, body) = ready(&app).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["status"], "unavailable", "{body}");
    assert_eq!(body["checks"]["jwks"], "down", "{body}");
    assert_eq!(body["checks"]["postgres"], "ok", "{body}");
    assert!(
        body["down"].as_array().unwrap().contains(&json!("jwks")),
        "{body}"
    );
    let reason = body["reasons"]["jwks"].as_str().unwrap_or_default();
    assert!(reason.contains("JWT_JWKS_URL"), "{body}");

    let token_a = token(Algorithm::RS256, Some("a"), &rsa_a());
    let msg = assert_refused(&app, &token_a, "no keys yet").await;
    assert!(msg.contains("JWT_JWKS_URL"), "{msg}");
    // The server serves meanwhile: HS256 tokens work.
    assert_accepted(&app, &app.admin_token(), "HS256 while the JWKS is down").await;

    // The provider comes up: keys are fetched in the background, no restart.
    let key_a = jwk(RSA_A_JWK, json!({ "kid": "a" }));
    let provider = Provider::start_on(port, set(&[&key_a])).await;
    wait_ready(&app).await;
    let (_, body) = ready(&app).await;
    assert_eq!(body["checks"]["jwks"], "ok", "{body}");
    assert!(body.get("reasons").is_none(), "{body}");
    assert_accepted(&app, &token_a, "after the provider came up").await;

    // The provider fails later (here: a refetch for an unknown kid answers 503): the keys in
    // hand keep working, and the instance stays in rotation, degraded.
    provider.published.failing.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_refused(
        &app,
        &token(Algorithm::RS256, Some("x"), &rsa_a()),
        "unknown kid",
    )
    .await;
    let (status, body) = ready(&app).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "degraded", "{body}");
    assert_eq!(body["checks"]["jwks"], "stale", "{body}");
    let reason = body["reasons"]["jwks"].as_str().unwrap_or_default();
    assert!(reason.contains("HTTP 503"), "{body}");
    assert_accepted(&app, &token_a, "keys in hand while the provider fails").await;

    let (_, metrics) = app.get("/metrics").await;
    assert!(
        metrics.lines().any(
            |l| l.starts_with("tenantry_jwks_fetches_total") && l.contains("outcome=\"error\"")
        ),
        "failed fetches are counted"
    );
}
