//! API keys (SPEC §11, issue 15): a `tnt_` key works on HTTP (POST, GET) and on the socket
//! with its tenant and role only, never reaches another tenant, fails at once on every
//! instance when revoked (its open sockets close), expires, rotates with an overlap, records
//! its last use without a write per request, is rate limited and audited like a user, and its
//! secret (or hash) shows up in no log, audit row, export or error message.

use std::time::Duration;

use serde_json::{json, Value};
use uuid::Uuid;

use crate::common::{self, count, get_query, text, within_a_second, ws, Gql, TestApp};

const CREATE: &str = "mutation($input: CreateApiKeyInput!) { createApiKey(input: $input) { secret apiKey { id name prefix role createdAt expiresAt lastUsedAt revokedAt } } }";
const REVOKE: &str = "mutation($id: ID!) { revokeApiKey(id: $id) { id revokedAt } }";
const ROTATE: &str =
    "mutation($id: ID!) { rotateApiKey(id: $id) { secret apiKey { id name role expiresAt } } }";
const ME: &str = "{ me { userId role tenant { id } } }";
const KEYS: &str = "{ tenant { apiKeys { id name prefix role expiresAt lastUsedAt revokedAt } } }";

struct Key {
    id: String,
    secret: String,
}

async fn create_key(app: &TestApp, token: &str, input: Value) -> Key {
    let resp = app
        .gql(Some(token), CREATE, json!({ "input": input }))
        .await;
    let created = &resp.ok()["createApiKey"];
    Key {
        id: created["apiKey"]["id"].as_str().unwrap().to_owned(),
        secret: created["secret"].as_str().unwrap().to_owned(),
    }
}

fn rename(id: Uuid, name: &str) -> (String, Value) {
    (
        "mutation($id: ID!, $name: String!) { updateTenant(id: $id, input: { name: $name }) { name } }"
            .to_owned(),
        json!({ "id": id.to_string(), "name": name }),
    )
}

async fn wait_closed(socket: &mut ws::Ws) -> Value {
    loop {
        let m = ws::next_json(socket)
            .await
            .expect("closed within five seconds");
        if m.get("closed").is_some() {
            return m;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_works_on_http_get_and_socket_with_its_tenant_and_role_only() {
    let app = TestApp::spawn().await;
    let a = app.tenant().plan("professional").create().await;
    let b = app.tenant().plan("professional").create().await;

    let resp = app
        .gql(
            Some(&a.admin),
            CREATE,
            json!({ "input": { "name": " back end ", "role": "TENANT_MEMBER" } }),
        )
        .await;
    let created = resp.ok()["createApiKey"].clone();
    let secret = created["secret"].as_str().unwrap().to_owned();
    let key = &created["apiKey"];
    assert!(
        secret.starts_with("tnt_") && secret.len() >= 4 + 43,
        "{secret}"
    );
    assert_eq!(key["name"], "back end");
    assert_eq!(key["role"], "TENANT_MEMBER");
    assert_eq!(key["prefix"].as_str().unwrap(), &secret[..12]);
    assert!(
        key["lastUsedAt"].is_null() && key["revokedAt"].is_null() && key["expiresAt"].is_null()
    );
    let key_id = key["id"].as_str().unwrap().to_owned();

    // HTTP POST and GET: the key's tenant and role.
    let me = app.gql(Some(&secret), ME, json!({})).await;
    assert_eq!(me.ok()["me"]["role"], "TENANT_MEMBER");
    assert_eq!(me.ok()["me"]["userId"], format!("apikey:{key_id}"));
    assert_eq!(me.ok()["me"]["tenant"]["id"], a.id.to_string());
    let me = get_query(&app, &secret, ME).await;
    assert_eq!(me.ok()["me"]["tenant"]["id"], a.id.to_string());

    // The socket.
    let mut socket = ws::open(&app, &secret).await;
    let answer = ws::execute(&mut socket, "1", ME, json!({})).await;
    assert_eq!(answer["data"]["me"]["role"], "TENANT_MEMBER", "{answer}");
    assert_eq!(answer["data"]["me"]["tenant"]["id"], a.id.to_string());
    let (q, v) = rename(a.id, "Renamed over the socket");
    let answer = ws::execute(&mut socket, "2", &q, v).await;
    assert_eq!(
        answer["errors"][0]["extensions"]["code"], "FORBIDDEN",
        "{answer}"
    );

    // A member key may not do what only admins may.
    let (q, v) = rename(a.id, "Renamed by a member key");
    app.gql(Some(&secret), &q, v).await.err("FORBIDDEN");
    app.gql(Some(&secret), KEYS, json!({}))
        .await
        .err("FORBIDDEN");

    // An admin key may, as itself in the audit log.
    let admin_key = create_key(
        &app,
        &a.admin,
        json!({ "name": "admin back end", "role": "TENANT_ADMIN" }),
    )
    .await;
    let (q, v) = rename(a.id, "Renamed by an admin key");
    assert_eq!(
        app.gql(Some(&admin_key.secret), &q, v).await.ok()["updateTenant"]["name"],
        "Renamed by an admin key"
    );
    let mut db = app.db.superuser().await;
    let actor = text(
        &mut db,
        &format!(
            "select actor_type || ' ' || actor_id as v from audit_logs
              where tenant_id = '{}' and entity_type = 'tenant' and action = 'UPDATE'
              order by created_at desc limit 1",
            a.id
        ),
    )
    .await;
    assert_eq!(
        actor.as_deref(),
        Some(format!("API_KEY apikey:{}", admin_key.id).as_str())
    );

    // Tenant A's keys never reach tenant B: ids, X-Tenant-ID, B's keys.
    let before_b = count(
        &mut db,
        &format!(
            "select count(*) as n from audit_logs where tenant_id = '{}'",
            b.id
        ),
    )
    .await;
    let b_key = create_key(
        &app,
        &b.admin,
        json!({ "name": "b", "role": "TENANT_ADMIN" }),
    )
    .await;
    for token in [&secret, &admin_key.secret] {
        let resp = app
            .gql(
                Some(token),
                "query($id: ID!) { tenant(id: $id) { name } }",
                json!({ "id": b.id.to_string() }),
            )
            .await;
        resp.err("NOT_FOUND");
        let (q, v) = rename(b.id, "Taken over");
        let resp = app.gql(Some(token), &q, v).await;
        assert!(
            matches!(resp.code(), Some("NOT_FOUND" | "FORBIDDEN")),
            "{:?}",
            resp.body
        );
        let resp = app
            .gql_with(
                Some(token),
                &[("x-tenant-id", &b.id.to_string())],
                ME,
                json!({}),
            )
            .await;
        resp.err("FORBIDDEN");
        for op in [REVOKE, ROTATE] {
            let resp = app.gql(Some(token), op, json!({ "id": b_key.id })).await;
            assert!(
                matches!(resp.code(), Some("NOT_FOUND" | "FORBIDDEN")),
                "{:?}",
                resp.body
            );
        }
    }
    assert!(!app
        .gql(Some(&b.admin), "{ tenant { name } }", json!({}))
        .await
        .ok()
        .to_string()
        .contains("Taken over"));
    // B's key still works, and nothing new was written about B (besides B's own key).
    app.gql(Some(&b_key.secret), ME, json!({})).await.ok();
    let after_b = count(
        &mut db,
        &format!(
            "select count(*) as n from audit_logs where tenant_id = '{}'",
            b.id
        ),
    )
    .await;
    assert_eq!(
        after_b,
        before_b + 1,
        "only B's own key creation is audited about B"
    );

    // A token starting with tnt_ is never tried as a JWT, and a wrong one says nothing back.
    for bad in [
        format!("{secret}x"),
        "tnt_".to_owned(),
        "tnt_not-a-key".to_owned(),
    ] {
        let resp = app.gql(Some(&bad), ME, json!({})).await;
        let err = resp.err("UNAUTHENTICATED");
        assert!(
            !err.to_string()
                .contains(&bad[4..].chars().take(8).collect::<String>())
                || bad == "tnt_"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_key_fails_at_once_on_every_instance_and_its_sockets_close() {
    let one = TestApp::spawn().await;
    let two = one.second_instance().await;
    let t = one.tenant().create().await;
    let key = create_key(
        &one,
        &t.admin,
        json!({ "name": "ci", "role": "TENANT_ADMIN" }),
    )
    .await;
    // Both instances have the key cached, and a socket is open on the second.
    for app in [&one, &two, &one, &two] {
        app.gql(Some(&key.secret), ME, json!({})).await.ok();
    }
    let mut socket = ws::open(&two, &key.secret).await;
    assert_eq!(
        ws::execute(&mut socket, "1", ME, json!({})).await["data"]["me"]["role"],
        "TENANT_ADMIN"
    );

    let resp = one
        .gql(Some(&t.admin), REVOKE, json!({ "id": key.id }))
        .await;
    assert!(resp.ok()["revokeApiKey"]["revokedAt"].is_string());
    // This instance: refused on the very next request.
    one.gql(Some(&key.secret), ME, json!({}))
        .await
        .err("UNAUTHENTICATED");
    // The other one: as soon as the bus delivers the revocation (milliseconds).
    within_a_second("the revocation on the second instance", || async {
        match two.gql(Some(&key.secret), ME, json!({})).await.code() {
            Some("UNAUTHENTICATED") => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    let started = std::time::Instant::now();
    let closed = wait_closed(&mut socket).await;
    assert_eq!(closed["closed"], 4403, "{closed}");
    assert!(started.elapsed() < Duration::from_secs(2));
    // A new socket with it is refused too, and revoking twice is a conflict.
    let mut again = ws::connect(&two, "graphql-transport-ws").await;
    ws::send(
        &mut again,
        json!({ "type": "connection_init", "payload": { "Authorization": format!("Bearer {}", key.secret) } }),
    )
    .await;
    assert_eq!(wait_closed(&mut again).await["closed"], 4401);
    one.gql(Some(&t.admin), REVOKE, json!({ "id": key.id }))
        .await
        .err("CONFLICT");
    // Gone from the tenant's list.
    let keys = one.gql(Some(&t.admin), KEYS, json!({})).await;
    assert!(!keys.ok().to_string().contains(&key.id));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_expire_and_rotate_with_an_overlap() {
    let app = TestApp::spawn_with(|env| {
        env.insert("API_KEY_ROTATION_OVERLAP".into(), "2s".into());
    })
    .await;
    let t = app.tenant().create().await;

    // Expiry.
    let at = (chrono::Utc::now() + chrono::Duration::milliseconds(1500)).to_rfc3339();
    let short = create_key(
        &app,
        &t.admin,
        json!({ "name": "short", "role": "TENANT_MEMBER", "expiresAt": at }),
    )
    .await;
    app.gql(Some(&short.secret), ME, json!({})).await.ok();
    tokio::time::sleep(Duration::from_millis(1700)).await;
    let resp = app.gql(Some(&short.secret), ME, json!({})).await;
    resp.err("UNAUTHENTICATED");
    let past = (chrono::Utc::now() - chrono::Duration::minutes(1)).to_rfc3339();
    app.gql(
        Some(&t.admin),
        CREATE,
        json!({ "input": { "name": "past", "role": "TENANT_MEMBER", "expiresAt": past } }),
    )
    .await
    .err("BAD_USER_INPUT");

    // Rotation: the old key works during the overlap, the new one at once; a socket on the
    // old key closes when the overlap ends.
    let old = create_key(
        &app,
        &t.admin,
        json!({ "name": "deploy", "role": "TENANT_ADMIN" }),
    )
    .await;
    app.gql(Some(&old.secret), ME, json!({})).await.ok();
    let mut socket = ws::open(&app, &old.secret).await;
    let resp = app
        .gql(Some(&t.admin), ROTATE, json!({ "id": old.id }))
        .await;
    let rotated = resp.ok()["rotateApiKey"].clone();
    let new_secret = rotated["secret"].as_str().unwrap().to_owned();
    assert_ne!(new_secret, old.secret);
    assert_eq!(rotated["apiKey"]["name"], "deploy");
    assert_eq!(rotated["apiKey"]["role"], "TENANT_ADMIN");
    app.gql(Some(&old.secret), ME, json!({})).await.ok();
    app.gql(Some(&new_secret), ME, json!({})).await.ok();
    let keys = app.gql(Some(&t.admin), KEYS, json!({})).await;
    let list = keys.ok()["tenant"]["apiKeys"].as_array().unwrap().clone();
    let old_row = list
        .iter()
        .find(|k| k["id"] == old.id.as_str())
        .expect("old key listed during the overlap");
    assert!(old_row["expiresAt"].is_string(), "{old_row}");
    // Rotating the same key twice is a conflict (rotate its replacement).
    app.gql(Some(&t.admin), ROTATE, json!({ "id": old.id }))
        .await
        .err("CONFLICT");

    let closed = wait_closed(&mut socket).await;
    assert_eq!(closed["closed"], 4403, "{closed}");
    // The socket's deadline is kept in whole seconds: the key itself ends within a second.
    let mut refused = false;
    for _ in 0..40 {
        let r = app.gql(Some(&old.secret), ME, json!({})).await;
        if r.code() == Some("UNAUTHENTICATED") {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(refused, "the old key still works after its overlap");
    app.gql(Some(&new_secret), ME, json!({})).await.ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_used_is_recorded_without_a_write_per_request() {
    let app = TestApp::spawn().await;
    let t = app.tenant().create().await;
    let key = create_key(
        &app,
        &t.admin,
        json!({ "name": "poller", "role": "TENANT_MEMBER" }),
    )
    .await;
    let last_used = || async {
        let resp = app.gql(Some(&t.admin), KEYS, json!({})).await;
        resp.ok()["tenant"]["apiKeys"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["id"] == key.id.as_str())
            .unwrap()["lastUsedAt"]
            .clone()
    };
    assert!(last_used().await.is_null());
    app.gql(Some(&key.secret), ME, json!({})).await.ok();
    within_a_second("lastUsedAt", || async {
        match last_used().await {
            Value::String(_) => Ok(()),
            other => Err(other.to_string()),
        }
    })
    .await;
    let first = last_used().await;
    for _ in 0..5 {
        app.gql(Some(&key.secret), ME, json!({})).await.ok();
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        last_used().await,
        first,
        "one write per key per minute, not one per request"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn who_may_manage_keys_and_which_roles_they_may_hold() {
    let app = TestApp::spawn().await;
    let a = app.tenant().create().await;
    let b = app.tenant().create().await;
    let admin = app.admin_token();
    let input = |role: &str| json!({ "input": { "name": "k", "role": role } });

    // Members may not create, list, revoke or rotate keys.
    app.gql(Some(&a.member), CREATE, input("TENANT_MEMBER"))
        .await
        .err("FORBIDDEN");
    app.gql(Some(&a.member), KEYS, json!({}))
        .await
        .err("FORBIDDEN");
    // A role above the creator's is refused; PLATFORM_ADMIN keys never exist.
    app.gql(Some(&a.admin), CREATE, input("PLATFORM_ADMIN"))
        .await
        .err("FORBIDDEN");
    let resp = app
        .gql(
            Some(&admin),
            CREATE,
            json!({ "input": { "tenantId": a.id, "name": "k", "role": "PLATFORM_ADMIN" } }),
        )
        .await;
    resp.err("BAD_USER_INPUT");
    // Bad names.
    for name in ["", "   ", &"x".repeat(101)] {
        app.gql(
            Some(&a.admin),
            CREATE,
            json!({ "input": { "name": name, "role": "TENANT_MEMBER" } }),
        )
        .await
        .err("BAD_USER_INPUT");
    }
    // Another tenant's id is NOT_FOUND, like every tenantId-taking mutation.
    app.gql(
        Some(&a.admin),
        CREATE,
        json!({ "input": { "tenantId": b.id, "name": "k", "role": "TENANT_MEMBER" } }),
    )
    .await
    .err("NOT_FOUND");
    // Platform admins create keys for any tenant (a tenant id is then required).
    app.gql(Some(&admin), CREATE, input("TENANT_ADMIN"))
        .await
        .err("BAD_USER_INPUT");
    let by_platform = create_key(
        &app,
        &admin,
        json!({ "tenantId": a.id, "name": "ops", "role": "TENANT_ADMIN" }),
    )
    .await;
    let me = app.gql(Some(&by_platform.secret), ME, json!({})).await;
    assert_eq!(me.ok()["me"]["tenant"]["id"], a.id.to_string());

    // A key may not mint or rotate keys (even an admin key); it may revoke (itself too).
    app.gql(Some(&by_platform.secret), CREATE, input("TENANT_MEMBER"))
        .await
        .err("FORBIDDEN");
    app.gql(
        Some(&by_platform.secret),
        ROTATE,
        json!({ "id": by_platform.id }),
    )
    .await
    .err("FORBIDDEN");
    let member_key = create_key(
        &app,
        &a.admin,
        json!({ "name": "m", "role": "TENANT_MEMBER" }),
    )
    .await;
    app.gql(
        Some(&member_key.secret),
        REVOKE,
        json!({ "id": member_key.id }),
    )
    .await
    .err("FORBIDDEN");
    app.gql(
        Some(&by_platform.secret),
        REVOKE,
        json!({ "id": member_key.id }),
    )
    .await
    .ok();
    app.gql(Some(&member_key.secret), ME, json!({}))
        .await
        .err("UNAUTHENTICATED");

    // Another tenant's key id, or a key that does not exist: NOT_FOUND.
    let b_key = create_key(
        &app,
        &b.admin,
        json!({ "name": "b", "role": "TENANT_MEMBER" }),
    )
    .await;
    for id in [b_key.id.clone(), Uuid::new_v4().to_string()] {
        app.gql(Some(&a.admin), REVOKE, json!({ "id": id }))
            .await
            .err("NOT_FOUND");
        app.gql(Some(&a.admin), ROTATE, json!({ "id": id }))
            .await
            .err("NOT_FOUND");
    }
    app.gql(Some(&b_key.secret), ME, json!({})).await.ok();

    // A suspended tenant's keys read but do not write; a deleted tenant's keys are NOT_FOUND.
    app.suspend_tenant(a.id, "unpaid").await.ok();
    app.gql(Some(&by_platform.secret), ME, json!({})).await.ok();
    let (q, v) = rename(a.id, "while suspended");
    app.gql(Some(&by_platform.secret), &q, v)
        .await
        .err("TENANT_SUSPENDED");
    app.delete_tenant(b.id).await.ok();
    app.gql(Some(&b_key.secret), ME, json!({}))
        .await
        .err("NOT_FOUND");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_and_cost_limits_apply_to_key_requests_per_tenant() {
    let app = TestApp::spawn_with(|env| {
        env.insert("RATE_LIMITS_ENABLED".into(), "true".into());
    })
    .await;
    let t = app.tenant().plan("free").create().await;
    // Created by a platform admin: nothing charged to the tenant yet.
    let key = create_key(
        &app,
        &app.admin_token(),
        json!({ "tenantId": t.id, "name": "busy", "role": "TENANT_MEMBER" }),
    )
    .await;
    for i in 1..=10 {
        let resp = app.gql(Some(&key.secret), ME, json!({})).await;
        resp.ok();
        assert_eq!(
            resp.header("x-ratelimit-remaining"),
            Some((10 - i).to_string().as_str())
        );
        // The tenant's cost bucket is charged too.
        let bucket = &resp.body["extensions"]["cost"]["throttleStatus"];
        assert_eq!(bucket["maximumAvailable"], 1000, "{}", resp.body);
    }
    let resp = app.gql(Some(&key.secret), ME, json!({})).await;
    assert_eq!(resp.status, 429);
    resp.err("RATE_LIMITED");
    // The window is the tenant's: its users are out of it too, and so is the socket.
    app.gql(Some(&t.member), ME, json!({}))
        .await
        .err("RATE_LIMITED");
    let mut socket = ws::open(&app, &key.secret).await;
    let answer = ws::execute(&mut socket, "1", ME, json!({})).await;
    assert_eq!(
        answer["errors"][0]["extensions"]["code"], "RATE_LIMITED",
        "{answer}"
    );
}

fn forms_of(secret: &str) -> Vec<String> {
    use base64::Engine;
    let digest = ring::digest::digest(&ring::digest::SHA256, secret.as_bytes());
    let bytes = digest.as_ref();
    vec![
        secret.to_owned(),
        // Without the prefix too: the random part alone is the secret.
        secret[4..].to_owned(),
        bytes.iter().map(|b| format!("{b:02x}")).collect(),
        base64::engine::general_purpose::STANDARD.encode(bytes),
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes),
        // As a byte list, the way a `Debug` of bind parameters would print it.
        format!("{bytes:?}"),
        format!("{bytes:?}").replace(' ', ""),
    ]
}

fn assert_clean(what: &str, haystack: &str, secrets: &[String]) {
    for s in secrets {
        if let Some(at) = haystack.find(s.as_str()) {
            // Where it was, with the secret itself blanked.
            let from = haystack[..at]
                .char_indices()
                .rev()
                .nth(300)
                .map_or(0, |(i, _)| i);
            let context = haystack[from..at].to_owned() + "<SECRET>";
            panic!("{what} holds a secret or its hash, after: {context}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_never_appear_in_logs_audit_rows_exports_or_errors() {
    // API key secrets and invitation tokens alike.
    // The real binary with every log line on, written to a file we read afterwards.
    let app = TestApp::spawn().await;
    let mut env = app.env.clone();
    // Everything, as an operator chasing a bug would: no library may dump credentials.
    env.insert("RUST_LOG".into(), "trace".into());
    env.insert("LOG_FORMAT".into(), "json".into());
    env.insert("API_KEY_ROTATION_OVERLAP".into(), "1h".into());
    let log =
        std::env::temp_dir().join(format!("tenantry-apikeys-{}.log", Uuid::new_v4().simple()));
    let server = common::ServerProcess::start_logged(&env, &log).await;
    let t = app.tenant().plan("professional").create().await;
    let admin = app.admin_token();

    let post = |token: String, query: &'static str, vars: Value| {
        let base = server.base.clone();
        async move {
            let resp = reqwest::Client::new()
                .post(format!("{base}/graphql"))
                .bearer_auth(token)
                .json(&json!({ "query": query, "variables": vars }))
                .send()
                .await
                .unwrap();
            Gql::from_response(resp).await
        }
    };
    let created = post(
        t.admin.clone(),
        CREATE,
        json!({ "input": { "name": "leak check", "role": "TENANT_ADMIN" } }),
    )
    .await;
    let key_id = created.ok()["createApiKey"]["apiKey"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let first = created.ok()["createApiKey"]["secret"]
        .as_str()
        .unwrap()
        .to_owned();
    let member = post(
        t.admin.clone(),
        CREATE,
        json!({ "input": { "name": "member", "role": "TENANT_MEMBER" } }),
    )
    .await;
    let member_secret = member.ok()["createApiKey"]["secret"]
        .as_str()
        .unwrap()
        .to_owned();

    let mut bodies = Vec::new();
    // Uses, writes, and every kind of refusal.
    bodies.push(post(first.clone(), ME, json!({})).await.body.to_string());
    bodies.push(
        post(first.clone(), "mutation { setConfig(input: { category: \"integrations\", key: \"k\", value: \"v\" }) { key } }", json!({}))
            .await
            .body
            .to_string(),
    );
    for (token, query) in [
        (member_secret.clone(), "mutation { setConfig(input: { category: \"integrations\", key: \"k\", value: \"v\" }) { key } }"),
        (format!("{first}x"), ME),
        (first[..20].to_owned(), ME),
        (first.clone(), "{ nope }"),
        (first.clone(), "mutation { createApiKey(input: { name: \"n\", role: TENANT_MEMBER }) { secret } }"),
    ] {
        let resp = post(token, query, json!({})).await;
        assert!(resp.body.get("errors").is_some(), "{:?}", resp.body);
        bodies.push(resp.body.to_string());
    }
    let rotated = post(t.admin.clone(), ROTATE, json!({ "id": key_id })).await;
    let second = rotated.ok()["rotateApiKey"]["secret"]
        .as_str()
        .unwrap()
        .to_owned();
    let second_id = rotated.ok()["rotateApiKey"]["apiKey"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    bodies.push(post(second.clone(), ME, json!({})).await.body.to_string());
    post(t.admin.clone(), REVOKE, json!({ "id": second_id }))
        .await
        .ok();
    post(t.admin.clone(), REVOKE, json!({ "id": key_id }))
        .await
        .ok();
    for token in [&first, &second] {
        let resp = post(token.clone(), ME, json!({})).await;
        resp.err("UNAUTHENTICATED");
        bodies.push(resp.body.to_string());
    }
    // The socket: a refused init carries its reason in the close frame.
    let mut socket = {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let mut req = format!("{}/graphql/ws", server.base.replace("http", "ws"))
            .into_client_request()
            .unwrap();
        req.headers_mut().insert(
            "sec-websocket-protocol",
            "graphql-transport-ws".parse().unwrap(),
        );
        tokio_tungstenite::connect_async(req).await.unwrap().0
    };
    {
        use futures_util::{SinkExt, StreamExt};
        socket
            .send(tokio_tungstenite::tungstenite::Message::text(
                json!({ "type": "connection_init", "payload": { "Authorization": format!("Bearer {first}") } }).to_string(),
            ))
            .await
            .unwrap();
        while let Ok(Some(Ok(msg))) =
            tokio::time::timeout(Duration::from_secs(5), socket.next()).await
        {
            bodies.push(format!("{msg:?}"));
            if msg.is_close() {
                break;
            }
        }
    }

    // An invitation token (issue 15's other secret): invited, accepted, accepted again.
    let invited = post(
        t.admin.clone(),
        "mutation { inviteMember(input: { email: \"leak@example.com\", role: MEMBER }) { token acceptUrl } }",
        json!({}),
    )
    .await;
    let invitation = invited.ok()["inviteMember"]["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let joiner = app.token(tenantry::auth::Role::TenantMember, Some(t.id));
    let accept = "mutation($t: String!) { acceptInvitation(token: $t) { status } }";
    let joined = post(joiner.clone(), accept, json!({ "t": invitation })).await;
    assert_eq!(joined.ok()["acceptInvitation"]["status"], "ACTIVE");
    bodies.push(joined.body.to_string());
    let again = post(joiner, accept, json!({ "t": invitation })).await;
    again.err("CONFLICT");
    bodies.push(again.body.to_string());

    // The export, both ways, as a platform admin (who gets everything).
    let export = post(
        admin.clone(),
        "mutation($id: ID!) { exportTenantData(id: $id) }",
        json!({ "id": t.id.to_string() }),
    )
    .await;
    let export = export.ok()["exportTenantData"].to_string();
    assert!(
        export.contains("leak check") && export.contains(&key_id),
        "the keys are exported"
    );
    let download = reqwest::Client::new()
        .get(format!("{}/exports/tenants/{}", server.base, t.id))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(download.contains("leak check"));

    let mut db = app.db.superuser().await;
    let audit = text(
        &mut db,
        &format!("select string_agg(row_to_json(a)::text, E'\\n') as v from audit_logs a where tenant_id = '{}'", t.id),
    )
    .await
    .unwrap_or_default();
    assert!(
        audit.contains("API_KEY") && audit.contains("ROTATE") && audit.contains("REVOKE"),
        "{audit}"
    );

    drop(server);
    let logged = std::fs::read_to_string(&log).unwrap_or_default();
    let _ = std::fs::remove_file(&log);
    assert!(logged.len() > 1000, "the server logged: {logged}");

    let mut secrets = forms_of(&first);
    secrets.extend(forms_of(&second));
    secrets.extend(forms_of(&member_secret));
    secrets.extend(forms_of(&invitation));
    assert_clean("the server log", &logged, &secrets);
    assert_clean("an audit row", &audit, &secrets);
    assert_clean("the export", &export, &secrets);
    assert_clean("the streamed export", &download, &secrets);
    for body in &bodies {
        assert_clean("an answer", body, &secrets);
    }
    assert!(!export.contains("secret_hash") && !download.contains("secret_hash"));
}
