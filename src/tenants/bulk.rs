//! Many tenants at once (`tenantry seed --tenants N`): the rows `service::create` writes for
//! one tenant — the tenant, its provisioned quotas, its first subscription and the CREATE audit
//! entry — written set-based, one transaction and four statements per chunk of tenants. A slug
//! that exists is skipped, so a rerun only adds what is missing. No Stripe customers are
//! created here: with live billing, Checkout creates a tenant's customer on first use.

use std::collections::HashMap;

use chrono::Utc;
use scoped_futures::ScopedFutureExt;
use serde_json::{json, Value};

use super::model::{NewTenant, TenantName, TenantSlug, TenantStatus};
use super::service::audit_view;
use super::store;
use crate::audit;
use crate::auth::{Actor, Role};
use crate::billing::plan_apply::initial_subscription;
use crate::db::{Db, Scope};
use crate::error::{AppError, AppResult};
use crate::ids::TenantId;
use crate::quotas::service::provisioned_quotas;
use crate::{plans, quotas};

/// One tenant to create.
pub struct Spec {
    pub name: String,
    pub slug: String,
    pub plan_slug: String,
}

/// Creates the tenants of `specs` whose slug is free, in one transaction; returns how many
/// were created. Platform admins (and the seed command's system actor) only.
pub async fn create(db: &Db, actor: &Actor, specs: &[Spec]) -> AppResult<usize> {
    actor.require(Role::PlatformAdmin)?;
    let mut rows = Vec::with_capacity(specs.len());
    for s in specs {
        rows.push((
            TenantName::parse(&s.name)?,
            TenantSlug::parse(&s.slug)?,
            s.plan_slug.clone(),
        ));
    }
    let actor = actor.clone();
    db.scoped(Scope::Platform("tenant_create"), |c| {
        async move {
            let catalogue = plans::store::list_active(c).await?;
            let plan_of = |slug: &str| {
                catalogue.iter().find(|p| p.slug == slug).ok_or_else(|| {
                    AppError::bad_input("planSlug", format!("unknown plan {slug:?}"))
                })
            };
            let mut new = Vec::with_capacity(rows.len());
            for (name, slug, plan_slug) in rows {
                new.push(NewTenant {
                    id: TenantId::now_v7(),
                    owner_id: Some(format!("{}-owner", slug.as_str())),
                    name,
                    slug,
                    domain: None,
                    status: TenantStatus::Active,
                    plan_id: plan_of(&plan_slug)?.id,
                    region: "US".into(),
                    settings: json!({}),
                });
            }
            let created = store::insert_new(c, &new).await?;
            let ids: Vec<_> = catalogue.iter().map(|p| p.id).collect();
            let mut plan_quotas = HashMap::<_, Vec<_>>::new();
            for q in plans::store::quotas_of(c, &ids).await? {
                plan_quotas.entry(q.plan_id).or_default().push(q);
            }
            let now = Utc::now();
            let mut quota_rows = Vec::new();
            let mut subscriptions = Vec::with_capacity(created.len());
            let mut changes = Vec::with_capacity(created.len());
            for t in &created {
                let plan = catalogue.iter().find(|p| p.id == t.plan_id);
                let plan = plan.ok_or_else(|| AppError::not_found("plan"))?;
                let of_plan = plan_quotas.get(&plan.id).map_or(&[][..], Vec::as_slice);
                quota_rows.extend(provisioned_quotas(t.id, of_plan, now));
                subscriptions.push(initial_subscription(t.id, plan, now));
                let metadata = json!({ "plan": plan.slug, "bulk": true });
                let after = audit_view(t);
                changes.push(
                    audit::Change::new(t.id, "tenant", t.id, "CREATE", Value::Null, after)
                        .with_metadata(metadata),
                );
            }
            quotas::store::insert_many(c, &quota_rows).await?;
            let owners: Vec<_> = created
                .iter()
                .filter_map(|t| Some((t.id, t.owner_id.clone()?)))
                .collect();
            crate::members::service::first_owners(c, &owners).await?;
            crate::billing::store::insert_subscriptions(c, &subscriptions).await?;
            audit::record_many(c, &actor, changes).await?;
            Ok(created.len())
        }
        .scope_boxed()
    })
    .await
}
