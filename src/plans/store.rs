//! Plan catalogue SQL.

use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use super::model::{
    BillingCycle, NewPlan, NewPlanPrice, PlanChanges, PlanPriceRow, PlanQuotaRow, PlanRow,
    PriceOwner, StripePriceRow,
};
use crate::db::schema::{plan_features, plan_prices, plan_quotas, plan_stripe_prices, plans};
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

/// The plan and cycle of the Stripe price `stripe_price_id`: a current catalogue price, else
/// one replaced since (`plan_stripe_prices`), which subscriptions may still be on.
pub async fn price_owner(
    conn: &mut Conn,
    stripe_price_id: &str,
) -> QueryResult<Option<PriceOwner>> {
    let current: Option<(PlanId, BillingCycle)> = plan_prices::table
        .filter(plan_prices::stripe_price_id.eq(stripe_price_id))
        .select((plan_prices::plan_id, plan_prices::billing_cycle))
        .first(conn)
        .await
        .optional()?;
    let found = match current {
        Some(p) => Some(p),
        None => plan_stripe_prices::table
            .find(stripe_price_id)
            .select((
                plan_stripe_prices::plan_id,
                plan_stripe_prices::billing_cycle,
            ))
            .first(conn)
            .await
            .optional()?,
    };
    Ok(found.map(|(plan_id, billing_cycle)| PriceOwner {
        plan_id,
        billing_cycle,
    }))
}

/// The plan's price for `region` and `cycle`, if it has one.
pub async fn price_for(
    conn: &mut Conn,
    plan_id: PlanId,
    region: &str,
    cycle: BillingCycle,
) -> QueryResult<Option<PlanPriceRow>> {
    plan_prices::table
        .filter(plan_prices::plan_id.eq(plan_id))
        .filter(plan_prices::region.eq(region))
        .filter(plan_prices::billing_cycle.eq(cycle))
        .select(PlanPriceRow::as_select())
        .first(conn)
        .await
        .optional()
}

/// Writes the plan's price for the row's region and cycle (the row's id is used only when
/// the price is new).
pub async fn upsert_price(conn: &mut Conn, row: &NewPlanPrice) -> QueryResult<PlanPriceRow> {
    diesel::insert_into(plan_prices::table)
        .values(row)
        .on_conflict((
            plan_prices::plan_id,
            plan_prices::region,
            plan_prices::billing_cycle,
        ))
        .do_update()
        .set((
            plan_prices::currency.eq(&row.currency),
            plan_prices::amount.eq(row.amount),
            plan_prices::stripe_price_id.eq(&row.stripe_price_id),
            plan_prices::updated_at.eq(diesel::dsl::now),
        ))
        .returning(PlanPriceRow::as_returning())
        .get_result(conn)
        .await
}

/// The plan's Stripe Product, once created.
pub async fn stripe_product_id(conn: &mut Conn, plan_id: PlanId) -> QueryResult<Option<String>> {
    plans::table
        .find(plan_id)
        .select(plans::stripe_product_id)
        .first(conn)
        .await
}

/// Records the plan's Stripe Product unless it has one.
pub async fn set_stripe_product_id(
    conn: &mut Conn,
    plan_id: PlanId,
    product_id: &str,
) -> QueryResult<()> {
    diesel::update(plans::table.find(plan_id))
        .filter(plans::stripe_product_id.is_null())
        .set(plans::stripe_product_id.eq(product_id))
        .execute(conn)
        .await?;
    Ok(())
}

/// Adds a Stripe price to the plan's history; an id already there keeps its row, but an
/// `archived_at` given here is stored (the price was replaced).
pub async fn save_stripe_price(conn: &mut Conn, row: &StripePriceRow) -> QueryResult<()> {
    let insert = diesel::insert_into(plan_stripe_prices::table).values(row);
    match row.archived_at {
        None => insert.on_conflict_do_nothing().execute(conn).await?,
        Some(at) => {
            insert
                .on_conflict(plan_stripe_prices::stripe_price_id)
                .do_update()
                .set(plan_stripe_prices::archived_at.eq(at))
                .execute(conn)
                .await?
        }
    };
    Ok(())
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
