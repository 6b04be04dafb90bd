//! The outbox gauges.

use diesel::sql_types::{BigInt, Nullable};
use diesel::QueryableByName;
use diesel_async::RunQueryDsl;
use scoped_futures::ScopedFutureExt;

use crate::app::App;
use crate::db::Scope;
use crate::error::AppResult;

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
pub async fn update(app: &App) -> AppResult<()> {
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
