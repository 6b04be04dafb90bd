//! A tenant's quota history: the threshold alerts it raised and its usage over time, with the
//! rules of a usage range (it must be forward and not longer than its granularity allows, so
//! one query cannot ask for millions of points).

use chrono::{DateTime, Utc};
use scoped_futures::ScopedFutureExt;

use super::model::{AlertRow, Granularity, UsageBucket};
use super::store;
use crate::db::page::{Page, PageArgs};
use crate::db::{Db, Scope};
use crate::error::{AppError, AppResult};
use crate::ids::TenantId;

/// A page of the tenant's alerts, newest first.
pub async fn alerts(
    db: &Db,
    scope: Scope,
    tenant_id: TenantId,
    page: PageArgs,
) -> AppResult<Page<AlertRow>> {
    page.load(
        db,
        scope,
        |c, before, limit| store::alerts(c, tenant_id, before, limit).scope_boxed(),
        |c| store::count_alerts(c, tenant_id).scope_boxed(),
    )
    .await
}

/// Checks a usage range: `to` after `from`, and no longer than `granularity` allows.
pub fn check_range(
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    granularity: Granularity,
) -> AppResult<()> {
    if to <= from {
        return Err(AppError::bad_input("to", "to must be after from"));
    }
    if to - from > granularity.max_span() {
        return Err(AppError::bad_input(
            "from",
            "range too long for this granularity",
        ));
    }
    Ok(())
}

/// Usage of `resource` over [from, to), summed per hour, day or month (UTC).
pub async fn usage_series(
    db: &Db,
    scope: Scope,
    tenant_id: TenantId,
    resource: String,
    (from, to): (DateTime<Utc>, DateTime<Utc>),
    granularity: Granularity,
) -> AppResult<Vec<UsageBucket>> {
    check_range(from, to, granularity)?;
    let unit = granularity.sql_unit();
    db.scoped(scope, |c| {
        async move { Ok(store::usage_series(c, tenant_id, &resource, from, to, unit).await?) }
            .scope_boxed()
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    #[test]
    fn a_range_must_be_forward_and_not_too_long() {
        let t = Utc::now();
        assert!(check_range(t, t, Granularity::Day).is_err());
        assert!(check_range(t, t - Duration::hours(1), Granularity::Day).is_err());
        assert!(check_range(t, t + Duration::days(93), Granularity::Hour).is_ok());
        assert!(check_range(t, t + Duration::days(94), Granularity::Hour).is_err());
    }
}
