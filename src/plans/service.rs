//! Plan catalogue reads for the API: which plans a visitor may see. The catalogue is platform
//! data, readable without a tenant, so every read runs in the anonymous scope.

use scoped_futures::ScopedFutureExt;

use super::model::PlanRow;
use super::store;
use crate::db::{Db, Scope};
use crate::error::AppResult;

/// The active plans, cheapest first (the catalogue's sort order).
pub async fn list_active(db: &Db) -> AppResult<Vec<PlanRow>> {
    db.scoped(Scope::Anonymous, |c| {
        async move { Ok(store::list_active(c).await?) }.scope_boxed()
    })
    .await
}

/// The plan with this slug, if it is offered: a retired plan reads as absent.
pub async fn find_active(db: &Db, slug: &str) -> AppResult<Option<PlanRow>> {
    let slug = slug.to_owned();
    let row = db
        .scoped(Scope::Anonymous, |c| {
            async move { Ok(store::find_by_slug(c, &slug).await?) }.scope_boxed()
        })
        .await?;
    Ok(row.filter(|p| p.is_active))
}
