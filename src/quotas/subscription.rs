//! `Subscription.quotaAlerts`: alerts from the event bus (one Redis subscriber per instance,
//! fanned out locally), filtered to what the caller may see. Tenant users get their tenant's
//! alerts only; platform admins choose one tenant (`tenantId`, or `X-Tenant-ID` scope) or get
//! all.

use async_graphql::{Context, Result, Subscription, ID};
use futures_util::Stream;
use tokio::sync::broadcast::error::RecvError;

use super::graphql::QuotaAlert;
use crate::auth::{cross_tenant_denied, Role};
use crate::error::AppError;
use crate::graphql::context::CtxExt;
use crate::graphql::guards::RequireRole;
use crate::ids::TenantId;

/// Counts live subscriptions (`tenantry_active_subscriptions`) for as long as it lives.
struct Live;

impl Live {
    fn new() -> Live {
        metrics::gauge!("tenantry_active_subscriptions").increment(1.0);
        Live
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        metrics::gauge!("tenantry_active_subscriptions").decrement(1.0);
    }
}

#[derive(Default)]
pub struct QuotaSubscription;

#[Subscription]
impl QuotaSubscription {
    /// Quota threshold crossings as they happen, optionally for one resource (an unknown
    /// resource is BAD_USER_INPUT).
    #[graphql(guard = "RequireRole(Role::TenantMember)")]
    async fn quota_alerts(
        &self,
        ctx: &Context<'_>,
        resource: Option<String>,
        tenant_id: Option<ID>,
    ) -> Result<impl Stream<Item = QuotaAlert>> {
        if let Some(r) = &resource {
            crate::resource_types::service::require_known(ctx.app(), "resource", r).await?;
        }
        let req = ctx.req();
        let actor = req.actor();
        let requested = match &tenant_id {
            Some(id) => Some(TenantId::parse("tenantId", id.as_str())?),
            None => None,
        };
        let only: Option<TenantId> = if actor.is_platform() {
            requested.or(req.tenant_id())
        } else {
            let own = req
                .tenant_id()
                .ok_or_else(|| AppError::forbidden("no tenant"))?;
            if let Some(other) = requested.filter(|r| *r != own) {
                return Err(cross_tenant_denied(&actor, other, "quota_alerts").into());
            }
            Some(own)
        };
        // Only this tenant's alerts wake this subscription (all tenants' for an admin's `None`).
        let rx = ctx.app().bus.alerts(only);
        let live = Live::new();
        Ok(futures_util::stream::unfold(
            (rx, live),
            move |(mut rx, live)| {
                let resource = resource.clone();
                async move {
                    loop {
                        match rx.recv().await {
                            Ok(a)
                                if only.is_none_or(|t| t == a.tenant_id)
                                    && resource.as_deref().is_none_or(|r| r == a.resource) =>
                            {
                                metrics::counter!("tenantry_alerts_delivered_total").increment(1);
                                return Some((QuotaAlert::from(a), (rx, live)));
                            }
                            Ok(_) => continue,
                            Err(RecvError::Lagged(n)) => {
                                tracing::warn!(
                                    missed = n,
                                    "subscriber lagged behind the event bus"
                                );
                                continue;
                            }
                            Err(RecvError::Closed) => return None,
                        }
                    }
                }
            },
        ))
    }
}
