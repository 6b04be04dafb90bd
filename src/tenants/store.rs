//! Tenant SQL. No rules here; the scope (RLS) is applied by the caller's transaction.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use super::model::{DomainClaim, ListFilter, NewTenant, TenantName, TenantRow, TenantStatus};
use crate::db::schema::{plans, tenant_domain_claims, tenants};
use crate::db::Conn;
use crate::ids::{PlanId, TenantId};

pub async fn find(conn: &mut Conn, id: TenantId) -> QueryResult<Option<TenantRow>> {
    tenants::table
        .find(id)
        .select(TenantRow::as_select())
        .first(conn)
        .await
        .optional()
}

pub async fn find_by_slug(conn: &mut Conn, slug: &str) -> QueryResult<Option<TenantRow>> {
    tenants::table
        .filter(tenants::slug.eq(slug))
        .select(TenantRow::as_select())
        .first(conn)
        .await
        .optional()
}

pub async fn find_by_domain(conn: &mut Conn, domain: &str) -> QueryResult<Option<TenantRow>> {
    diesel::define_sql_function!(fn lower(x: diesel::sql_types::Nullable<diesel::sql_types::Text>) -> diesel::sql_types::Nullable<diesel::sql_types::Text>);
    tenants::table
        .filter(lower(tenants::domain).eq(domain.to_ascii_lowercase()))
        .select(TenantRow::as_select())
        .first(conn)
        .await
        .optional()
}

/// Inserts the tenants whose slug is free; returns the inserted rows (others are skipped).
pub async fn insert_new(conn: &mut Conn, rows: &[NewTenant]) -> QueryResult<Vec<TenantRow>> {
    diesel::insert_into(tenants::table)
        .values(rows)
        .on_conflict(tenants::slug)
        .do_nothing()
        .returning(TenantRow::as_returning())
        .get_results(conn)
        .await
}

pub async fn insert(conn: &mut Conn, new: &NewTenant) -> QueryResult<TenantRow> {
    diesel::insert_into(tenants::table)
        .values(new)
        .returning(TenantRow::as_returning())
        .get_result(conn)
        .await
}

#[derive(AsChangeset, Default)]
#[diesel(table_name = tenants)]
pub struct TenantChanges {
    pub name: Option<TenantName>,
    pub domain: Option<Option<String>>,
    pub plan_id: Option<PlanId>,
    pub settings: Option<serde_json::Value>,
    pub status: Option<TenantStatus>,
    pub suspended_at: Option<Option<DateTime<Utc>>>,
    pub suspend_reason: Option<Option<String>>,
    pub deleted_at: Option<Option<DateTime<Utc>>>,
    pub stripe_customer_id: Option<Option<String>>,
    pub updated_at: Option<DateTime<Utc>>,
}

pub async fn update(
    conn: &mut Conn,
    id: TenantId,
    changes: &TenantChanges,
) -> QueryResult<TenantRow> {
    diesel::update(tenants::table.find(id))
        .set(changes)
        .returning(TenantRow::as_returning())
        .get_result(conn)
        .await
}

fn filtered(f: &ListFilter) -> tenants::BoxedQuery<'static, diesel::pg::Pg> {
    let mut q = tenants::table.into_boxed();
    if !f.statuses.is_empty() {
        q = q.filter(tenants::status.eq_any(f.statuses.clone()));
    }
    if let Some(slug) = &f.plan_slug {
        let plan_ids = plans::table
            .filter(plans::slug.eq(slug.clone()))
            .select(plans::id);
        q = q.filter(tenants::plan_id.eq_any(plan_ids));
    }
    if let Some(s) = &f.search {
        let pattern = format!(
            "%{}%",
            s.replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_")
        );
        q = q.filter(
            tenants::name
                .ilike(pattern.clone())
                .or(tenants::slug.ilike(pattern)),
        );
    }
    q
}

/// Keyset page ordered by (created_at, id), starting after `after`.
pub async fn list(
    conn: &mut Conn,
    f: &ListFilter,
    after: Option<(DateTime<Utc>, TenantId)>,
    limit: i64,
) -> QueryResult<Vec<TenantRow>> {
    let mut q = filtered(f);
    if let Some((ts, id)) = after {
        q = q.filter(
            tenants::created_at
                .gt(ts)
                .or(tenants::created_at.eq(ts).and(tenants::id.gt(id))),
        );
    }
    q.order((tenants::created_at.asc(), tenants::id.asc()))
        .limit(limit)
        .select(TenantRow::as_select())
        .load(conn)
        .await
}

pub async fn count(conn: &mut Conn, f: &ListFilter) -> QueryResult<i64> {
    filtered(f).count().get_result(conn).await
}

/// Removes the tenant and (by cascade) everything it owns, if it is still as it was at
/// `updated_at`; audit rows stay. Returns whether it was removed.
pub async fn remove_unchanged(
    conn: &mut Conn,
    id: TenantId,
    updated_at: DateTime<Utc>,
) -> QueryResult<bool> {
    let n = diesel::delete(
        tenants::table
            .find(id)
            .filter(tenants::updated_at.eq(updated_at)),
    )
    .execute(conn)
    .await?;
    Ok(n == 1)
}

/// The row, locked for the rest of the transaction (lifecycle changes are serialized).
pub async fn find_for_update(conn: &mut Conn, id: TenantId) -> QueryResult<Option<TenantRow>> {
    tenants::table
        .find(id)
        .for_update()
        .select(TenantRow::as_select())
        .first(conn)
        .await
        .optional()
}

/// The tenant Stripe knows as `customer` (the customer → tenant mapping of the webhook).
pub async fn find_by_stripe_customer(
    conn: &mut Conn,
    customer: &str,
) -> QueryResult<Option<TenantRow>> {
    tenants::table
        .filter(tenants::stripe_customer_id.eq(customer))
        .for_update()
        .select(TenantRow::as_select())
        .first(conn)
        .await
        .optional()
}

/// The tenant's domain claim that has not expired at `now`.
pub async fn live_claim(
    conn: &mut Conn,
    tenant_id: TenantId,
    now: DateTime<Utc>,
) -> QueryResult<Option<DomainClaim>> {
    tenant_domain_claims::table
        .find(tenant_id)
        .filter(tenant_domain_claims::expires_at.gt(now))
        .select(DomainClaim::as_select())
        .first(conn)
        .await
        .optional()
}

/// The unexpired claims of several tenants (one statement, for the DataLoader).
pub async fn live_claims(
    conn: &mut Conn,
    tenant_ids: &[TenantId],
    now: DateTime<Utc>,
) -> QueryResult<Vec<DomainClaim>> {
    tenant_domain_claims::table
        .filter(tenant_domain_claims::tenant_id.eq_any(tenant_ids))
        .filter(tenant_domain_claims::expires_at.gt(now))
        .select(DomainClaim::as_select())
        .load(conn)
        .await
}

/// Replaces the tenant's claim (one per tenant).
pub async fn put_claim(conn: &mut Conn, claim: &DomainClaim) -> QueryResult<()> {
    diesel::insert_into(tenant_domain_claims::table)
        .values(claim)
        .on_conflict(tenant_domain_claims::tenant_id)
        .do_update()
        .set((
            tenant_domain_claims::domain.eq(&claim.domain),
            tenant_domain_claims::token.eq(&claim.token),
            tenant_domain_claims::expires_at.eq(claim.expires_at),
            tenant_domain_claims::created_at.eq(diesel::dsl::now),
        ))
        .execute(conn)
        .await
        .map(drop)
}

pub async fn delete_claim(conn: &mut Conn, tenant_id: TenantId) -> QueryResult<()> {
    diesel::delete(tenant_domain_claims::table.find(tenant_id))
        .execute(conn)
        .await
        .map(drop)
}

/// Deletes `claim` if it is still the tenant's live claim; `false` when it is not.
pub async fn consume_claim(
    conn: &mut Conn,
    claim: &DomainClaim,
    now: DateTime<Utc>,
) -> QueryResult<bool> {
    let n = diesel::delete(
        tenant_domain_claims::table
            .find(claim.tenant_id)
            .filter(tenant_domain_claims::domain.eq(&claim.domain))
            .filter(tenant_domain_claims::token.eq(&claim.token))
            .filter(tenant_domain_claims::expires_at.gt(now)),
    )
    .execute(conn)
    .await?;
    Ok(n == 1)
}
