//! Billing SQL. Scope is applied by the caller's transaction.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use uuid::Uuid;

use super::model::{
    IntentRow, IntentStatus, InvoiceRow, InvoiceStatus, PaymentOutcome, SubscriptionRow,
    SubscriptionStatus,
};
use crate::db::schema::{billing_subscriptions as subs, invoices, plan_change_intents as intents};
use crate::db::Conn;
use crate::ids::{IntentId, PlanId, TenantId};
use crate::plans::model::BillingCycle;

pub async fn insert_subscription(conn: &mut Conn, row: &SubscriptionRow) -> QueryResult<()> {
    insert_subscriptions(conn, std::slice::from_ref(row)).await
}

pub async fn insert_subscriptions(conn: &mut Conn, rows: &[SubscriptionRow]) -> QueryResult<()> {
    diesel::insert_into(subs::table)
        .values(rows)
        .on_conflict_do_nothing()
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn subscriptions_of(
    conn: &mut Conn,
    tenant_ids: &[TenantId],
) -> QueryResult<Vec<SubscriptionRow>> {
    subs::table
        .filter(subs::tenant_id.eq_any(tenant_ids))
        .select(SubscriptionRow::as_select())
        .load(conn)
        .await
}

pub async fn subscription_for_update(
    conn: &mut Conn,
    tenant_id: TenantId,
) -> QueryResult<Option<SubscriptionRow>> {
    subs::table
        .find(tenant_id)
        .for_update()
        .select(SubscriptionRow::as_select())
        .first(conn)
        .await
        .optional()
}

#[derive(AsChangeset, Default)]
#[diesel(table_name = subs)]
pub struct SubscriptionChanges {
    pub status: Option<SubscriptionStatus>,
    pub plan_id: Option<PlanId>,
    pub billing_cycle: Option<BillingCycle>,
    pub cancel_at_period_end: Option<bool>,
    pub canceled_at: Option<Option<DateTime<Utc>>>,
    pub current_period_start: Option<Option<DateTime<Utc>>>,
    pub current_period_end: Option<Option<DateTime<Utc>>>,
    pub trial_end: Option<Option<DateTime<Utc>>>,
    pub grace_period_end: Option<Option<DateTime<Utc>>>,
    pub stripe_customer_id: Option<Option<String>>,
    pub stripe_subscription_id: Option<Option<String>>,
    pub stripe_updated_at: Option<Option<DateTime<Utc>>>,
    pub payment_updated_at: Option<Option<DateTime<Utc>>>,
    pub updated_at: Option<DateTime<Utc>>,
}

pub async fn update_subscription(
    conn: &mut Conn,
    tenant_id: TenantId,
    c: &SubscriptionChanges,
) -> QueryResult<SubscriptionRow> {
    diesel::update(subs::table.find(tenant_id))
        .set(c)
        .returning(SubscriptionRow::as_returning())
        .get_result(conn)
        .await
}

pub async fn insert_intent(conn: &mut Conn, row: &IntentRow) -> QueryResult<IntentRow> {
    diesel::insert_into(intents::table)
        .values(row)
        .returning(IntentRow::as_returning())
        .get_result(conn)
        .await
}

/// Optimistic update: applies only if the intent is still at `version`; `None` = lost race.
pub async fn advance_intent(
    conn: &mut Conn,
    tenant_id: TenantId,
    id: IntentId,
    version: i32,
    status: IntentStatus,
    error: Option<&str>,
) -> QueryResult<Option<IntentRow>> {
    diesel::update(
        intents::table
            .filter(intents::tenant_id.eq(tenant_id))
            .filter(intents::id.eq(id))
            .filter(intents::version.eq(version)),
    )
    .set((
        intents::status.eq(status),
        intents::version.eq(version + 1),
        intents::error.eq(error),
        intents::completed_at.eq(if status == IntentStatus::Completed {
            Some(Utc::now())
        } else {
            None
        }),
        intents::updated_at.eq(Utc::now()),
    ))
    .returning(IntentRow::as_returning())
    .get_result(conn)
    .await
    .optional()
}

pub async fn count_invoices(
    conn: &mut Conn,
    tenant_id: TenantId,
    status: Option<&str>,
) -> QueryResult<i64> {
    let mut q = invoices::table
        .filter(invoices::tenant_id.eq(tenant_id))
        .into_boxed();
    if let Some(s) = status {
        q = q.filter(invoices::status.eq(s.to_owned()));
    }
    q.count().get_result(conn).await
}

pub async fn invoices_of(
    conn: &mut Conn,
    tenant_id: TenantId,
    status: Option<&str>,
    before: Option<(DateTime<Utc>, Uuid)>,
    limit: i64,
) -> QueryResult<Vec<InvoiceRow>> {
    let mut q = invoices::table
        .filter(invoices::tenant_id.eq(tenant_id))
        .into_boxed();
    if let Some(s) = status {
        q = q.filter(invoices::status.eq(s.to_owned()));
    }
    if let Some((ts, id)) = before {
        q = q.filter(
            invoices::created_at
                .lt(ts)
                .or(invoices::created_at.eq(ts).and(invoices::id.lt(id))),
        );
    }
    q.order((invoices::created_at.desc(), invoices::id.desc()))
        .limit(limit)
        .select(InvoiceRow::as_select())
        .load(conn)
        .await
}

pub async fn intent(
    conn: &mut Conn,
    tenant_id: TenantId,
    id: IntentId,
) -> QueryResult<Option<IntentRow>> {
    intents::table
        .filter(intents::tenant_id.eq(tenant_id))
        .filter(intents::id.eq(id))
        .select(IntentRow::as_select())
        .first(conn)
        .await
        .optional()
}

pub async fn set_intent_subscription(
    conn: &mut Conn,
    tenant_id: TenantId,
    id: IntentId,
    stripe_subscription_id: &str,
) -> QueryResult<()> {
    diesel::update(
        intents::table
            .filter(intents::tenant_id.eq(tenant_id))
            .filter(intents::id.eq(id)),
    )
    .set(intents::stripe_subscription_id.eq(stripe_subscription_id))
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn invoice_by_stripe_id(
    conn: &mut Conn,
    stripe_invoice_id: &str,
) -> QueryResult<Option<(InvoiceRow, Option<DateTime<Utc>>)>> {
    invoices::table
        .filter(invoices::stripe_invoice_id.eq(stripe_invoice_id))
        .for_update()
        .select((InvoiceRow::as_select(), invoices::stripe_updated_at))
        .first(conn)
        .await
        .optional()
}

#[derive(Insertable, AsChangeset)]
#[diesel(table_name = invoices)]
pub struct InvoiceWrite {
    pub tenant_id: TenantId,
    pub id: Uuid,
    pub stripe_invoice_id: String,
    pub amount_due: i64,
    pub amount_paid: i64,
    pub currency: String,
    pub status: InvoiceStatus,
    pub period_start: Option<DateTime<Utc>>,
    pub period_end: Option<DateTime<Utc>>,
    pub due_date: Option<DateTime<Utc>>,
    pub paid_at: Option<DateTime<Utc>>,
    pub hosted_invoice_url: Option<String>,
    pub stripe_updated_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
}

/// Inserts the invoice or overwrites Stripe's fields of the existing row (the caller has
/// already decided that this state is not older than the stored one).
pub async fn upsert_invoice(conn: &mut Conn, w: &InvoiceWrite) -> QueryResult<InvoiceRow> {
    diesel::insert_into(invoices::table)
        .values(w)
        .on_conflict((invoices::tenant_id, invoices::id))
        .do_update()
        .set(w)
        .returning(InvoiceRow::as_returning())
        .get_result(conn)
        .await
}

/// A subscription row with the Stripe event times of its stored state and payment outcome.
#[derive(Queryable, Selectable)]
#[diesel(table_name = subs, check_for_backend(diesel::pg::Pg))]
pub struct VersionedSubscription {
    #[diesel(embed)]
    pub row: SubscriptionRow,
    pub stripe_updated_at: Option<DateTime<Utc>>,
    pub payment_updated_at: Option<DateTime<Utc>>,
}

/// The subscription (locked) with its Stripe event times.
pub async fn subscription_with_version(
    conn: &mut Conn,
    tenant_id: TenantId,
) -> QueryResult<Option<VersionedSubscription>> {
    subs::table
        .find(tenant_id)
        .for_update()
        .select(VersionedSubscription::as_select())
        .first(conn)
        .await
        .optional()
}

#[derive(QueryableByName)]
struct Outcome {
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
    payment_outcome: Option<PaymentOutcome>,
}

/// The newest payment outcome applied to the subscription (read in its own statement: the
/// table is at diesel's 16-column limit).
pub async fn payment_outcome(
    conn: &mut Conn,
    tenant_id: TenantId,
) -> QueryResult<Option<PaymentOutcome>> {
    let rows: Vec<Outcome> =
        diesel::sql_query("select payment_outcome from billing_subscriptions where tenant_id = $1")
            .bind::<diesel::sql_types::Uuid, _>(tenant_id)
            .load(conn)
            .await?;
    Ok(rows.into_iter().next().and_then(|r| r.payment_outcome))
}

pub async fn set_payment_outcome(
    conn: &mut Conn,
    tenant_id: TenantId,
    outcome: PaymentOutcome,
) -> QueryResult<()> {
    diesel::sql_query("update billing_subscriptions set payment_outcome = $2 where tenant_id = $1")
        .bind::<diesel::sql_types::Uuid, _>(tenant_id)
        .bind::<diesel::sql_types::Text, _>(outcome)
        .execute(conn)
        .await?;
    Ok(())
}

/// The tenant's unexpired PENDING intent, if any (one plan change at a time).
pub async fn pending_intent(
    conn: &mut Conn,
    tenant_id: TenantId,
    now: DateTime<Utc>,
) -> QueryResult<Option<IntentRow>> {
    intents::table
        .filter(intents::tenant_id.eq(tenant_id))
        .filter(intents::status.eq(IntentStatus::Pending))
        .filter(intents::expires_at.gt(now))
        .select(IntentRow::as_select())
        .first(conn)
        .await
        .optional()
}

/// The live tenants on `plan` in `region` whose Stripe subscription bills `cycle`: (tenant,
/// subscription id), in tenant order. Ended subscriptions (CANCELED, EXPIRED) are left out.
pub async fn stripe_subscribers(
    conn: &mut Conn,
    plan: PlanId,
    region: &str,
    cycle: BillingCycle,
) -> QueryResult<Vec<(TenantId, String)>> {
    use crate::db::schema::tenants;
    let rows: Vec<(TenantId, Option<String>)> = subs::table
        .inner_join(tenants::table.on(tenants::id.eq(subs::tenant_id)))
        .filter(tenants::plan_id.eq(plan))
        .filter(tenants::region.eq(region))
        .filter(tenants::deleted_at.is_null())
        .filter(subs::billing_cycle.eq(cycle))
        .filter(subs::stripe_subscription_id.is_not_null())
        .filter(subs::status.ne_all([SubscriptionStatus::Canceled, SubscriptionStatus::Expired]))
        .order(subs::tenant_id.asc())
        .select((subs::tenant_id, subs::stripe_subscription_id))
        .load(conn)
        .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(t, s)| Some((t, s?)))
        .collect())
}
