//! Tenant data export (GDPR): one JSON document with every row the tenant owns. The tables
//! come from the database catalogue (every table with a `tenant_id` column), so a table added
//! later is exported without touching this code. Encrypted configuration values are decrypted
//! for platform admins and masked for the tenant's own admins.
//!
//! Tenant admins get what their plan lets them see: the audit log only with the `audit_logs`
//! feature, usage history (`usage_hourly`, `usage_records`) only with `advanced_analytics`;
//! left-out tables are named under `omitted`. Platform admins exporting for a GDPR request get
//! every table. Memory is bounded: the document is built table by table, and a table with more
//! than `EXPORT_MAX_ROWS` rows of the tenant refuses the export (`BAD_USER_INPUT`) before any
//! of its rows are read; `tables` narrows an export to some tables.
//!
//! [`download`] is the same document without the cap, for `GET /exports/tenants/{id}`: the
//! gates and per-table rules are shared, the rows are read through a cursor, `PAGE_ROWS` at a
//! time, in one `REPEATABLE READ, READ ONLY` transaction (one consistent snapshot), and each
//! page is handed to the response body as soon as it is read: memory is bounded by a page,
//! not by the tenant.

use std::sync::Arc;

use axum::body::Bytes;
use diesel::sql_types::{Text, Uuid as SqlUuid};
use diesel_async::{RunQueryDsl, SimpleAsyncConnection};
use scoped_futures::ScopedFutureExt;
use serde_json::{json, Map, Value};

use crate::app::App;
use crate::audit;
use crate::auth::{Actor, Role};
use crate::configs::crypto;
use crate::configs::model::MASK;
use crate::db::{Conn, Scope};
use crate::error::{AppError, AppResult};
use crate::ids::TenantId;
use crate::tenants::service::target_scope;

#[derive(diesel::QueryableByName)]
struct TableName {
    #[diesel(sql_type = Text)]
    name: String,
}

#[derive(diesel::QueryableByName)]
struct Rows {
    #[diesel(sql_type = diesel::sql_types::Jsonb)]
    rows: Value,
}

/// Every table that holds tenant data, from the catalogue.
pub async fn tenant_tables(c: &mut Conn) -> diesel::QueryResult<Vec<String>> {
    let rows: Vec<TableName> = diesel::sql_query(
        "select c.relname::text as name from pg_class c join pg_namespace n on n.oid = c.relnamespace
          where n.nspname = 'public' and c.relkind = 'r'
            and exists (select 1 from pg_attribute a where a.attrelid = c.oid and a.attname = 'tenant_id' and not a.attisdropped)
          order by 1",
    )
    .load(c)
    .await?;
    Ok(rows.into_iter().map(|r| r.name).collect())
}

fn reveal_configs(rows: &mut Value, tenant_id: TenantId, key: Option<&[u8; 32]>, reveal: bool) {
    let Some(list) = rows.as_array_mut() else {
        return;
    };
    for row in list {
        let Some(obj) = row.as_object_mut() else {
            continue;
        };
        let Some(stored) = obj.remove("encrypted_value") else {
            continue;
        };
        if stored.is_null() {
            continue;
        }
        let plain = if reveal {
            let bytes = stored.as_str().and_then(decode_bytea);
            let (cat, k) = (
                obj["category"].as_str().unwrap_or(""),
                obj["key"].as_str().unwrap_or(""),
            );
            key.zip(bytes)
                .and_then(|(key, b)| crypto::decrypt(key, tenant_id, cat, k, &b))
                .and_then(|p| serde_json::from_slice(&p).ok())
        } else {
            None
        };
        obj.insert("value".into(), plain.unwrap_or_else(|| json!(MASK)));
    }
}

/// `bytea` as `row_to_json` writes it: `\x` + hex.
fn decode_bytea(s: &str) -> Option<Vec<u8>> {
    let hex = s.strip_prefix("\\x")?;
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Columns never exported: hashes of secrets (invitation tokens, API keys). A hash of a
/// high-entropy secret reveals nothing, but an export is a file that travels: it carries no
/// material to match a token against.
const HIDDEN: &str =
    "array['token_hash', 'secret_hash', 'secret_sealed', 'previous_secret_sealed']";

/// Tables behind a feature: exported to tenant admins only while the feature is enabled.
const GATED: [(&str, &str); 3] = [
    ("audit_logs", "audit_logs"),
    ("usage_hourly", "advanced_analytics"),
    ("usage_records", "advanced_analytics"),
];

/// Rows per cursor fetch of a streamed export.
pub const PAGE_ROWS: usize = 1000;

#[derive(diesel::QueryableByName)]
struct Count {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

#[derive(diesel::QueryableByName)]
struct Row {
    #[diesel(sql_type = diesel::sql_types::Jsonb)]
    row: Value,
}

/// What an export may hold, decided before anything is read.
struct Grant {
    scope: Scope,
    /// Gated tables this caller may not have, with the feature that gates each.
    withheld: Vec<(&'static str, &'static str)>,
    /// Encrypted configuration values decrypted (platform admins) or masked.
    reveal: bool,
}

/// Platform admins export any tenant; tenant admins their own (members may not), without the
/// tables whose feature is off.
async fn authorize(app: &App, actor: &Actor, tenant_id: TenantId) -> AppResult<Grant> {
    actor.require(Role::TenantAdmin)?;
    let scope = target_scope(actor, tenant_id, "tenant_export")?;
    let mut withheld: Vec<(&'static str, &'static str)> = Vec::new();
    if !actor.is_platform() {
        let tenant = crate::tenants::service::get(&app.db, actor, tenant_id).await?;
        let flags =
            crate::features::service::effective(app, &app.db, scope, tenant_id, tenant.plan_id)
                .await?;
        let enabled = |k: &str| flags.iter().any(|f| f.key == k && f.enabled);
        withheld = GATED.into_iter().filter(|(_, f)| !enabled(f)).collect();
    }
    Ok(Grant {
        scope,
        withheld,
        reveal: actor.is_platform(),
    })
}

/// The tenant's own row (a deleted tenant is exported to platform admins only).
async fn tenant_row(c: &mut Conn, actor: &Actor, tenant_id: TenantId) -> AppResult<Value> {
    let tenant: Option<Rows> =
        diesel::sql_query("select to_jsonb(t) as rows from tenants t where id = $1")
            .bind::<SqlUuid, _>(tenant_id)
            .get_result(c)
            .await
            .map(Some)
            .or_else(|e| {
                if e == diesel::result::Error::NotFound {
                    Ok(None)
                } else {
                    Err(e)
                }
            })?;
    let tenant = tenant.ok_or_else(|| AppError::not_found("tenant"))?.rows;
    if !actor.is_platform() && tenant["status"] == "DELETED" {
        return Err(AppError::not_found("tenant"));
    }
    Ok(tenant)
}

/// The tables to export, in catalogue order, and the ones left out by a feature gate (with
/// why); `only` narrows the export and must name tables of tenant data.
async fn select_tables(
    c: &mut Conn,
    grant: &Grant,
    only: Option<&[String]>,
) -> AppResult<(Vec<String>, Map<String, Value>)> {
    let all = tenant_tables(c).await?;
    if let Some(only) = only {
        if let Some(unknown) = only.iter().find(|t| !all.contains(t)) {
            return Err(AppError::bad_input(
                "tables",
                format!(
                    "{unknown:?} is not a table of tenant data; known: {}",
                    all.join(", ")
                ),
            ));
        }
    }
    let mut tables = Vec::new();
    let mut omitted = Map::new();
    for table in all {
        if only.is_some_and(|o| !o.contains(&table)) {
            continue;
        }
        if let Some((_, feature)) = grant.withheld.iter().find(|(t, _)| *t == table) {
            omitted.insert(table, json!(format!("feature {feature} is disabled")));
            continue;
        }
        tables.push(table);
    }
    Ok((tables, omitted))
}

/// The per-table rules applied to exported rows (a JSON array): configuration values are
/// decrypted or masked (hashes of secrets are left out by the query: `HIDDEN`).
fn finish_rows(
    table: &str,
    rows: &mut Value,
    tenant_id: TenantId,
    key: Option<&[u8; 32]>,
    reveal: bool,
) {
    if table == "configs" {
        reveal_configs(rows, tenant_id, key, reveal);
    }
}

/// The export's audit entry (one per export, whichever way it is delivered).
async fn record(
    c: &mut Conn,
    actor: &Actor,
    tenant_id: TenantId,
    tables: usize,
    omitted: &Map<String, Value>,
    via: Option<&str>,
) -> AppResult<()> {
    let mut metadata = json!({ "tables": tables, "omitted": omitted.keys().collect::<Vec<_>>() });
    if let Some(via) = via {
        metadata["via"] = json!(via);
    }
    audit::record(
        c,
        actor,
        audit::Change {
            tenant_id: Some(tenant_id),
            entity_type: "tenant",
            entity_id: tenant_id.to_string(),
            action: "EXPORT",
            before: Value::Null,
            after: Value::Null,
            metadata,
        },
    )
    .await?;
    Ok(())
}

/// Platform admins export any tenant; tenant admins their own (members may not). `only`
/// narrows the export to those tables. One document in memory: a table over
/// `EXPORT_MAX_ROWS` rows refuses the export ([`download`] has no cap).
pub async fn export(
    app: &App,
    actor: &Actor,
    tenant_id: TenantId,
    only: Option<Vec<String>>,
) -> AppResult<Value> {
    let grant = authorize(app, actor, tenant_id).await?;
    let max_rows = app.settings.export_max_rows as i64;
    let actor_c = actor.clone();
    let key = app.settings.config_encryption_key;
    app.db
        .scoped(grant.scope, |c| {
            async move {
                let tenant = tenant_row(c, &actor_c, tenant_id).await?;
                let (selected, omitted) = select_tables(c, &grant, only.as_deref()).await?;
                let mut tables = Map::new();
                for table in selected {
                    // Bounded: counts at most one row past the cap, reads nothing when over it.
                    let over: Count = diesel::sql_query(format!(
                        "select count(*) as n from (select 1 from \"{table}\" where tenant_id = $1 limit $2) t"
                    ))
                    .bind::<SqlUuid, _>(tenant_id)
                    .bind::<diesel::sql_types::BigInt, _>(max_rows + 1)
                    .get_result(c)
                    .await?;
                    if over.n > max_rows {
                        return Err(AppError::bad_input(
                            "tables",
                            format!(
                                "table {table} holds more than {max_rows} rows of this tenant (EXPORT_MAX_ROWS): \
                                 download the whole export from GET /exports/tenants/{tenant_id}, \
                                 or export the other tables with `tables`"
                            ),
                        ));
                    }
                    let sql = format!(
                        "select coalesce(jsonb_agg(to_jsonb(t) - {HIDDEN}), '[]'::jsonb) as rows from \"{table}\" t where tenant_id = $1"
                    );
                    let mut rows = diesel::sql_query(sql).bind::<SqlUuid, _>(tenant_id).get_result::<Rows>(c).await?.rows;
                    finish_rows(&table, &mut rows, tenant_id, key.as_ref(), grant.reveal);
                    tables.insert(table, rows);
                }
                record(c, &actor_c, tenant_id, tables.len(), &omitted, None).await?;
                Ok(json!({
                    "exportedAt": chrono::Utc::now(),
                    "tenant": tenant,
                    "tables": tables,
                    "omitted": omitted,
                }))
            }
            .scope_boxed()
        })
        .await
}

/// One piece of a streamed export; an error after the first piece aborts the response.
pub type Chunk = Result<Bytes, AppError>;

/// The streamed export (`GET /exports/tenants/{id}`): the same document as [`export`], same
/// gates and rules, without the row cap. Authorizes and writes the audit entry first, then
/// reads on a spawned task in one read-only snapshot and sends the document through a small
/// channel, page by page. Returns the first piece (the tenant and `omitted`) and the rest;
/// errors up to the first piece are returned here, so they can be answered with a status.
/// Dropping the receiver (the client went away) ends the task and its transaction.
pub async fn download(
    app: Arc<App>,
    actor: Actor,
    tenant_id: TenantId,
    only: Option<Vec<String>>,
) -> AppResult<(Bytes, tokio::sync::mpsc::Receiver<Chunk>)> {
    let grant = authorize(&app, &actor, tenant_id).await?;
    let scope = grant.scope;
    let (actor_c, grant_c) = (actor.clone(), &grant);
    let (selected, omitted) = app
        .db
        .scoped(scope, |c| {
            async move {
                tenant_row(c, &actor_c, tenant_id).await?;
                let (selected, omitted) = select_tables(c, grant_c, only.as_deref()).await?;
                record(
                    c,
                    &actor_c,
                    tenant_id,
                    selected.len(),
                    &omitted,
                    Some("download"),
                )
                .await?;
                Ok((selected, omitted))
            }
            .scope_boxed()
        })
        .await?;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Chunk>(4);
    let key = app.settings.config_encryption_key;
    tokio::spawn(async move {
        let out = tx.clone();
        let result = app
            .db
            .snapshot(scope, |c| {
                async move {
                    let tenant = tenant_row(c, &actor, tenant_id).await?;
                    let mut buf = Vec::with_capacity(8192);
                    buf.extend_from_slice(b"{\"exportedAt\":");
                    serde_json::to_writer(&mut buf, &chrono::Utc::now()).map_err(AppError::internal)?;
                    buf.extend_from_slice(b",\"tenant\":");
                    serde_json::to_writer(&mut buf, &tenant).map_err(AppError::internal)?;
                    buf.extend_from_slice(b",\"omitted\":");
                    serde_json::to_writer(&mut buf, &omitted).map_err(AppError::internal)?;
                    buf.extend_from_slice(b",\"tables\":{");
                    for (i, table) in selected.iter().enumerate() {
                        if i > 0 {
                            buf.push(b',');
                        }
                        serde_json::to_writer(&mut buf, table).map_err(AppError::internal)?;
                        buf.extend_from_slice(b":[");
                        // The tenant id is a UUID value: safe to write into the statement.
                        c.batch_execute(&format!(
                            "declare export_rows no scroll cursor for \
                             select to_jsonb(t) - {HIDDEN} as row from \"{table}\" t where tenant_id = '{tenant_id}'"
                        ))
                        .await?;
                        let mut first = true;
                        loop {
                            let page: Vec<Row> =
                                diesel::sql_query(format!("fetch {PAGE_ROWS} from export_rows"))
                                    .load(c)
                                    .await?;
                            let n = page.len();
                            let mut rows = Value::Array(page.into_iter().map(|r| r.row).collect());
                            finish_rows(table, &mut rows, tenant_id, key.as_ref(), grant.reveal);
                            for row in rows.as_array().into_iter().flatten() {
                                if !first {
                                    buf.push(b',');
                                }
                                first = false;
                                serde_json::to_writer(&mut buf, row).map_err(AppError::internal)?;
                            }
                            if n < PAGE_ROWS {
                                break;
                            }
                            send(&tx, &mut buf).await?;
                        }
                        c.batch_execute("close export_rows").await?;
                        buf.push(b']');
                        send(&tx, &mut buf).await?;
                    }
                    buf.extend_from_slice(b"}}");
                    send(&tx, &mut buf).await
                }
                .scope_boxed()
            })
            .await;
        if let Err(err) = result {
            tracing::warn!(error = %err, tenant_id = %tenant_id, "streamed export ended early");
            let _ = out.send(Err(err)).await;
        }
    });
    match rx.recv().await {
        Some(Ok(first)) => Ok((first, rx)),
        Some(Err(err)) => Err(err),
        None => Err(AppError::internal(anyhow::anyhow!(
            "export ended before its first piece"
        ))),
    }
}

/// Hands the buffered bytes to the response; fails when the client has gone away.
async fn send(tx: &tokio::sync::mpsc::Sender<Chunk>, buf: &mut Vec<u8>) -> AppResult<()> {
    let bytes = Bytes::from(std::mem::take(buf));
    // A client that stops reading must not hold a connection and a snapshot for ever.
    match tokio::time::timeout(std::time::Duration::from_secs(30), tx.send(Ok(bytes))).await {
        Ok(Ok(())) => Ok(()),
        _ => Err(AppError::internal(anyhow::anyhow!(
            "the client went away or stopped reading"
        ))),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn bytea_hex_decodes() {
        assert_eq!(super::decode_bytea("\\x00ff10"), Some(vec![0, 255, 16]));
        assert_eq!(super::decode_bytea("00ff"), None);
    }
}
