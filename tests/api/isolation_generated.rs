//! A generated isolation suite. Nothing here lists the API by hand: the live schema is
//! introspected, every root field (Query, Mutation, Subscription) that takes an identifier —
//! an argument of type `ID`, or named `tenantId`, `id`, `slug`, or ending in `Id`/`Slug`,
//! also inside input objects — is enumerated, and a valid operation is built for it from
//! the introspected types. Tenant A's admin and member then call every one of them with
//! tenant B's identifiers (B's tenant id, every id of B's rows in the tenant-owned tables,
//! B's slug), over HTTP and over the WebSocket. The answers must hold none of B's data and
//! be a contract refusal (or null); B's rows must be byte-for-byte the same afterwards, and
//! the audit log must say nothing new about B. A new id-taking field is covered the moment
//! it appears in the schema; one the generator cannot call fails the suite by name.

use crate::common;

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use crate::common::{fill_every_table, ws, TestApp, TestTenant};
use diesel_async::AsyncPgConnection;
use futures_util::StreamExt;
use serde_json::{json, Value};
use uuid::Uuid;

/// Root fields (`Type.field`) with a known, reported isolation gap: their offences are
/// printed but do not fail the suite. Every entry must name a product bug that was reported.
const KNOWN_LEAKS: &[&str] = &[];

/// The refusals the contract allows when a tenant user names another tenant's data.
const ALLOWED_CODES: &[&str] = &[
    "NOT_FOUND",
    "FORBIDDEN",
    "BAD_USER_INPUT",
    "FEATURE_NOT_IN_PLAN",
    "FEATURE_DISABLED",
    "UNAUTHENTICATED",
];

/// Fewer covered fields than this means the enumeration broke, not that the API shrank.
const MIN_COVERED_FIELDS: usize = 15;

/// How deep the generated selection sets go (1 = the root field's scalars only).
const SELECTION_DEPTH: usize = 2;

const HTTP_PARALLELISM: usize = 12;
const SOCKETS_PER_TOKEN: usize = 4;

const INTROSPECTION: &str = r#"
query IntrospectionQuery {
  __schema {
    queryType { name }
    mutationType { name }
    subscriptionType { name }
    types {
      kind name
      fields(includeDeprecated: true) {
        name
        args { name defaultValue type { ...TypeRef } }
        type { ...TypeRef }
      }
      inputFields { name defaultValue type { ...TypeRef } }
      enumValues(includeDeprecated: true) { name }
    }
  }
}
fragment TypeRef on __Type {
  kind name
  ofType { kind name ofType { kind name ofType { kind name ofType { kind name } } } }
}
"#;

// ---------------------------------------------------------------------------------------
// The introspected schema

#[derive(Clone, Debug)]
enum TypeRef {
    NonNull(Box<TypeRef>),
    List(Box<TypeRef>),
    Named(String),
}

impl TypeRef {
    fn parse(v: &Value) -> TypeRef {
        match v["kind"].as_str() {
            Some("NON_NULL") => TypeRef::NonNull(Box::new(TypeRef::parse(&v["ofType"]))),
            Some("LIST") => TypeRef::List(Box::new(TypeRef::parse(&v["ofType"]))),
            _ => TypeRef::Named(v["name"].as_str().expect("named type").to_string()),
        }
    }

    fn base(&self) -> &str {
        match self {
            TypeRef::NonNull(t) | TypeRef::List(t) => t.base(),
            TypeRef::Named(n) => n,
        }
    }
}

#[derive(Debug)]
struct InputValue {
    name: String,
    ty: TypeRef,
    has_default: bool,
}

impl InputValue {
    fn parse(v: &Value) -> InputValue {
        InputValue {
            name: v["name"].as_str().unwrap().to_string(),
            ty: TypeRef::parse(&v["type"]),
            has_default: !v["defaultValue"].is_null(),
        }
    }

    fn required(&self) -> bool {
        matches!(self.ty, TypeRef::NonNull(_)) && !self.has_default
    }
}

#[derive(Debug)]
struct FieldDef {
    name: String,
    args: Vec<InputValue>,
    ty: TypeRef,
}

#[derive(Debug)]
struct TypeDef {
    kind: String,
    fields: Vec<FieldDef>,
    input_fields: Vec<InputValue>,
    enum_values: Vec<String>,
}

struct Schema {
    types: HashMap<String, TypeDef>,
    /// (operation keyword, root type name)
    roots: Vec<(&'static str, String)>,
}

impl Schema {
    fn parse(data: &Value) -> Schema {
        let s = &data["__schema"];
        let mut types = HashMap::new();
        for t in s["types"].as_array().expect("types") {
            let list = |key: &str| t[key].as_array().cloned().unwrap_or_default();
            types.insert(
                t["name"].as_str().unwrap().to_string(),
                TypeDef {
                    kind: t["kind"].as_str().unwrap().to_string(),
                    fields: list("fields")
                        .iter()
                        .map(|f| FieldDef {
                            name: f["name"].as_str().unwrap().to_string(),
                            args: f["args"]
                                .as_array()
                                .unwrap()
                                .iter()
                                .map(InputValue::parse)
                                .collect(),
                            ty: TypeRef::parse(&f["type"]),
                        })
                        .collect(),
                    input_fields: list("inputFields").iter().map(InputValue::parse).collect(),
                    enum_values: list("enumValues")
                        .iter()
                        .map(|e| e["name"].as_str().unwrap().to_string())
                        .collect(),
                },
            );
        }
        let mut roots = Vec::new();
        for (kw, key) in [
            ("query", "queryType"),
            ("mutation", "mutationType"),
            ("subscription", "subscriptionType"),
        ] {
            if let Some(name) = s[key]["name"].as_str() {
                roots.push((kw, name.to_string()));
            }
        }
        Schema { types, roots }
    }

    fn kind(&self, name: &str) -> &str {
        self.types.get(name).map(|t| t.kind.as_str()).unwrap_or("")
    }
}

/// What kind of B identifier an id-like argument gets.
#[derive(Clone, Copy, Debug, PartialEq)]
enum IdKind {
    Id,
    Slug,
}

fn id_kind(name: &str, base: &str) -> Option<IdKind> {
    let slug = name == "slug" || name.ends_with("Slug");
    let id = base == "ID" || name == "tenantId" || name == "id" || name.ends_with("Id");
    match (slug, id) {
        (true, _) => Some(IdKind::Slug),
        (false, true) => Some(IdKind::Id),
        _ => None,
    }
}

/// Arguments that choose whose data is meant (as opposed to free-text filters that happen
/// to end in `Id`): each of these is also probed on its own.
fn selects_scope(name: &str, base: &str) -> bool {
    base == "ID" || matches!(name, "tenantId" | "id" | "slug")
}

/// Every id-like argument path of `args` (`filter.tenantId`), recursing into input objects.
fn id_paths(schema: &Schema, args: &[InputValue], prefix: &str, depth: usize) -> Vec<IdPath> {
    let mut out = Vec::new();
    for a in args {
        let path = join(prefix, &a.name);
        let base = a.ty.base();
        if id_kind(&a.name, base).is_some() {
            out.push(IdPath {
                path,
                scope: selects_scope(&a.name, base),
            });
        } else if schema.kind(base) == "INPUT_OBJECT" && depth < 5 {
            out.extend(id_paths(
                schema,
                &schema.types[base].input_fields,
                &path,
                depth + 1,
            ));
        }
    }
    out
}

#[derive(Clone, Debug)]
struct IdPath {
    path: String,
    scope: bool,
}

fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}.{name}")
    }
}

// ---------------------------------------------------------------------------------------
// The operation generator

/// Builds argument literals: id-like arguments get B's identifiers, others plausible values.
struct Builder<'a> {
    schema: &'a Schema,
    /// Optional id-like argument paths to send (required arguments are always sent).
    active: &'a [String],
    id_value: &'a str,
    slug: &'a str,
    now: &'a str,
}

impl Builder<'_> {
    fn args(&self, args: &[InputValue], prefix: &str) -> Result<String, String> {
        let mut parts = Vec::new();
        for a in args {
            let path = join(prefix, &a.name);
            let wanted = self
                .active
                .iter()
                .any(|p| *p == path || p.starts_with(&format!("{path}.")));
            if !(a.required() || wanted) {
                continue;
            }
            parts.push(format!(
                "{}: {}",
                a.name,
                self.value(&a.ty, &a.name, &path)?
            ));
        }
        Ok(parts.join(", "))
    }

    fn value(&self, ty: &TypeRef, name: &str, path: &str) -> Result<String, String> {
        let n = match ty {
            TypeRef::NonNull(t) => return self.value(t, name, path),
            TypeRef::List(t) => return Ok(format!("[{}]", self.value(t, name, path)?)),
            TypeRef::Named(n) => n.as_str(),
        };
        let quote = |s: &str| serde_json::to_string(s).unwrap();
        match id_kind(name, n) {
            Some(IdKind::Id) => return Ok(quote(self.id_value)),
            Some(IdKind::Slug) => return Ok(quote(self.slug)),
            None => {}
        }
        let t = self
            .schema
            .types
            .get(n)
            .ok_or_else(|| format!("{path}: unknown type {n}"))?;
        match t.kind.as_str() {
            "SCALAR" => match n {
                "String" => Ok(quote(plausible_string(name))),
                "Int" | "BigInt" => Ok("1".into()),
                "Float" => Ok("1.0".into()),
                "Boolean" => Ok("true".into()),
                "DateTime" => Ok(quote(self.now)),
                "JSON" => Ok("{}".into()),
                other => Err(format!("{path}: no value for scalar {other}")),
            },
            "ENUM" => t
                .enum_values
                .first()
                .cloned()
                .ok_or_else(|| format!("{path}: enum {n} has no values")),
            "INPUT_OBJECT" => Ok(format!("{{ {} }}", self.args(&t.input_fields, path)?)),
            other => Err(format!(
                "{path}: cannot build a value of kind {other} ({n})"
            )),
        }
    }
}

/// A plausible string by argument name; the type's default otherwise.
fn plausible_string(name: &str) -> &'static str {
    match name {
        "resource" => "api_calls",
        "category" => "integrations",
        // B has an entry under this key (see the fixtures): deleting or resetting it would show.
        "key" => "isolation_marker",
        "region" => "US",
        "currency" => "usd",
        n if n.ends_with("Url") => "https://example.com/isolation-probe",
        _ => "isolation-probe",
    }
}

/// `{ __typename scalar... object { ... } }` for object types, nothing for leaves.
fn selection(schema: &Schema, ty: &TypeRef, depth: usize) -> String {
    let base = ty.base();
    let Some(t) = schema.types.get(base) else {
        return String::new();
    };
    match t.kind.as_str() {
        "OBJECT" | "INTERFACE" => {
            let mut parts = vec!["__typename".to_string()];
            for f in &t.fields {
                if f.args.iter().any(InputValue::required) {
                    continue;
                }
                match schema.kind(f.ty.base()) {
                    "SCALAR" | "ENUM" => parts.push(f.name.clone()),
                    "OBJECT" | "INTERFACE" | "UNION" if depth > 1 => parts.push(format!(
                        "{} {}",
                        f.name,
                        selection(schema, &f.ty, depth - 1)
                    )),
                    _ => {}
                }
            }
            format!("{{ {} }}", parts.join(" "))
        }
        "UNION" => "{ __typename }".to_string(),
        _ => String::new(),
    }
}

#[derive(Clone, Debug)]
struct Call {
    /// `Mutation.setConfig`
    field: String,
    name: String,
    keyword: &'static str,
    query: String,
}

/// Every call of every id-taking root field, or the fields the generator could not call.
fn generate(
    schema: &Schema,
    candidates: &[String],
    slug: &str,
    now: &str,
) -> (Vec<Call>, BTreeSet<String>, Vec<String>) {
    let mut calls = Vec::new();
    let mut fields = BTreeSet::new();
    let mut failures = Vec::new();
    for (keyword, root) in &schema.roots {
        let Some(root_type) = schema.types.get(root) else {
            failures.push(format!("root type {root} missing from introspection"));
            continue;
        };
        for f in &root_type.fields {
            let paths = id_paths(schema, &f.args, "", 0);
            if paths.is_empty() {
                continue;
            }
            let label = format!("{root}.{}", f.name);
            fields.insert(label.clone());
            // Variants: every id-like argument at once; then each scope-selecting one alone.
            let all: Vec<String> = paths.iter().map(|p| p.path.clone()).collect();
            let mut variants = vec![all];
            if paths.len() > 1 {
                for p in paths.iter().filter(|p| p.scope) {
                    variants.push(vec![p.path.clone()]);
                }
            }
            let sel = selection(schema, &f.ty, SELECTION_DEPTH);
            let mut seen = BTreeSet::new();
            for active in &variants {
                for id_value in candidates {
                    let b = Builder {
                        schema,
                        active,
                        id_value,
                        slug,
                        now,
                    };
                    match b.args(&f.args, "") {
                        Ok(args) => {
                            let args = if args.is_empty() {
                                String::new()
                            } else {
                                format!("({args})")
                            };
                            let query = format!("{keyword} Probe {{ {}{args} {sel} }}", f.name);
                            if seen.insert(query.clone()) {
                                calls.push(Call {
                                    field: label.clone(),
                                    name: f.name.clone(),
                                    keyword,
                                    query,
                                });
                            }
                        }
                        Err(e) => {
                            failures.push(format!("{label}: {e}"));
                            break;
                        }
                    }
                }
            }
        }
    }
    failures.sort();
    failures.dedup();
    (calls, fields, failures)
}

// ---------------------------------------------------------------------------------------
// Judging an answer

/// `Ok` when the answer holds none of B's secrets and is a contract refusal or null. An
/// error message may quote the caller's own input back (`unknown plan "<slug>"`): that
/// reveals nothing, so identifiers the query itself sent are blanked in messages, and only
/// there (data and extensions are checked as they are).
fn judge(answer: &Value, call: &Call, secrets: &[String]) -> Result<(), String> {
    let field = call.name.as_str();
    let mut answer = answer.clone();
    if let Some(errors) = answer["errors"].as_array_mut() {
        for e in errors {
            if let Some(message) = e["message"].as_str() {
                let mut m = message.to_string();
                for s in secrets.iter().filter(|s| call.query.contains(s.as_str())) {
                    m = m.replace(s.as_str(), "<input>");
                }
                e["message"] = Value::String(m);
            }
        }
    }
    let text = answer.to_string();
    let leaked: Vec<&str> = secrets
        .iter()
        .filter(|s| text.contains(s.as_str()))
        .map(String::as_str)
        .collect();
    if !leaked.is_empty() {
        return Err(format!("B's data in the answer: {leaked:?}"));
    }
    if answer.get("transport").is_some() {
        return Err("no GraphQL answer".into());
    }
    let null = answer["data"].is_null() || answer["data"][field].is_null();
    if !null {
        return Err("answered with data instead of a refusal".into());
    }
    if let Some(errors) = answer["errors"].as_array() {
        for e in errors {
            let code = e["extensions"]["code"].as_str().unwrap_or("<none>");
            if !ALLOWED_CODES.contains(&code) {
                return Err(format!("error code {code} is not a contract refusal"));
            }
        }
    }
    Ok(())
}

/// What a call answered, for the summary: its error codes, or `null`/`data`.
fn record_outcome(outcomes: &mut HashMap<String, BTreeSet<String>>, call: &Call, answer: &Value) {
    let seen = outcomes.entry(call.field.clone()).or_default();
    match answer["errors"].as_array() {
        Some(errors) if !errors.is_empty() => {
            for e in errors {
                let code = e["extensions"]["code"].as_str().unwrap_or("<no code>");
                seen.insert(code.to_string());
            }
        }
        _ if answer.get("transport").is_some() => {
            seen.insert("no answer".into());
        }
        _ if answer["data"].is_null() || answer["data"][call.name.as_str()].is_null() => {
            seen.insert("null".into());
        }
        _ => {
            seen.insert("data".into());
        }
    }
}

struct Offence {
    field: String,
    who: &'static str,
    transport: &'static str,
    query: String,
    answer: Value,
    why: String,
}

// ---------------------------------------------------------------------------------------
// SQL helpers (superuser connection: fixtures and assertions only)

#[derive(diesel::QueryableByName)]
struct Text {
    #[diesel(sql_type = diesel::sql_types::Text)]
    v: String,
}

async fn texts(conn: &mut AsyncPgConnection, sql: &str) -> Vec<String> {
    use diesel_async::RunQueryDsl;
    diesel::sql_query(sql)
        .load::<Text>(conn)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .into_iter()
        .map(|t| t.v)
        .collect()
}

/// Tables (public, base tables) having all of the given columns, from the catalogue.
async fn tables_with(conn: &mut AsyncPgConnection, columns: &[&str]) -> Vec<String> {
    let list = columns
        .iter()
        .map(|c| format!("'{c}'"))
        .collect::<Vec<_>>()
        .join(",");
    texts(
        conn,
        &format!(
            "select c.table_name::text as v from information_schema.columns c
             join information_schema.tables t
               on t.table_schema = c.table_schema and t.table_name = c.table_name
             where c.table_schema = 'public' and t.table_type = 'BASE TABLE'
               and c.column_name in ({list})
             group by c.table_name having count(*) = {} order by 1",
            columns.len()
        ),
    )
    .await
}

/// Every id of B's rows (uuid or text ids; numeric identities are not identifiers a client
/// could hold and would match any number in an answer).
async fn row_ids(conn: &mut AsyncPgConnection, b: Uuid) -> Vec<String> {
    let mut ids = Vec::new();
    for table in tables_with(conn, &["id", "tenant_id"]).await {
        let ty = texts(
            conn,
            &format!(
                "select data_type::text as v from information_schema.columns
                 where table_schema = 'public' and table_name = '{table}' and column_name = 'id'"
            ),
        )
        .await;
        if !matches!(ty.first().map(String::as_str), Some("uuid" | "text")) {
            continue;
        }
        ids.extend(
            texts(
                conn,
                &format!("select id::text as v from {table} where tenant_id = '{b}' order by 1"),
            )
            .await,
        );
    }
    // Text identifiers a client holds besides row ids: the identity provider's `sub` of B's
    // members (`member(userId:)`, `removeMember`, `updateMemberRole`, ...).
    if !tables_with(conn, &["user_id", "tenant_id"])
        .await
        .is_empty()
    {
        ids.extend(
            texts(
                conn,
                &format!("select user_id as v from members where tenant_id = '{b}' and user_id is not null order by 1"),
            )
            .await,
        );
    }
    ids.sort();
    ids.dedup();
    ids
}

/// A digest of every row B owns, per table, plus B's `tenants` row.
async fn fingerprint(conn: &mut AsyncPgConnection, b: Uuid) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for table in tables_with(conn, &["tenant_id"]).await {
        let h = texts(
            conn,
            &format!(
                "select coalesce(md5(string_agg(t::text, ',' order by t::text)), 'none') as v
                 from {table} t where tenant_id = '{b}'"
            ),
        )
        .await;
        out.push((table, h[0].clone()));
    }
    let h = texts(
        conn,
        &format!("select coalesce(md5(t::text), 'none') as v from tenants t where id = '{b}'"),
    )
    .await;
    out.push(("tenants".into(), h[0].clone()));
    out
}

/// Audit entries about B: B's own, or naming B (its id, slug or a row id) anywhere.
async fn audit_about(conn: &mut AsyncPgConnection, b: &TestTenant, ids: &[String]) -> i64 {
    let mut names = vec![b.id.to_string(), b.slug.clone()];
    names.extend(ids.iter().cloned());
    let like = names
        .iter()
        .map(|n| {
            format!("(a.entity_id = '{n}' or a.changes::text like '%{n}%' or a.metadata::text like '%{n}%')")
        })
        .collect::<Vec<_>>()
        .join(" or ");
    common::count(
        conn,
        &format!(
            "select count(*) as n from audit_logs a where a.tenant_id = '{}' or {like}",
            b.id
        ),
    )
    .await
}

// ---------------------------------------------------------------------------------------
// WebSocket helpers

/// Runs one operation on `socket` and returns its answer (`{data, errors}`); a refused
/// operation (`error` message) is returned as `{errors}`, a dead socket as `{transport}`.
async fn ws_call(socket: &mut ws::Ws, id: &str, query: &str) -> Value {
    ws::send(
        socket,
        json!({ "id": id, "type": "subscribe", "payload": { "query": query, "variables": {} } }),
    )
    .await;
    let mut answer = json!({ "transport": "no answer" });
    loop {
        let Some(msg) = ws::next_json(socket).await else {
            return json!({ "transport": "timeout" });
        };
        if msg.get("closed").is_some() {
            return json!({ "transport": msg });
        }
        match msg["type"].as_str() {
            Some("ping") => ws::send(socket, json!({ "type": "pong" })).await,
            Some(_) if msg["id"] != id => {}
            Some("next") => answer = msg["payload"].clone(),
            Some("error") => return json!({ "errors": msg["payload"] }),
            Some("complete") => return answer,
            _ => {}
        }
    }
}

/// Subscribes and collects what arrives until `until`; then completes.
async fn ws_subscribe(app: &TestApp, token: &str, query: &str, until: Instant) -> Vec<Value> {
    let mut socket = ws::open(app, token).await;
    ws::send(
        &mut socket,
        json!({ "id": "s", "type": "subscribe", "payload": { "query": query, "variables": {} } }),
    )
    .await;
    let mut got = Vec::new();
    loop {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        match tokio::time::timeout(left, ws::next_json(&mut socket)).await {
            Err(_) | Ok(None) => continue,
            Ok(Some(msg)) => {
                if msg.get("closed").is_some() {
                    got.push(json!({ "transport": msg }));
                    return got;
                }
                match msg["type"].as_str() {
                    Some("ping") => ws::send(&mut socket, json!({ "type": "pong" })).await,
                    Some("next") => got.push(msg["payload"].clone()),
                    Some("error") => {
                        got.push(json!({ "errors": msg["payload"] }));
                        return got;
                    }
                    Some("complete") => return got,
                    _ => {}
                }
            }
        }
    }
    ws::send(&mut socket, json!({ "id": "s", "type": "complete" })).await;
    got
}

// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_id_taking_root_field_refuses_another_tenants_identifiers() {
    let started = Instant::now();
    let app = TestApp::spawn().await;
    let admin = app.admin_token();
    let tag = Uuid::new_v4().simple().to_string()[..10].to_string();

    // Tenant B, on the plan with every feature, with a row in every tenant-owned table and
    // data only B has, put there through the API too.
    let b_name = format!("Bravo Holdings {tag}");
    let b_domain = format!("bravo-{tag}.example.com");
    let b = app
        .tenant()
        .plan("enterprise")
        .name(&b_name)
        .domain(&b_domain)
        .create()
        .await;
    let mut conn = app.db.superuser().await;
    fill_every_table(&mut conn, b.id).await;
    let color = "#b7a1c3";
    let marker = format!("bravo-marker-{tag}");
    let secret = format!("bravo-secret-{tag}");
    let settings_marker = format!("bravo-settings-{tag}");
    let idem = format!("bravo-idem-{tag}");
    let setup = [
        (
            &b.admin,
            "mutation($v: JSON!) { setConfig(input: { category: \"branding\", key: \"primary_color\", value: $v }) { key } }",
            json!({ "v": color }),
        ),
        (
            &b.admin,
            "mutation($v: JSON!) { setConfig(input: { category: \"integrations\", key: \"isolation_marker\", value: $v }) { key } }",
            json!({ "v": marker }),
        ),
        (
            &b.admin,
            "mutation($v: JSON!) { setConfig(input: { category: \"security\", key: \"bravo_secret\", value: $v, encrypted: true }) { key } }",
            json!({ "v": secret }),
        ),
        (
            &b.admin,
            "mutation { setFeature(key: \"real_time_chat\", enabled: false) { key } }",
            json!({}),
        ),
        (
            &admin,
            "mutation($t: ID!, $at: DateTime!) { setFeature(tenantId: $t, key: \"audit_logs\", enabled: true, expiresAt: $at) { key } }",
            json!({ "t": b.id, "at": (chrono::Utc::now() + chrono::Duration::days(30)).to_rfc3339() }),
        ),
        (
            &admin,
            "mutation($t: ID!, $s: JSON!) { updateTenant(id: $t, input: { settings: $s }) { id } }",
            json!({ "t": b.id, "s": { "marker": settings_marker } }),
        ),
        (
            &b.admin,
            "mutation($k: String!) { recordUsage(resource: \"storage\", amount: 4242, idempotencyKey: $k) { used } }",
            json!({ "k": idem }),
        ),
    ];
    for (token, query, vars) in setup {
        app.gql(Some(token), query, vars).await.ok();
    }
    let a = app.tenant().plan("enterprise").create().await;

    let ids = row_ids(&mut conn, b.id).await;
    let mut secrets = vec![
        b.id.to_string(),
        b.slug.clone(),
        b_name.clone(),
        b_domain.clone(),
        color.to_string(),
        marker.clone(),
        secret.clone(),
        settings_marker.clone(),
        idem.clone(),
        format!("in_{}", b.id),
        format!("evt_{}", b.id),
    ];
    secrets.extend(ids.iter().filter(|i| i.len() >= 8).cloned());
    secrets.sort();
    secrets.dedup();
    let mut candidates = vec![b.id.to_string()];
    candidates.extend(ids.iter().filter(|i| i.len() >= 8).cloned());
    candidates.dedup();

    // The live schema, as a platform admin sees it.
    let resp = app.gql(Some(&admin), INTROSPECTION, json!({})).await;
    let schema = Schema::parse(resp.ok());
    assert!(
        schema.roots.iter().any(|(kw, _)| *kw == "mutation"),
        "no mutation root"
    );
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let (calls, fields, failures) = generate(&schema, &candidates, &b.slug, &now);
    assert!(
        failures.is_empty(),
        "the generator cannot call these id-taking fields (teach it, never skip them):\n{}",
        failures.join("\n")
    );
    let (subs, ops): (Vec<Call>, Vec<Call>) =
        calls.into_iter().partition(|c| c.keyword == "subscription");

    let before = fingerprint(&mut conn, b.id).await;
    let audit_before = audit_about(&mut conn, &b, &ids).await;

    let callers: [(&'static str, &str); 2] = [("A admin", &a.admin), ("A member", &a.member)];
    let mut offences: Vec<Offence> = Vec::new();

    // Over HTTP.
    let jobs: Vec<(&'static str, &str, &Call)> = callers
        .iter()
        .flat_map(|(who, token)| ops.iter().map(move |c| (*who, *token, c)))
        .collect();
    let http_calls = jobs.len();
    let answers: Vec<_> = futures_util::stream::iter(jobs)
        .map(|(who, token, call)| {
            let app = &app;
            async move {
                let resp = app.gql(Some(token), &call.query, json!({})).await;
                let mut body = resp.body;
                if resp.status >= 500 || !body.is_object() {
                    body = json!({ "transport": format!("HTTP {}", resp.status), "body": body });
                }
                (who, call, body)
            }
        })
        .buffer_unordered(HTTP_PARALLELISM)
        .collect()
        .await;
    let mut outcomes: HashMap<String, BTreeSet<String>> = HashMap::new();
    for (who, call, body) in answers {
        record_outcome(&mut outcomes, call, &body);
        if let Err(why) = judge(&body, call, &secrets) {
            offences.push(Offence {
                field: call.field.clone(),
                who,
                transport: "HTTP",
                query: call.query.clone(),
                answer: body,
                why,
            });
        }
    }

    // Over the WebSocket: a few sockets per caller, each running its share in turn.
    let mut lanes = Vec::new();
    for (who, token) in callers {
        for lane in 0..SOCKETS_PER_TOKEN {
            let share: Vec<&Call> = ops.iter().skip(lane).step_by(SOCKETS_PER_TOKEN).collect();
            let app = &app;
            lanes.push(async move {
                let mut socket = ws::open(app, token).await;
                let mut out = Vec::new();
                for (i, call) in share.into_iter().enumerate() {
                    let answer = ws_call(&mut socket, &format!("op{i}"), &call.query).await;
                    if answer.get("transport").is_some() {
                        socket = ws::open(app, token).await;
                    }
                    out.push((who, call, answer));
                }
                out
            });
        }
    }
    let ws_answers: Vec<_> = futures_util::future::join_all(lanes)
        .await
        .into_iter()
        .flatten()
        .collect();
    let ws_calls = ws_answers.len();
    for (who, call, answer) in ws_answers {
        record_outcome(&mut outcomes, call, &answer);
        if let Err(why) = judge(&answer, call, &secrets) {
            offences.push(Offence {
                field: call.field.clone(),
                who,
                transport: "WebSocket",
                query: call.query.clone(),
                answer,
                why,
            });
        }
    }

    // No write: B's rows are the same, and nothing new in the audit log is about B.
    let after = fingerprint(&mut conn, b.id).await;
    let changed: Vec<&str> = before
        .iter()
        .zip(&after)
        .filter(|(x, y)| x != y)
        .map(|(x, _)| x.0.as_str())
        .collect();
    let audit_after = audit_about(&mut conn, &b, &ids).await;

    // Subscriptions: A subscribes with B's identifiers while B crosses quota thresholds; B's
    // own subscriber proves an alert was pushed, A's must get a refusal or nothing.
    let until = Instant::now() + Duration::from_secs(4);
    let b_sub = format!(
        "subscription {{ quotaAlerts {} }}",
        schema
            .types
            .get(
                &schema
                    .roots
                    .iter()
                    .find(|r| r.0 == "subscription")
                    .map(|r| r.1.clone())
                    .unwrap_or_default()
            )
            .and_then(|t| t.fields.iter().find(|f| f.name == "quotaAlerts"))
            .map(|f| selection(&schema, &f.ty, 1))
            .unwrap_or_else(|| "{ __typename }".into())
    );
    let sub_jobs: Vec<_> = callers
        .iter()
        .flat_map(|(who, token)| subs.iter().map(move |c| (*who, *token, c)))
        .collect();
    let sub_calls = sub_jobs.len();
    let trigger = async {
        tokio::time::sleep(Duration::from_millis(1200)).await;
        app.gql(
            Some(&b.admin),
            "mutation { recordUsage(resource: \"api_calls\", amount: 960000) { used } }",
            json!({}),
        )
        .await
        .ok();
    };
    let has_quota_alerts = schema.roots.iter().any(|(kw, root)| {
        *kw == "subscription"
            && schema.types[root]
                .fields
                .iter()
                .any(|f| f.name == "quotaAlerts")
    });
    let (sub_answers, control, ()) = tokio::join!(
        futures_util::future::join_all(sub_jobs.into_iter().map(|(who, token, call)| {
            let app = &app;
            async move {
                (
                    who,
                    call,
                    ws_subscribe(app, token, &call.query, until).await,
                )
            }
        })),
        async {
            if has_quota_alerts {
                ws_subscribe(&app, &b.admin, &b_sub, until).await
            } else {
                Vec::new()
            }
        },
        trigger,
    );
    if has_quota_alerts {
        assert!(
            control.iter().any(|m| !m["data"].is_null()),
            "control: B's own subscriber got no alert, so silence from A's proves nothing: {control:?}"
        );
    }
    for (who, call, got) in sub_answers {
        if got.is_empty() {
            outcomes
                .entry(call.field.clone())
                .or_default()
                .insert("no event".into());
        }
        for answer in got {
            record_outcome(&mut outcomes, call, &answer);
            if let Err(why) = judge(&answer, call, &secrets) {
                offences.push(Offence {
                    field: call.field.clone(),
                    who,
                    transport: "WebSocket subscription",
                    query: call.query.clone(),
                    answer,
                    why,
                });
            }
        }
    }

    // Report.
    let (known, offences): (Vec<Offence>, Vec<Offence>) = offences
        .into_iter()
        .partition(|o| KNOWN_LEAKS.contains(&o.field.as_str()));
    for o in &known {
        eprintln!(
            "KNOWN LEAK {} ({}, {}): {}\n  {}\n  {}",
            o.field, o.who, o.transport, o.why, o.query, o.answer
        );
    }
    let elapsed = started.elapsed();
    eprintln!(
        "generated isolation: {} id-taking root fields, {} calls ({} HTTP, {} WebSocket, {} subscriptions) with {} of B's identifiers, {} offences ({} known), {:.1}s",
        fields.len(),
        http_calls + ws_calls + sub_calls,
        http_calls,
        ws_calls,
        sub_calls,
        candidates.len(),
        offences.len(),
        known.len(),
        elapsed.as_secs_f64()
    );
    for field in &fields {
        let seen = outcomes.get(field).cloned().unwrap_or_default();
        eprintln!(
            "  {field}: {}",
            seen.into_iter().collect::<Vec<_>>().join(", ")
        );
    }

    eprintln!(
        "no write: {} tables fingerprinted, changed: {changed:?}; audit entries about B: {audit_before} before, {audit_after} after",
        before.len()
    );

    let offending: BTreeSet<&str> = offences.iter().map(|o| o.field.as_str()).collect();
    let detail = offences
        .iter()
        .map(|o| {
            let mut answer = o.answer.to_string();
            answer.truncate(800);
            format!(
                "- {} as {} over {}: {}\n    query:  {}\n    answer: {}",
                o.field, o.who, o.transport, o.why, o.query, answer
            )
        })
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        offences.is_empty(),
        "{} calls reached or revealed tenant B; offending fields: {:?}\n{}",
        offences.len(),
        offending,
        detail
    );
    assert!(
        changed.is_empty(),
        "B's data changed during the run, in: {changed:?}"
    );
    assert_eq!(
        audit_before, audit_after,
        "audit entries about B were written during the run"
    );
    assert!(
        fields.len() >= MIN_COVERED_FIELDS,
        "only {} id-taking root fields found ({:?}): the enumeration is broken",
        fields.len(),
        fields
    );
}
