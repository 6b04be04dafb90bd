//! Plan catalogue SQL.

use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use super::model::{PlanPriceRow, PlanQuotaRow, PlanRow};
use crate::db::schema::{plan_features, plan_prices, plan_quotas, plans};
use crate::db::Conn;
use crate::ids::PlanId;

pub async fn list_active(conn: &mut Conn) -> QueryResult<Vec<PlanRow>> {
    plans::table
        .filter(plans::is_active.eq(true))
        .order((plans::sort_order.asc(), plans::slug.asc()))
        .select(PlanRow::as_select())
        .load(conn)
        .await
}

pub async fn find_by_slug(conn: &mut Conn, slug: &str) -> QueryResult<Option<PlanRow>> {
    plans::table
        .filter(plans::slug.eq(slug))
        .select(PlanRow::as_select())
        .first(conn)
        .await
        .optional()
}

pub async fn by_ids(conn: &mut Conn, ids: &[PlanId]) -> QueryResult<Vec<PlanRow>> {
    plans::table
        .filter(plans::id.eq_any(ids))
        .select(PlanRow::as_select())
        .load(conn)
        .await
}

pub async fn prices_of(conn: &mut Conn, plan_ids: &[PlanId]) -> QueryResult<Vec<PlanPriceRow>> {
    plan_prices::table
        .filter(plan_prices::plan_id.eq_any(plan_ids))
        .order((plan_prices::region.asc(), plan_prices::billing_cycle.asc()))
        .select(PlanPriceRow::as_select())
        .load(conn)
        .await
}

/// (plan id, feature key) pairs of the given plans.
pub async fn features_of(
    conn: &mut Conn,
    plan_ids: &[PlanId],
) -> QueryResult<Vec<(PlanId, String)>> {
    plan_features::table
        .filter(plan_features::plan_id.eq_any(plan_ids))
        .order(plan_features::feature_key.asc())
        .select((plan_features::plan_id, plan_features::feature_key))
        .load(conn)
        .await
}

pub async fn quotas_of(conn: &mut Conn, plan_ids: &[PlanId]) -> QueryResult<Vec<PlanQuotaRow>> {
    plan_quotas::table
        .filter(plan_quotas::plan_id.eq_any(plan_ids))
        .order(plan_quotas::resource.asc())
        .select(PlanQuotaRow::as_select())
        .load(conn)
        .await
}

/// The catalogue price Stripe knows as `stripe_price_id`.
pub async fn price_by_stripe_id(
    conn: &mut Conn,
    stripe_price_id: &str,
) -> QueryResult<Option<PlanPriceRow>> {
    plan_prices::table
        .filter(plan_prices::stripe_price_id.eq(stripe_price_id))
        .select(PlanPriceRow::as_select())
        .first(conn)
        .await
        .optional()
}
