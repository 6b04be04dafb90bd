//! The delivery workers (SPEC §12): on every instance, `NOTIFICATION_WORKERS` loops that
//!
//! 1. **dispatch**: claim undispatched outbox rows (`FOR UPDATE SKIP LOCKED`, oldest first)
//!    and turn each into its deliveries — one per enabled endpoint subscribed to the event,
//!    one mail when the event has one — in one statement; the unique indexes make a second
//!    dispatch of the same event a no-op;
//! 2. **deliver**: claim one due delivery that heads its lane (`FOR UPDATE SKIP LOCKED`; a
//!    lane is one endpoint's deliveries, or the tenant's mail, in event order; a delivery
//!    waits while an earlier one of its lane is pending or an earlier event of its tenant is
//!    undispatched), send it while holding the row lock, and record the outcome in the same
//!    transaction. A worker killed mid-send never commits: the lock goes with its connection
//!    and the delivery is claimed again (at least once; the event id lets receivers
//!    deduplicate).
//!
//! A failed attempt is retried after `backoff(attempts)` until `WEBHOOK_RETRY_FOR` has passed
//! since its first attempt; then the delivery is FAILED, and for a webhook its endpoint is
//! disabled and a `webhook_endpoint.disabled` event (mailed to the tenant) written.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use chrono::{DateTime, Utc};
use diesel::sql_types::{Array, BigInt, Jsonb, Nullable, Text, Timestamptz, Uuid as SqlUuid};
use diesel::{OptionalExtension, QueryableByName};
use diesel_async::RunQueryDsl;
use scoped_futures::ScopedFutureExt;
use serde_json::{json, Value};
use uuid::Uuid;

use super::mail;
use super::outbox::{self, EventType};
use super::webhooks::model::{signature, Channel, DeliveryRow, DeliveryStatus, EndpointRow};
use super::webhooks::send::{Attempt, Sender, Signed};
use super::webhooks::{service, store};
use crate::app::App;
use crate::db::{Conn, Scope};
use crate::error::AppResult;
use crate::ids::TenantId;

/// Outbox rows dispatched per statement.
const DISPATCH_BATCH: i64 = 200;

/// Starts the workers of this instance (none with `NOTIFICATION_WORKERS=0`). They hold a weak
/// reference: they stop when the app is dropped.
pub fn start(app: &Arc<App>) {
    let settings = &app.settings.delivery;
    if settings.workers == 0 {
        return;
    }
    let sender = Arc::new(Sender::new(service::policy(app), settings.timeout));
    for n in 0..settings.workers {
        let (app, sender) = (Arc::downgrade(app), sender.clone());
        tokio::spawn(async move {
            let mut last_gauges = tokio::time::Instant::now() - Duration::from_secs(60);
            loop {
                let Some(app) = app.upgrade() else { return };
                let poll = app.settings.delivery.poll;
                if n == 0 && last_gauges.elapsed() >= Duration::from_secs(5) {
                    last_gauges = tokio::time::Instant::now();
                    if let Err(e) = gauges(&app).await {
                        tracing::debug!(error = %e.public_message(), "outbox gauges");
                    }
                }
                let busy = match tick(&app, &sender).await {
                    Ok(busy) => busy,
                    Err(e) => {
                        tracing::warn!(error = %e.public_message(), "notification worker; retried");
                        false
                    }
                };
                drop(app);
                if !busy {
                    tokio::time::sleep(poll).await;
                }
            }
        });
    }
}

/// One round: dispatch, then one delivery. Whether there was work (the loop then goes on
/// without sleeping).
pub async fn tick(app: &App, sender: &Sender) -> AppResult<bool> {
    let dispatched = dispatch(app).await?;
    let delivered = deliver_one(app, sender).await?;
    Ok(dispatched > 0 || delivered)
}

/// Turns undispatched outbox rows into deliveries; how many rows it dispatched.
pub async fn dispatch(app: &App) -> AppResult<usize> {
    let mailed: Vec<String> = EventType::PUBLIC
        .into_iter()
        .chain([EventType::EndpointDisabled])
        .filter(|e| mail::mails(*e))
        .map(|e| e.as_str().to_owned())
        .collect();
    app.db
        .scoped(Scope::Platform("notifications"), |c| {
            async move {
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

const DISPATCH: &str = r#"
with claimed as (
    select tenant_id, id, seq, event_type from notification_outbox
     where dispatched_at is null order by seq limit $1 for update skip locked
), hooks as (
    insert into notification_deliveries (tenant_id, id, event_id, event_seq, event_type, channel, endpoint_id)
    select c.tenant_id, gen_random_uuid(), c.id, c.seq, c.event_type, 'WEBHOOK', e.id
      from claimed c join webhook_endpoints e on e.tenant_id = c.tenant_id
     where e.enabled and c.event_type <> 'webhook_endpoint.disabled'
       and (c.event_type = any(e.events) or '*' = any(e.events))
    on conflict do nothing
), mails as (
    insert into notification_deliveries (tenant_id, id, event_id, event_seq, event_type, channel)
    select c.tenant_id, gen_random_uuid(), c.id, c.seq, c.event_type, 'EMAIL'
      from claimed c where c.event_type = any($2)
    on conflict do nothing
)
update notification_outbox o set dispatched_at = now()
  from claimed c where o.tenant_id = c.tenant_id and o.id = c.id"#;

/// The due delivery that heads its lane, locked (skipping those other workers hold).
const CLAIM: &str = r#"
select d.tenant_id, d.id from notification_deliveries d
 where d.status = 'PENDING' and d.next_attempt_at <= now()
   and (d.channel = 'EMAIL' or exists (
        select 1 from webhook_endpoints e
         where e.tenant_id = d.tenant_id and e.id = d.endpoint_id and e.enabled))
   and not exists (
        select 1 from notification_deliveries p
         where p.tenant_id = d.tenant_id and p.channel = d.channel
           and (p.endpoint_id = d.endpoint_id or (p.endpoint_id is null and d.endpoint_id is null))
           and p.status = 'PENDING'
           and (p.event_seq, p.created_at, p.id) < (d.event_seq, d.created_at, d.id))
   and not exists (
        select 1 from notification_outbox o
         where o.dispatched_at is null and o.tenant_id = d.tenant_id and o.seq < d.event_seq)
 order by d.next_attempt_at, d.event_seq
 limit 1
 for update of d skip locked"#;

#[derive(QueryableByName)]
struct Claimed {
    #[diesel(sql_type = SqlUuid)]
    tenant_id: Uuid,
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
}

/// The outbox row a delivery sends.
#[derive(QueryableByName, Clone)]
pub struct Event {
    #[diesel(sql_type = SqlUuid)]
    pub id: Uuid,
    #[diesel(sql_type = Text)]
    pub event_type: String,
    #[diesel(sql_type = Jsonb)]
    pub data: Value,
    #[diesel(sql_type = Timestamptz)]
    pub created_at: DateTime<Utc>,
}

/// Claims and sends one delivery; whether there was one.
pub async fn deliver_one(app: &App, sender: &Sender) -> AppResult<bool> {
    app.db
        .scoped(Scope::Platform("notifications"), |c| {
            async move {
                let Some(claimed) = diesel::sql_query(CLAIM)
                    .get_result::<Claimed>(c)
                    .await
                    .optional()?
                else {
                    return Ok(false);
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
                let outcome = match (&event, row.channel) {
                    (None, _) => Outcome::Given("the event is gone".into()),
                    (Some(e), Channel::Webhook) => send_webhook(app, c, sender, &row, e).await?,
                    (Some(e), Channel::Email) => send_mail(app, c, &row, e).await,
                };
                record(app, c, &row, outcome).await?;
                Ok(true)
            }
            .scope_boxed()
        })
        .await
}

/// What an attempt came to, for the row.
enum Outcome {
    Delivered(Option<u16>),
    Skipped,
    Retry(Option<u16>, String),
    /// Given up at once (nothing to send).
    Given(String),
}

/// The body of SPEC §12: `{ id type createdAt tenantId data }`.
pub fn body(tenant: TenantId, e: &Event) -> Bytes {
    let v = json!({
        "id": e.id,
        "type": e.event_type,
        "createdAt": e.created_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "tenantId": tenant,
        "data": e.data,
    });
    Bytes::from(serde_json::to_vec(&v).unwrap_or_default())
}

async fn send_webhook(
    app: &App,
    c: &mut Conn,
    sender: &Sender,
    row: &DeliveryRow,
    e: &Event,
) -> AppResult<Outcome> {
    let Some(endpoint) = store::find(c, row.endpoint_id.unwrap_or_default()).await? else {
        return Ok(Outcome::Given("the endpoint is gone".into()));
    };
    let Some(key) = app.settings.config_encryption_key else {
        return Ok(Outcome::Retry(
            None,
            "no CONFIG_ENCRYPTION_KEY to open the signing secret".into(),
        ));
    };
    let secrets = endpoint.signing_secrets(&key, Utc::now());
    if secrets.is_empty() {
        return Ok(Outcome::Retry(
            None,
            "the signing secret cannot be opened (CONFIG_ENCRYPTION_KEY changed?)".into(),
        ));
    }
    let body = body(row.tenant_id, e);
    let signed = Signed {
        event_id: &e.id.to_string(),
        event_type: &e.event_type,
        signature: signature(&secrets, Utc::now().timestamp(), &body),
    };
    Ok(match sender.post(&endpoint.url, body, signed).await {
        Attempt::Delivered(code) => Outcome::Delivered(Some(code)),
        Attempt::Refused(code) => Outcome::Retry(Some(code), format!("HTTP {code}")),
        Attempt::Failed(why) => Outcome::Retry(None, why),
    })
}

async fn send_mail(app: &App, c: &mut Conn, row: &DeliveryRow, e: &Event) -> Outcome {
    let Some(event_type) = EventType::parse(&e.event_type) else {
        return Outcome::Given(format!("unknown event {}", e.event_type));
    };
    let event = mail::OutboxEvent {
        tenant_id: row.tenant_id,
        id: e.id,
        event_type,
        data: e.data.clone(),
        created_at: e.created_at,
    };
    match mail::deliver(app, c, &event).await {
        Ok(mail::MailOutcome::Sent { .. }) => Outcome::Delivered(None),
        Ok(mail::MailOutcome::Skipped(_)) => Outcome::Skipped,
        Err(why) => Outcome::Retry(None, why),
    }
}

/// Writes the attempt's outcome onto the delivery (and disables a webhook endpoint whose
/// delivery failed for the whole retry window).
async fn record(app: &App, c: &mut Conn, row: &DeliveryRow, outcome: Outcome) -> AppResult<()> {
    let now = Utc::now();
    let channel = row.channel.as_str();
    let first = row.first_attempt_at.unwrap_or(now);
    let (status, code, error, next) = match outcome {
        Outcome::Delivered(code) => (DeliveryStatus::Succeeded, code, None, None),
        Outcome::Skipped => (DeliveryStatus::Skipped, None, None, None),
        Outcome::Given(why) => (DeliveryStatus::Failed, None, Some(why), None),
        Outcome::Retry(code, why) => {
            let window = chrono::Duration::from_std(app.settings.delivery.retry_for)
                .unwrap_or(chrono::Duration::days(3));
            if now - first >= window {
                (DeliveryStatus::Failed, code, Some(why), None)
            } else {
                let wait = app.settings.delivery.backoff(row.attempts as u32 + 1);
                let next =
                    now + chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::hours(1));
                (DeliveryStatus::Pending, code, Some(why), Some(next))
            }
        }
    };
    let outcome = match (status, next) {
        (DeliveryStatus::Pending, _) => "retried",
        (DeliveryStatus::Succeeded, _) => "delivered",
        (DeliveryStatus::Skipped, _) => "skipped",
        _ => "failed",
    };
    metrics::counter!("tenantry_notification_deliveries_total", "channel" => channel, "outcome" => outcome)
        .increment(1);
    diesel::sql_query(
        "update notification_deliveries set status = $3, attempts = attempts + 1, \
         last_status_code = $4, last_error = $5, first_attempt_at = $6, \
         next_attempt_at = coalesce($7, next_attempt_at), \
         finished_at = case when $3 = 'PENDING' then null else now() end \
         where tenant_id = $1 and id = $2",
    )
    .bind::<SqlUuid, _>(row.tenant_id.into_inner())
    .bind::<SqlUuid, _>(row.id)
    .bind::<Text, _>(status.as_str())
    .bind::<Nullable<diesel::sql_types::Integer>, _>(code.map(i32::from))
    .bind::<Nullable<Text>, _>(error.as_deref())
    .bind::<Timestamptz, _>(first)
    .bind::<Nullable<Timestamptz>, _>(next)
    .execute(c)
    .await?;
    if status == DeliveryStatus::Failed && row.channel == Channel::Webhook {
        if let Some(endpoint) = row.endpoint_id {
            disable(
                c,
                row.tenant_id,
                endpoint,
                error.as_deref().unwrap_or("failed"),
            )
            .await?;
        }
    }
    Ok(())
}

/// Disables an endpoint that failed throughout and tells the tenant (a mailed event).
async fn disable(
    c: &mut Conn,
    tenant: TenantId,
    endpoint: Uuid,
    last_error: &str,
) -> AppResult<()> {
    let Some(row): Option<EndpointRow> = store::find_for_update(c, endpoint).await? else {
        return Ok(());
    };
    if !row.enabled {
        return Ok(());
    }
    let reason = format!("deliveries failed for the whole retry window; last error: {last_error}");
    let changes = store::EndpointChanges {
        enabled: Some(false),
        disabled_reason: Some(Some(reason)),
        updated_at: Some(Utc::now()),
        ..Default::default()
    };
    store::update(c, endpoint, &changes).await?;
    outbox::emit(
        c,
        tenant,
        EventType::EndpointDisabled,
        json!({ "endpointId": endpoint, "url": row.url, "lastError": last_error }),
    )
    .await?;
    metrics::counter!("tenantry_webhook_endpoints_disabled_total").increment(1);
    tracing::warn!(tenant = %tenant, endpoint = %endpoint, "webhook endpoint disabled after failing throughout");
    Ok(())
}

#[derive(QueryableByName)]
struct Depth {
    #[diesel(sql_type = BigInt)]
    undispatched: i64,
    #[diesel(sql_type = BigInt)]
    pending: i64,
    #[diesel(sql_type = Nullable<diesel::sql_types::Double>)]
    oldest_seconds: Option<f64>,
}

/// `tenantry_notification_outbox_depth{stage}` and `tenantry_notification_outbox_age_seconds`
/// (the oldest event not yet dispatched, or delivery still pending; deliveries to disabled
/// endpoints wait for the tenant, not for us, and are left out). The whole system's, so every
/// instance reports the same.
async fn gauges(app: &App) -> AppResult<()> {
    let d: Depth = app
        .db
        .scoped(Scope::Platform("notifications"), |c| {
            async move {
                Ok(diesel::sql_query(
                    "with waiting as (select d.created_at from notification_deliveries d \
                        left join webhook_endpoints e on e.tenant_id = d.tenant_id and e.id = d.endpoint_id \
                        where d.status = 'PENDING' and (d.channel = 'EMAIL' or e.enabled)) \
                     select (select count(*) from notification_outbox where dispatched_at is null) as undispatched, \
                            (select count(*) from waiting) as pending, \
                            extract(epoch from now() - least( \
                               (select min(created_at) from notification_outbox where dispatched_at is null), \
                               (select min(created_at) from waiting)))::float8 as oldest_seconds",
                )
                .get_result(c)
                .await?)
            }
            .scope_boxed()
        })
        .await?;
    metrics::gauge!("tenantry_notification_outbox_depth", "stage" => "undispatched")
        .set(d.undispatched as f64);
    metrics::gauge!("tenantry_notification_outbox_depth", "stage" => "pending")
        .set(d.pending as f64);
    metrics::gauge!("tenantry_notification_outbox_age_seconds")
        .set(d.oldest_seconds.unwrap_or(0.0));
    Ok(())
}
