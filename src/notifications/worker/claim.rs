//! The worker's SQL steps: dispatch, claim with a lease, release, and the recorded outcome.

use chrono::Utc;
use diesel::sql_types::{
    Array, BigInt, Bool, Integer, Interval, Nullable, Text, Timestamptz, Uuid as SqlUuid,
};
use diesel::{OptionalExtension, QueryableByName};
use diesel_async::RunQueryDsl;
use scoped_futures::ScopedFutureExt;
use serde_json::json;
use uuid::Uuid;

use super::send::{Event, Outcome};
use crate::app::App;
use crate::db::{Conn, Scope};
use crate::error::AppResult;
use crate::ids::TenantId;
use crate::notifications::mail;
use crate::notifications::outbox::{self, EventType};
use crate::notifications::webhooks::model::{Channel, DeliveryRow, DeliveryStatus, EndpointRow};
use crate::notifications::webhooks::store;

/// Outbox rows dispatched per statement.
const DISPATCH_BATCH: i64 = 200;
/// The advisory lock of the one dispatcher (beside the jobs' `0x7e_0000 + n`).
const DISPATCH_LOCK: i64 = 0x7e_1000;

const SCOPE: Scope = Scope::Platform("notifications");

#[derive(QueryableByName)]
struct Locked {
    #[diesel(sql_type = Bool)]
    locked: bool,
}

/// Turns committed outbox rows into deliveries, oldest first; how many rows it dispatched (0
/// when another instance is dispatching right now).
pub async fn dispatch(app: &App) -> AppResult<usize> {
    let mailed: Vec<String> = EventType::PUBLIC
        .into_iter()
        .chain([EventType::EndpointDisabled])
        .filter(|e| mail::mails(*e))
        .map(|e| e.as_str().to_owned())
        .collect();
    app.db
        .scoped(SCOPE, |c| {
            async move {
                let got: Locked =
                    diesel::sql_query("select pg_try_advisory_xact_lock($1) as locked")
                        .bind::<BigInt, _>(DISPATCH_LOCK)
                        .get_result(c)
                        .await?;
                if !got.locked {
                    return Ok(0);
                }
                let n = diesel::sql_query(DISPATCH)
                    .bind::<BigInt, _>(DISPATCH_BATCH)
                    .bind::<Array<Text>, _>(mailed)
                    .execute(c)
                    .await?;
                Ok(n)
            }
            .scope_boxed()
        })
        .await
}

/// Deliveries are inserted in event order, so their identity `seq` follows it. A soft-deleted
/// tenant's events reach no endpoint (mail skips it too).
const DISPATCH: &str = r#"
with claimed as (
    select tenant_id, id, seq, event_type from notification_outbox
     where dispatched_at is null order by seq limit $1 for update skip locked
), hooks as (
    insert into notification_deliveries (tenant_id, id, event_id, event_seq, event_type, channel, endpoint_id)
    select c.tenant_id, gen_random_uuid(), c.id, c.seq, c.event_type, 'WEBHOOK', e.id
      from claimed c
      join tenants t on t.id = c.tenant_id and t.deleted_at is null
      join webhook_endpoints e on e.tenant_id = c.tenant_id
     where e.enabled and c.event_type <> 'webhook_endpoint.disabled'
       and (c.event_type = any(e.events) or '*' = any(e.events))
     order by c.seq, e.id
    on conflict do nothing
), mails as (
    insert into notification_deliveries (tenant_id, id, event_id, event_seq, event_type, channel)
    select c.tenant_id, gen_random_uuid(), c.id, c.seq, c.event_type, 'EMAIL'
      from claimed c where c.event_type = any($2)
     order by c.seq
    on conflict do nothing
)
update notification_outbox o set dispatched_at = now()
  from claimed c where o.tenant_id = c.tenant_id and o.id = c.id"#;

/// The due delivery that heads its lane, of a tenant this instance is not busy with, locked
/// (skipping those other workers are claiming), then leased in the same statement. Webhooks
/// only when the server can open their signing secrets.
const CLAIM: &str = r#"
with head as (
    select d.tenant_id, d.id from notification_deliveries d
     where d.status = 'PENDING' and d.next_attempt_at <= now()
       and d.tenant_id <> all($1)
       and (d.channel = 'EMAIL' or ($2 and exists (
            select 1 from webhook_endpoints e
             where e.tenant_id = d.tenant_id and e.id = d.endpoint_id and e.enabled)))
       and not exists (
            select 1 from notification_deliveries p
             where p.tenant_id = d.tenant_id and p.channel = d.channel
               and (p.endpoint_id = d.endpoint_id or (p.endpoint_id is null and d.endpoint_id is null))
               and p.status = 'PENDING' and p.seq < d.seq)
     order by d.next_attempt_at, d.seq
     limit 1
     for update of d skip locked
)
update notification_deliveries d
   set attempts = d.attempts + 1, first_attempt_at = coalesce(d.first_attempt_at, now()),
       next_attempt_at = now() + $3
  from head where d.tenant_id = head.tenant_id and d.id = head.id
returning d.tenant_id, d.id"#;

#[derive(QueryableByName)]
struct Claimed {
    #[diesel(sql_type = SqlUuid)]
    tenant_id: Uuid,
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
}

/// A leased delivery and what sending it needs.
pub struct Lease {
    pub row: DeliveryRow,
    pub event: Option<Event>,
    pub endpoint: Option<EndpointRow>,
}

/// Claims and leases one delivery (committed before anything is sent).
pub async fn claim(app: &App, busy: &[Uuid]) -> AppResult<Option<Lease>> {
    let lease = app.settings.delivery.lease;
    let can_sign = app.settings.config_encryption_key.is_some();
    let busy = busy.to_vec();
    app.db
        .scoped(SCOPE, |c| {
            async move {
                let Some(claimed) = diesel::sql_query(CLAIM)
                    .bind::<Array<SqlUuid>, _>(busy)
                    .bind::<Bool, _>(can_sign)
                    .bind::<Interval, _>(diesel::data_types::PgInterval::from_microseconds(
                        lease.as_micros() as i64,
                    ))
                    .get_result::<Claimed>(c)
                    .await
                    .optional()?
                else {
                    return Ok(None);
                };
                let row = store::delivery(c, claimed.tenant_id.into(), claimed.id).await?;
                let event = diesel::sql_query(
                    "select id, event_type, data, created_at from notification_outbox \
                     where tenant_id = $1 and id = $2",
                )
                .bind::<SqlUuid, _>(claimed.tenant_id)
                .bind::<SqlUuid, _>(row.event_id)
                .get_result::<Event>(c)
                .await
                .optional()?;
                let endpoint = match row.endpoint_id {
                    Some(id) => store::find(c, id).await?,
                    None => None,
                };
                Ok(Some(Lease {
                    row,
                    event,
                    endpoint,
                }))
            }
            .scope_boxed()
        })
        .await
}

/// Gives a leased delivery back untried (its attempt uncounted, due at once).
pub async fn release(app: &App, row: &DeliveryRow) -> AppResult<()> {
    let (tenant, id, attempts) = (row.tenant_id.into_inner(), row.id, row.attempts);
    app.db
        .scoped(SCOPE, |c| {
            async move {
                diesel::sql_query(
                    "update notification_deliveries set attempts = attempts - 1, next_attempt_at = now(), \
                     first_attempt_at = case when attempts = 1 then null else first_attempt_at end \
                     where tenant_id = $1 and id = $2 and status = 'PENDING' and attempts = $3",
                )
                .bind::<SqlUuid, _>(tenant)
                .bind::<SqlUuid, _>(id)
                .bind::<Integer, _>(attempts)
                .execute(c)
                .await?;
                Ok(())
            }
            .scope_boxed()
        })
        .await
}

/// Writes an attempt's outcome onto its delivery, unless the lease was lost meanwhile (the
/// delivery then belongs to whoever claimed it next). A webhook delivery that failed for the
/// whole retry window (counted from the row's current first attempt: re-enabling an endpoint
/// restarts it) disables its endpoint. A failed write is tried again while the lease lasts.
pub async fn record(app: &App, row: &DeliveryRow, outcome: Outcome) -> AppResult<()> {
    let mut tries = 0;
    loop {
        match record_once(app, row, &outcome).await {
            Ok(label) => {
                metrics::counter!("tenantry_notification_deliveries_total", "channel" => row.channel.as_str(), "outcome" => label)
                    .increment(1);
                return Ok(());
            }
            Err(e) if tries < 3 => {
                tries += 1;
                tracing::warn!(delivery = %row.id, error = %e.public_message(), "recording a delivery's outcome; trying again");
                tokio::time::sleep(std::time::Duration::from_millis(200 * tries)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

#[derive(QueryableByName)]
struct Current {
    #[diesel(sql_type = Nullable<Timestamptz>)]
    first_attempt_at: Option<chrono::DateTime<Utc>>,
}

async fn record_once(app: &App, row: &DeliveryRow, outcome: &Outcome) -> AppResult<&'static str> {
    let window = chrono::Duration::from_std(app.settings.delivery.retry_for)
        .unwrap_or(chrono::Duration::days(3));
    let wait = app.settings.delivery.backoff(row.attempts.max(1) as u32);
    let wait = chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::hours(1));
    let webhook = row.channel == Channel::Webhook;
    app.db
        .scoped(SCOPE, |c| {
            async move {
                // Locks in the order endpoint writes take them: tenant, endpoint, delivery.
                if webhook {
                    diesel::sql_query("select 1 from tenants where id = $1 for key share")
                        .bind::<SqlUuid, _>(row.tenant_id.into_inner())
                        .execute(c)
                        .await?;
                }
                let endpoint = match row.endpoint_id {
                    Some(id) if webhook && matches!(outcome, Outcome::Retry(..)) => {
                        store::find_for_update(c, id).await?
                    }
                    _ => None,
                };
                let Some(current) = diesel::sql_query(
                    "select first_attempt_at from notification_deliveries                      where tenant_id = $1 and id = $2 and status = 'PENDING' and attempts = $3 for update",
                )
                .bind::<SqlUuid, _>(row.tenant_id.into_inner())
                .bind::<SqlUuid, _>(row.id)
                .bind::<Integer, _>(row.attempts)
                .get_result::<Current>(c)
                .await
                .optional()?
                else {
                    tracing::warn!(delivery = %row.id, "a delivery's lease ended before its outcome was recorded");
                    return Ok("lost");
                };
                let now = Utc::now();
                let first = current.first_attempt_at.unwrap_or(now);
                let (status, code, error, next, exhausted) = match outcome {
                    Outcome::Delivered(code) => (DeliveryStatus::Succeeded, *code, None, None, false),
                    Outcome::Skipped => (DeliveryStatus::Skipped, None, None, None, false),
                    Outcome::Given(why) => (DeliveryStatus::Failed, None, Some(why), None, false),
                    Outcome::Retry(code, why) if now - first >= window => {
                        (DeliveryStatus::Failed, *code, Some(why), None, true)
                    }
                    Outcome::Retry(code, why) => {
                        (DeliveryStatus::Pending, *code, Some(why), Some(now + wait), false)
                    }
                    Outcome::Postpone(why) => {
                        (DeliveryStatus::Pending, None, Some(why), Some(now + wait), false)
                    }
                };
                diesel::sql_query(
                    "update notification_deliveries set status = $3, last_status_code = $4, \
                     last_error = $5, next_attempt_at = coalesce($6, next_attempt_at), \
                     finished_at = case when $3 = 'PENDING' then null else now() end \
                     where tenant_id = $1 and id = $2",
                )
                .bind::<SqlUuid, _>(row.tenant_id.into_inner())
                .bind::<SqlUuid, _>(row.id)
                .bind::<Text, _>(status.as_str())
                .bind::<Nullable<Integer>, _>(code.map(i32::from))
                .bind::<Nullable<Text>, _>(error.map(String::as_str))
                .bind::<Nullable<Timestamptz>, _>(next)
                .execute(c)
                .await?;
                if let (true, Some(endpoint)) = (exhausted, endpoint) {
                    let last = error.map(String::as_str).unwrap_or("failed");
                    disable(c, row.tenant_id, endpoint, last).await?;
                }
                Ok(match status {
                    DeliveryStatus::Pending => "retried",
                    DeliveryStatus::Succeeded => "delivered",
                    DeliveryStatus::Skipped => "skipped",
                    DeliveryStatus::Failed => "failed",
                })
            }
            .scope_boxed()
        })
        .await
}

/// Disables an endpoint that failed throughout and tells the tenant (a mailed event).
async fn disable(
    c: &mut Conn,
    tenant: TenantId,
    endpoint: EndpointRow,
    last_error: &str,
) -> AppResult<()> {
    if !endpoint.enabled {
        return Ok(());
    }
    let reason = format!("deliveries failed for the whole retry window; last error: {last_error}");
    let changes = store::EndpointChanges {
        enabled: Some(false),
        disabled_reason: Some(Some(reason)),
        updated_at: Some(Utc::now()),
        ..Default::default()
    };
    store::update(c, endpoint.id, &changes).await?;
    outbox::emit(
        c,
        tenant,
        EventType::EndpointDisabled,
        json!({ "endpointId": endpoint.id, "url": endpoint.url, "lastError": last_error }),
    )
    .await?;
    metrics::counter!("tenantry_webhook_endpoints_disabled_total").increment(1);
    tracing::warn!(tenant = %tenant, endpoint = %endpoint.id, "webhook endpoint disabled after failing throughout");
    Ok(())
}
