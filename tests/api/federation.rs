//! Federation v2 subgraph (SPEC §13): `_service { sdl }` is the checked-in
//! `schema.subgraph.graphql`, a real composition tool composes it with another subgraph, and
//! `_entities` resolves `Tenant` and `Plan` references under the caller's scope.

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::{json, Value};

use crate::common::TestApp;

/// Composes `sdl` with a second subgraph (tests/node/compose.mjs, @theguild/federation-composition).
fn compose(sdl: &str) -> Value {
    let mut child = Command::new("node")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/node/compose.mjs"
        ))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("node is installed (scripts/test.sh installs tests/node)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(sdl.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_subgraph_composes_into_a_supergraph() {
    let app = TestApp::spawn().await;
    let resp = app.gql(None, "{ _service { sdl } }", json!({})).await;
    let sdl = resp.ok()["_service"]["sdl"].as_str().unwrap().to_owned();
    let checked_in = include_str!("../../schema.subgraph.graphql");
    assert!(
        sdl == checked_in,
        "`_service {{ sdl }}` differs from schema.subgraph.graphql"
    );
    assert!(sdl.contains("type Tenant @key(fields: \"id\")"), "{sdl}");
    assert!(sdl.contains("type Plan @key(fields: \"slug\")"), "{sdl}");
    assert!(
        sdl.contains("https://specs.apollo.dev/federation/v2"),
        "{sdl}"
    );

    let composed = compose(&sdl);
    assert!(
        composed["errors"].is_null(),
        "composition failed: {composed}"
    );
    let supergraph = composed["supergraphSdl"].as_str().unwrap();
    for part in [
        "@join__type(graph: TENANTRY, key: \"id\")",
        "@join__type(graph: ACCOUNTS, key: \"id\")",
        "@join__type(graph: TENANTRY, key: \"slug\")",
        "accountManager: String @join__field(graph: ACCOUNTS)",
    ] {
        assert!(supergraph.contains(part), "supergraph lacks `{part}`");
    }

    // A composition tool refuses what is not a valid subgraph: the check can fail.
    let broken = sdl.replacen(
        "type Tenant @key(fields: \"id\")",
        "type Tenant @key(fields: \"nope\")",
        1,
    );
    assert!(!compose(&broken)["errors"].is_null());
}

const ENTITIES: &str = "query($r: [_Any!]!) { _entities(representations: $r) { \
    __typename ... on Tenant { id slug plan { slug } } ... on Plan { slug name } } }";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entities_resolve_under_the_callers_scope() {
    let app = TestApp::spawn().await;
    let own = app.tenant().plan("starter").create().await;
    let other = app.tenant().plan("free").create().await;
    let reps = json!({ "r": [
        { "__typename": "Tenant", "id": own.id },
        { "__typename": "Tenant", "id": other.id },
        { "__typename": "Plan", "slug": "free" },
        { "__typename": "Tenant", "id": "not-a-uuid" },
        { "__typename": "Plan", "slug": "no-such-plan" },
    ] });

    // A tenant user: its own tenant; another tenant's reference is null, not data or an error.
    let resp = app.gql(Some(&own.member), ENTITIES, reps.clone()).await;
    let got = &resp.ok()["_entities"];
    assert_eq!(got[0]["id"], json!(own.id.to_string()), "{got}");
    assert_eq!(got[0]["plan"]["slug"], "starter", "{got}");
    assert!(got[1].is_null(), "another tenant leaked: {got}");
    assert_eq!(got[2]["slug"], "free", "{got}");
    assert!(got[3].is_null() && got[4].is_null(), "{got}");
    assert!(
        !resp.body.to_string().contains(&other.slug),
        "{}",
        resp.body
    );

    // A platform admin sees both; an anonymous caller sees the public catalogue only.
    let resp = app
        .gql(Some(&app.admin_token()), ENTITIES, reps.clone())
        .await;
    let got = &resp.ok()["_entities"];
    assert_eq!(got[1]["slug"], json!(other.slug), "{got}");
    let resp = app.gql(None, ENTITIES, reps).await;
    let got = &resp.ok()["_entities"];
    assert!(got[0].is_null() && got[1].is_null(), "{got}");
    assert_eq!(got[2]["name"], "Free", "{got}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entities_cost_per_reference_and_are_capped() {
    let app = TestApp::spawn().await;
    let t = app.tenant().plan("free").create().await;
    let reps = |n: usize| json!({ "r": vec![json!({ "__typename": "Plan", "slug": "free" }); n] });
    let one = app.gql(Some(&t.member), ENTITIES, reps(1)).await;
    let three = app.gql(Some(&t.member), ENTITIES, reps(3)).await;
    assert_eq!(three.ok()["_entities"].as_array().unwrap().len(), 3);
    let cost = |r: &crate::common::Gql| r.body["extensions"]["cost"]["requestedQueryCost"].as_u64();
    assert_eq!(cost(&three), cost(&one).map(|c| c * 3), "{}", three.body);

    let resp = app.gql(None, ENTITIES, reps(101)).await;
    let err = resp.err("BAD_USER_INPUT");
    assert!(
        err["message"].as_str().unwrap().contains("at most 100"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_subgraph_sdl_is_off_with_introspection() {
    let app = TestApp::spawn_with(|env| {
        env.insert("GRAPHQL_INTROSPECTION".into(), "false".into());
    })
    .await;
    let resp = app.gql(None, "{ _service { sdl } }", json!({})).await;
    resp.err("FORBIDDEN");
    assert!(resp.body["data"].is_null(), "{}", resp.body);
    // Entities still resolve: they are data, not the schema.
    let reps = json!({ "r": [{ "__typename": "Plan", "slug": "free" }] });
    let resp = app.gql(None, ENTITIES, reps).await;
    assert_eq!(resp.ok()["_entities"][0]["slug"], "free");
}
