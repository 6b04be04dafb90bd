//! Answers of `previewPlanChange`, kept for a minute per (tenant, plan, cycle): with Stripe each
//! preview costs two Stripe calls (the subscription and its invoice preview), so repeated
//! previews — a pricing page refreshing, or a caller looping — must not reach Stripe each time.
//! Concurrent requests for the same key share one computation. A tenant change (plan,
//! subscription, status: everything that calls `App::tenant_changed`) drops that tenant's
//! answers on every instance. Catalogue price edits show after the TTL at the latest.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use moka::future::Cache;

use super::preview::{self, Preview};
use crate::app::App;
use crate::auth::{Actor, Role};
use crate::error::AppResult;
use crate::ids::TenantId;
use crate::plans::model::BillingCycle;
use crate::tenants::service::target_scope;

const TTL: Duration = Duration::from_secs(60);
const CAPACITY: u64 = 10_000;

type Key = (TenantId, String, &'static str);

pub struct PreviewCache {
    cache: Cache<Key, Arc<Preview>>,
    /// Bumped by every invalidation: an answer computed across one is not kept.
    generation: AtomicU64,
}

impl Default for PreviewCache {
    fn default() -> Self {
        PreviewCache {
            cache: Cache::builder()
                .max_capacity(CAPACITY)
                .time_to_live(TTL)
                .support_invalidation_closures()
                .build(),
            generation: AtomicU64::new(0),
        }
    }
}

impl PreviewCache {
    pub fn invalidate_tenant(&self, tenant_id: TenantId) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        let _ = self
            .cache
            .invalidate_entries_if(move |key, _| key.0 == tenant_id);
    }

    pub fn invalidate_all(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.cache.invalidate_all();
    }
}

/// `previewPlanChange` for tenant admins (and platform admins): members may not make the
/// server call Stripe. Access is checked before the cache is consulted.
pub async fn preview(
    app: &App,
    actor: &Actor,
    tenant_id: TenantId,
    plan_slug: &str,
    cycle: BillingCycle,
) -> AppResult<Arc<Preview>> {
    actor.require(Role::TenantAdmin)?;
    target_scope(actor, tenant_id, "billing")?;
    let cache = &app.previews;
    let key: Key = (tenant_id, plan_slug.to_owned(), cycle.as_str());
    let generation = cache.generation.load(Ordering::SeqCst);
    let answer = cache
        .cache
        .try_get_with(key.clone(), async {
            preview::preview(
                &app.db,
                app.payments.as_deref(),
                actor,
                tenant_id,
                plan_slug,
                cycle,
            )
            .await
            .map(Arc::new)
        })
        .await
        .map_err(|e| (*e).clone())?;
    if cache.generation.load(Ordering::SeqCst) != generation {
        cache.cache.invalidate(&key).await;
    }
    Ok(answer)
}
