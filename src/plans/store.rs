//! Plan catalogue SQL.

use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use super::model::{NewPlan, PlanChanges, PlanPriceRow, PlanQuotaRow, PlanRow};
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

/// Creates or replaces the plan's quota on `q.resource`.
pub async fn upsert_quota(conn: &mut Conn, q: &PlanQuotaRow) -> QueryResult<usize> {
    diesel::insert_into(plan_quotas::table)
        .values((
            plan_quotas::plan_id.eq(q.plan_id),
            plan_quotas::resource.eq(&q.resource),
            plan_quotas::limit.eq(q.limit),
            plan_quotas::unit.eq(&q.unit),
            plan_quotas::reset_period.eq(q.reset_period),
            plan_quotas::enforcement.eq(q.enforcement),
        ))
        .on_conflict((plan_quotas::plan_id, plan_quotas::resource))
        .do_update()
        .set((
            plan_quotas::limit.eq(q.limit),
            plan_quotas::unit.eq(&q.unit),
            plan_quotas::reset_period.eq(q.reset_period),
            plan_quotas::enforcement.eq(q.enforcement),
        ))
        .execute(conn)
        .await
}

/// Includes feature `key` in the plan (`enabled`) or leaves it out; returns whether that
/// changed anything.
pub async fn set_feature(
    conn: &mut Conn,
    plan: PlanId,
    key: &str,
    enabled: bool,
) -> QueryResult<bool> {
    let n = if enabled {
        diesel::insert_into(plan_features::table)
            .values((
                plan_features::plan_id.eq(plan),
                plan_features::feature_key.eq(key),
            ))
            .on_conflict_do_nothing()
            .execute(conn)
            .await?
    } else {
        diesel::delete(
            plan_features::table
                .filter(plan_features::plan_id.eq(plan))
                .filter(plan_features::feature_key.eq(key)),
        )
        .execute(conn)
        .await?
    };
    Ok(n > 0)
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

/// Every plan, archived ones too, in the catalogue's order.
pub async fn list_all(conn: &mut Conn) -> QueryResult<Vec<PlanRow>> {
    plans::table
        .order((plans::sort_order.asc(), plans::slug.asc()))
        .select(PlanRow::as_select())
        .load(conn)
        .await
}

/// The highest sort order in the catalogue (new plans go after it).
pub async fn max_sort_order(conn: &mut Conn) -> QueryResult<Option<i32>> {
    plans::table
        .select(diesel::dsl::max(plans::sort_order))
        .first(conn)
        .await
}

/// Inserts `plan`; `None` when its slug exists already (nothing written).
pub async fn insert(conn: &mut Conn, plan: &NewPlan) -> QueryResult<Option<PlanRow>> {
    diesel::insert_into(plans::table)
        .values(plan)
        .on_conflict(plans::slug)
        .do_nothing()
        .returning(PlanRow::as_returning())
        .get_result(conn)
        .await
        .optional()
}

/// The plan with this slug, locked for the rest of the transaction.
pub async fn lock_by_slug(conn: &mut Conn, slug: &str) -> QueryResult<Option<PlanRow>> {
    plans::table
        .filter(plans::slug.eq(slug))
        .select(PlanRow::as_select())
        .for_update()
        .first(conn)
        .await
        .optional()
}

/// Applies `changes` to the plan `id`.
pub async fn update(conn: &mut Conn, id: PlanId, changes: &PlanChanges) -> QueryResult<PlanRow> {
    diesel::update(plans::table.find(id))
        .set(changes)
        .returning(PlanRow::as_returning())
        .get_result(conn)
        .await
}
