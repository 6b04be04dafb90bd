//! The outbox: one row per event, in the cause's transaction.

use diesel::sql_types::{Jsonb, Text, Uuid as SqlUuid};
use diesel::QueryResult;
use diesel_async::RunQueryDsl;
use serde_json::Value;
use uuid::Uuid;

use crate::db::Conn;
use crate::ids::TenantId;

/// The events of SPEC §12, by their wire names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    QuotaThresholdReached,
    PlanChanged,
    TrialEnding,
    PaymentFailed,
    TenantSuspended,
    TenantReactivated,
    MemberInvited,
    /// Internal (not offered to webhooks): an endpoint was disabled after failing throughout;
    /// the tenant is told by mail.
    EndpointDisabled,
}

impl EventType {
    /// The events a webhook endpoint may subscribe to (SPEC §12).
    pub const PUBLIC: [EventType; 7] = [
        EventType::QuotaThresholdReached,
        EventType::PlanChanged,
        EventType::TrialEnding,
        EventType::PaymentFailed,
        EventType::TenantSuspended,
        EventType::TenantReactivated,
        EventType::MemberInvited,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::QuotaThresholdReached => "quota.threshold_reached",
            EventType::PlanChanged => "plan.changed",
            EventType::TrialEnding => "subscription.trial_ending",
            EventType::PaymentFailed => "invoice.payment_failed",
            EventType::TenantSuspended => "tenant.suspended",
            EventType::TenantReactivated => "tenant.reactivated",
            EventType::MemberInvited => "member.invited",
            EventType::EndpointDisabled => "webhook_endpoint.disabled",
        }
    }

    pub fn parse(name: &str) -> Option<EventType> {
        EventType::PUBLIC
            .into_iter()
            .chain([EventType::EndpointDisabled])
            .find(|e| e.as_str() == name)
    }
}

/// Writes event `event` of `tenant` with `data` in the caller's transaction; returns its id,
/// the one receivers deduplicate on.
pub async fn emit(
    c: &mut Conn,
    tenant: TenantId,
    event: EventType,
    data: Value,
) -> QueryResult<Uuid> {
    let id = Uuid::now_v7();
    diesel::sql_query(
        "insert into notification_outbox (tenant_id, id, event_type, data) values ($1, $2, $3, $4)",
    )
    .bind::<SqlUuid, _>(tenant.into_inner())
    .bind::<SqlUuid, _>(id)
    .bind::<Text, _>(event.as_str())
    .bind::<Jsonb, _>(data)
    .execute(c)
    .await?;
    Ok(id)
}

/// The SQL that writes a `quota.threshold_reached` event for each row of a CTE named `a`
/// holding inserted `quota_alerts` rows (the metering path records alert and event in one
/// statement). `data` is SPEC §12's `{ resource threshold used limit percentUsed periodStart }`.
pub const QUOTA_EVENTS_FROM_ALERTS: &str = r#"insert into notification_outbox (tenant_id, id, event_type, data, created_at)
    select a.tenant_id, a.id, 'quota.threshold_reached',
           jsonb_build_object('resource', a.resource, 'threshold', a.threshold, 'used', a.used,
                              'limit', a."limit",
                              'percentUsed', case when a."limit" > 0 then round(a.used * 100.0 / a."limit", 2)
                                                  when a.used > 0 then 100 else 0 end,
                              'periodStart', to_char(a.period_start at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')),
           a.created_at
      from a"#;
