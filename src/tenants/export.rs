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

use diesel::sql_types::{Text, Uuid as SqlUuid};
use diesel_async::RunQueryDsl;
use scoped_futures::ScopedFutureExt;
use serde_json::{json, Map, Value};
use uuid::Uuid;

use crate::app::App;
use crate::audit;
use crate::auth::{Actor, Role};
use crate::configs::crypto;
use crate::configs::model::MASK;
use crate::db::Conn;
use crate::error::{AppError, AppResult};
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

fn reveal_configs(rows: &mut Value, tenant_id: Uuid, key: Option<&[u8; 32]>, reveal: bool) {
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

/// Tables behind a feature: exported to tenant admins only while the feature is enabled.
const GATED: [(&str, &str); 3] = [
    ("audit_logs", "audit_logs"),
    ("usage_hourly", "advanced_analytics"),
    ("usage_records", "advanced_analytics"),
];

#[derive(diesel::QueryableByName)]
struct Count {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

/// Platform admins export any tenant; tenant admins their own (members may not). `only`
/// narrows the export to those tables.
pub async fn export(
    app: &App,
    actor: &Actor,
    tenant_id: Uuid,
    only: Option<Vec<String>>,
) -> AppResult<Value> {
    if !actor.is_platform() && !actor.role.is_some_and(|r| r.satisfies(Role::TenantAdmin)) {
        return Err(AppError::forbidden("requires role tenant_admin"));
    }
    let scope = target_scope(actor, tenant_id, "tenant_export")?;
    // Which gated tables this caller may not have (checked before anything is read).
    let mut withheld: Vec<(&'static str, &'static str)> = Vec::new();
    if !actor.is_platform() {
        let tenant = crate::tenants::service::get(&app.db, actor, tenant_id).await?;
        let flags =
            crate::features::service::effective(app, &app.db, scope, tenant_id, tenant.plan_id)
                .await?;
        let enabled = |k: &str| flags.iter().any(|f| f.key == k && f.enabled);
        withheld = GATED.into_iter().filter(|(_, f)| !enabled(f)).collect();
    }
    let max_rows = app.settings.export_max_rows as i64;
    let actor_c = actor.clone();
    let key = app.settings.config_encryption_key;
    app.db
        .scoped(scope, |c| {
            async move {
                let tenant: Option<Rows> =
                    diesel::sql_query("select to_jsonb(t) as rows from tenants t where id = $1")
                        .bind::<SqlUuid, _>(tenant_id)
                        .get_result(c)
                        .await
                        .map(Some)
                        .or_else(|e| if e == diesel::result::Error::NotFound { Ok(None) } else { Err(e) })?;
                let tenant = tenant.ok_or_else(|| AppError::not_found("tenant"))?.rows;
                if !actor_c.is_platform() && tenant["status"] == "DELETED" {
                    return Err(AppError::not_found("tenant"));
                }
                let mut tables = Map::new();
                let mut omitted = Map::new();
                let all = tenant_tables(c).await?;
                if let Some(only) = &only {
                    if let Some(unknown) = only.iter().find(|t| !all.contains(t)) {
                        return Err(AppError::bad_input(
                            "tables",
                            format!("{unknown:?} is not a table of tenant data; known: {}", all.join(", ")),
                        ));
                    }
                }
                for table in all {
                    if only.as_ref().is_some_and(|o| !o.contains(&table)) {
                        continue;
                    }
                    if let Some((_, feature)) = withheld.iter().find(|(t, _)| *t == table) {
                        omitted.insert(table, json!(format!("feature {feature} is disabled")));
                        continue;
                    }
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
                                 export the other tables with `tables`, and ask an operator for a bulk export of {table}"
                            ),
                        ));
                    }
                    let sql = format!(
                        "select coalesce(jsonb_agg(to_jsonb(t)), '[]'::jsonb) as rows from \"{table}\" t where tenant_id = $1"
                    );
                    let mut rows = diesel::sql_query(sql).bind::<SqlUuid, _>(tenant_id).get_result::<Rows>(c).await?.rows;
                    if table == "configs" {
                        reveal_configs(&mut rows, tenant_id, key.as_ref(), actor_c.is_platform());
                    }
                    tables.insert(table, rows);
                }
                audit::record(
                    c,
                    &actor_c,
                    audit::Change {
                        tenant_id: Some(tenant_id),
                        entity_type: "tenant",
                        entity_id: tenant_id.to_string(),
                        action: "EXPORT",
                        before: Value::Null,
                        after: Value::Null,
                        metadata: json!({ "tables": tables.len(), "omitted": omitted.keys().collect::<Vec<_>>() }),
                    },
                )
                .await?;
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

#[cfg(test)]
mod tests {
    #[test]
    fn bytea_hex_decodes() {
        assert_eq!(super::decode_bytea("\\x00ff10"), Some(vec![0, 255, 16]));
        assert_eq!(super::decode_bytea("00ff"), None);
    }
}
