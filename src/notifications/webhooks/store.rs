//! Webhook endpoint and delivery SQL. No rules; the scope (RLS) comes with the caller's
//! transaction.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use uuid::Uuid;

use super::model::{Channel, DeliveryFilter, DeliveryRow, DeliveryStatus, EndpointRow};
use crate::db::schema::{notification_deliveries as d, webhook_endpoints as e};
use crate::db::Conn;
use crate::ids::TenantId;

#[derive(Insertable)]
#[diesel(table_name = e)]
pub struct NewEndpoint {
    pub tenant_id: TenantId,
    pub id: Uuid,
    pub url: String,
    pub events: Vec<String>,
    pub secret_prefix: String,
    pub secret_sealed: Vec<u8>,
}

pub async fn insert(c: &mut Conn, new: &NewEndpoint) -> QueryResult<EndpointRow> {
    diesel::insert_into(e::table)
        .values(new)
        .returning(EndpointRow::as_returning())
        .get_result(c)
        .await
}

/// Endpoint `id` visible in the transaction's scope, locked for the rest of it.
pub async fn find_for_update(c: &mut Conn, id: Uuid) -> QueryResult<Option<EndpointRow>> {
    e::table
        .filter(e::id.eq(id))
        .select(EndpointRow::as_select())
        .for_update()
        .first(c)
        .await
        .optional()
}

pub async fn find(c: &mut Conn, id: Uuid) -> QueryResult<Option<EndpointRow>> {
    e::table
        .filter(e::id.eq(id))
        .select(EndpointRow::as_select())
        .first(c)
        .await
        .optional()
}

/// The tenant's endpoints, oldest first.
pub async fn list(c: &mut Conn, tenant: TenantId) -> QueryResult<Vec<EndpointRow>> {
    e::table
        .filter(e::tenant_id.eq(tenant))
        .order((e::created_at.asc(), e::id.asc()))
        .select(EndpointRow::as_select())
        .load(c)
        .await
}

pub async fn count(c: &mut Conn, tenant: TenantId) -> QueryResult<i64> {
    e::table
        .filter(e::tenant_id.eq(tenant))
        .count()
        .get_result(c)
        .await
}

/// What `updateWebhookEndpoint` changes (`None`: unchanged).
#[derive(AsChangeset, Default)]
#[diesel(table_name = e)]
pub struct EndpointChanges {
    pub url: Option<String>,
    pub events: Option<Vec<String>>,
    pub enabled: Option<bool>,
    pub disabled_reason: Option<Option<String>>,
    pub secret_prefix: Option<String>,
    pub secret_sealed: Option<Vec<u8>>,
    pub previous_secret_sealed: Option<Option<Vec<u8>>>,
    pub previous_secret_expires_at: Option<Option<DateTime<Utc>>>,
    pub updated_at: Option<DateTime<Utc>>,
}

pub async fn update(c: &mut Conn, id: Uuid, ch: &EndpointChanges) -> QueryResult<EndpointRow> {
    diesel::update(e::table.filter(e::id.eq(id)))
        .set(ch)
        .returning(EndpointRow::as_returning())
        .get_result(c)
        .await
}

pub async fn delete(c: &mut Conn, id: Uuid) -> QueryResult<usize> {
    diesel::delete(e::table.filter(e::id.eq(id)))
        .execute(c)
        .await
}

/// A re-enabled endpoint's waiting deliveries start a new retry window and are due within
/// `soon` (a delivery being sent right now keeps its lease until then, so it is not sent
/// twice at once; its outcome is recorded as usual).
pub async fn restart_pending(
    c: &mut Conn,
    endpoint: Uuid,
    soon: DateTime<Utc>,
) -> QueryResult<usize> {
    diesel::update(
        d::table
            .filter(d::endpoint_id.eq(endpoint))
            .filter(d::status.eq(DeliveryStatus::Pending)),
    )
    .set((
        d::first_attempt_at.eq(None::<DateTime<Utc>>),
        d::next_attempt_at.eq(diesel::dsl::sql::<diesel::sql_types::Timestamptz>(
            "least(next_attempt_at, ",
        )
        .bind::<diesel::sql_types::Timestamptz, _>(soon)
        .sql(")")),
    ))
    .execute(c)
    .await
}

type Boxed<'a> = d::BoxedQuery<'a, diesel::pg::Pg>;

fn filtered<'a>(tenant: TenantId, f: &DeliveryFilter) -> Boxed<'a> {
    let mut q = d::table
        .filter(d::tenant_id.eq(tenant))
        .filter(d::channel.eq(Channel::Webhook))
        .into_boxed();
    if let Some(s) = f.status {
        q = q.filter(d::status.eq(s));
    }
    if let Some(t) = f.event_type.clone() {
        q = q.filter(d::event_type.eq(t));
    }
    if let Some(id) = f.endpoint_id {
        q = q.filter(d::endpoint_id.eq(id));
    }
    if let Some(id) = f.event_id {
        q = q.filter(d::event_id.eq(id));
    }
    q
}

/// A page of webhook deliveries, newest first, keyset on (created_at, id).
pub async fn list_deliveries(
    c: &mut Conn,
    tenant: TenantId,
    f: &DeliveryFilter,
    after: Option<(DateTime<Utc>, Uuid)>,
    limit: i64,
) -> QueryResult<Vec<DeliveryRow>> {
    let mut q = filtered(tenant, f);
    if let Some((ts, id)) = after {
        q = q.filter(
            d::created_at
                .lt(ts)
                .or(d::created_at.eq(ts).and(d::id.lt(id))),
        );
    }
    q.order((d::created_at.desc(), d::id.desc()))
        .limit(limit)
        .select(DeliveryRow::as_select())
        .load(c)
        .await
}

pub async fn count_deliveries(
    c: &mut Conn,
    tenant: TenantId,
    f: &DeliveryFilter,
) -> QueryResult<i64> {
    filtered(tenant, f).count().get_result(c).await
}

/// Webhook delivery `id` visible in the transaction's scope.
pub async fn find_delivery(c: &mut Conn, id: Uuid) -> QueryResult<Option<DeliveryRow>> {
    d::table
        .filter(d::id.eq(id))
        .filter(d::channel.eq(Channel::Webhook))
        .select(DeliveryRow::as_select())
        .first(c)
        .await
        .optional()
}

/// Delivery `id` of `tenant`, of either channel (the worker's, after claiming it).
pub async fn delivery(c: &mut Conn, tenant: TenantId, id: Uuid) -> QueryResult<DeliveryRow> {
    d::table
        .filter(d::tenant_id.eq(tenant))
        .filter(d::id.eq(id))
        .select(DeliveryRow::as_select())
        .get_result(c)
        .await
}

/// A new PENDING delivery repeating `of` (same event, same endpoint), due now.
pub async fn insert_redelivery(c: &mut Conn, of: &DeliveryRow) -> QueryResult<DeliveryRow> {
    diesel::insert_into(d::table)
        .values((
            d::tenant_id.eq(of.tenant_id),
            d::id.eq(Uuid::now_v7()),
            d::event_id.eq(of.event_id),
            d::event_seq.eq(of.event_seq),
            d::event_type.eq(&of.event_type),
            d::channel.eq(Channel::Webhook),
            d::endpoint_id.eq(of.endpoint_id),
            d::redelivery_of.eq(of.id),
        ))
        .returning(DeliveryRow::as_returning())
        .get_result(c)
        .await
}
