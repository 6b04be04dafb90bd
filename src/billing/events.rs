//! The processed-events table of the Stripe webhook: one row per Stripe event id, with its
//! outcome, attempts, last error and the time of the next automatic retry.

use chrono::{DateTime, Duration, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Jsonb, Nullable, Text, Timestamptz};
use diesel_async::RunQueryDsl;
use serde_json::Value;

use crate::db::schema::stripe_events;
use crate::db::Conn;
use crate::ids::TenantId;

/// Retries stop after this many attempts; an admin can still replay the event.
pub const MAX_ATTEMPTS: i32 = 10;

pub use super::model::EventStatus;

#[derive(Queryable, Selectable, Debug, Clone)]
#[diesel(table_name = stripe_events, check_for_backend(diesel::pg::Pg))]
pub struct EventRow {
    pub id: String,
    pub event_type: String,
    pub tenant_id: Option<TenantId>,
    pub payload: Value,
    pub status: EventStatus,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub event_created: DateTime<Utc>,
    pub received_at: DateTime<Utc>,
    pub processed_at: Option<DateTime<Utc>>,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub note: Option<String>,
    /// The API version Stripe rendered the event in (`None` for events stored before it was
    /// recorded).
    pub api_version: Option<String>,
}

impl EventRow {
    pub fn is_done(&self) -> bool {
        matches!(self.status, EventStatus::Processed | EventStatus::Ignored)
    }
}

/// Records a delivery; a second delivery of the same id (even a concurrent one, which waits
/// on the first's uncommitted row) changes nothing.
pub async fn insert_new(
    conn: &mut Conn,
    id: &str,
    event_type: &str,
    payload: &Value,
    created: DateTime<Utc>,
    api_version: Option<&str>,
) -> QueryResult<()> {
    diesel::insert_into(stripe_events::table)
        .values((
            stripe_events::id.eq(id),
            stripe_events::event_type.eq(event_type),
            stripe_events::payload.eq(payload),
            stripe_events::event_created.eq(created),
            stripe_events::api_version.eq(api_version),
        ))
        .on_conflict_do_nothing()
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn lock(conn: &mut Conn, id: &str) -> QueryResult<Option<EventRow>> {
    stripe_events::table
        .find(id)
        .for_update()
        .select(EventRow::as_select())
        .first(conn)
        .await
        .optional()
}

pub async fn find(conn: &mut Conn, id: &str) -> QueryResult<Option<EventRow>> {
    stripe_events::table
        .find(id)
        .select(EventRow::as_select())
        .first(conn)
        .await
        .optional()
}

/// The outcome of a successful pass (PROCESSED or IGNORED), in the effects' transaction.
pub async fn finish(
    conn: &mut Conn,
    id: &str,
    status: EventStatus,
    tenant_id: Option<TenantId>,
    note: Option<&str>,
) -> QueryResult<EventRow> {
    diesel::update(stripe_events::table.find(id))
        .set((
            stripe_events::status.eq(status),
            stripe_events::tenant_id.eq(tenant_id),
            stripe_events::note.eq(note),
            stripe_events::attempts.eq(stripe_events::attempts + 1),
            stripe_events::last_error.eq(None::<String>),
            stripe_events::next_attempt_at.eq(None::<DateTime<Utc>>),
            stripe_events::processed_at.eq(Utc::now()),
        ))
        .returning(EventRow::as_returning())
        .get_result(conn)
        .await
}

/// When the next automatic retry of a failed event is due: 1, 2, 4 … minutes, at most 6 h.
pub fn backoff(attempts: i32, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    (attempts < MAX_ATTEMPTS)
        .then(|| now + Duration::minutes((1_i64 << attempts.clamp(0, 20)).min(360)))
}

/// Records a failed pass in its own transaction (the effects were rolled back). Never turns a
/// row that another delivery has processed meanwhile back into FAILED.
pub async fn fail(
    conn: &mut Conn,
    id: &str,
    event_type: &str,
    payload: &Value,
    created: DateTime<Utc>,
    api_version: Option<&str>,
    error: &str,
) -> QueryResult<()> {
    diesel::sql_query(
        "INSERT INTO stripe_events AS e (id, event_type, payload, event_created, status, attempts, last_error, api_version)
         VALUES ($1, $2, $3, $4, 'FAILED', 1, $5, $6)
         ON CONFLICT (id) DO UPDATE SET status = 'FAILED', attempts = e.attempts + 1,
             last_error = excluded.last_error,
             api_version = coalesce(e.api_version, excluded.api_version)
         WHERE e.status NOT IN ('PROCESSED', 'IGNORED')",
    )
    .bind::<Text, _>(id)
    .bind::<Text, _>(event_type)
    .bind::<Jsonb, _>(payload)
    .bind::<Timestamptz, _>(created)
    .bind::<Text, _>(error)
    .bind::<Nullable<Text>, _>(api_version)
    .execute(conn)
    .await?;
    let attempts: Option<i32> = stripe_events::table
        .find(id)
        .filter(stripe_events::status.eq(EventStatus::Failed))
        .select(stripe_events::attempts)
        .first(conn)
        .await
        .optional()?;
    if let Some(a) = attempts {
        diesel::sql_query("UPDATE stripe_events SET next_attempt_at = $2 WHERE id = $1")
            .bind::<Text, _>(id)
            .bind::<Nullable<Timestamptz>, _>(backoff(a, Utc::now()))
            .execute(conn)
            .await?;
    }
    Ok(())
}

/// Failed events whose retry is due, oldest first.
pub async fn due(conn: &mut Conn, now: DateTime<Utc>, limit: i64) -> QueryResult<Vec<String>> {
    stripe_events::table
        .filter(stripe_events::status.eq(EventStatus::Failed))
        .filter(stripe_events::next_attempt_at.le(now))
        .filter(stripe_events::attempts.lt(MAX_ATTEMPTS))
        .order(stripe_events::next_attempt_at.asc())
        .limit(limit)
        .select(stripe_events::id)
        .load(conn)
        .await
}

#[derive(Default, Clone)]
pub struct EventFilter {
    pub status: Option<EventStatus>,
    pub event_type: Option<String>,
    pub tenant_id: Option<TenantId>,
}

fn filtered<'a>(f: &EventFilter) -> stripe_events::BoxedQuery<'a, diesel::pg::Pg> {
    let mut q = stripe_events::table.into_boxed();
    if let Some(s) = f.status {
        q = q.filter(stripe_events::status.eq(s));
    }
    if let Some(t) = &f.event_type {
        q = q.filter(stripe_events::event_type.eq(t.clone()));
    }
    if let Some(t) = f.tenant_id {
        q = q.filter(stripe_events::tenant_id.eq(t));
    }
    q
}

pub async fn count(conn: &mut Conn, f: &EventFilter) -> QueryResult<i64> {
    filtered(f).count().get_result(conn).await
}

/// Newest first; `before` is the keyset cursor (received_at, id).
pub async fn list(
    conn: &mut Conn,
    f: &EventFilter,
    before: Option<(DateTime<Utc>, String)>,
    limit: i64,
) -> QueryResult<Vec<EventRow>> {
    let mut q = filtered(f);
    if let Some((ts, id)) = before {
        q = q.filter(
            stripe_events::received_at
                .lt(ts)
                .or(stripe_events::received_at
                    .eq(ts)
                    .and(stripe_events::id.lt(id))),
        );
    }
    q.order((stripe_events::received_at.desc(), stripe_events::id.desc()))
        .limit(limit)
        .select(EventRow::as_select())
        .load(conn)
        .await
}
