//! `setPlanQuota`: a plan's quota changes, and the change reaches every tenant on the plan.
//!
//! The plan's row changes in one transaction with its audit entry (carrying the number of
//! tenants it will change) and a rollout row. The rollout then walks the plan's tenants in id
//! order, one short transaction per batch of [`BATCH`]: the batch's tenant rows are locked
//! (`FOR UPDATE`, so a plan switch running at the same time either goes first, and the tenant
//! is no longer on the plan, or waits and then writes its new plan's quotas), their quota rows
//! that are not overridden take the plan's values, and the rollout row's cursor advances. The
//! rollout row is locked `FOR UPDATE SKIP LOCKED` by each batch, so two instances never run
//! the same batch; an interrupted rollout is resumed by the `plan-rollouts` job. When it is
//! done, every instance drops what it computed from the old quota (`App::plans_changed`).

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Int4, Text, Uuid as SqlUuid};
use diesel_async::RunQueryDsl;
use scoped_futures::ScopedFutureExt;
use serde_json::{json, Value};
use uuid::Uuid;

use super::model::{PlanQuotaRow, PlanRow};
use super::store;
use crate::app::App;
use crate::audit;
use crate::auth::{Actor, Role};
use crate::db::schema::{plan_quotas, plan_rollouts};
use crate::db::text_enum::text_enum;
use crate::db::{Conn, Scope};
use crate::error::{AppError, AppResult};
use crate::ids::PlanId;
use crate::quotas::model::{ResetPeriod, DEFAULT_ALERT_THRESHOLDS};
use crate::quotas::service::{check_limit_and_unit, SetQuota};
use crate::resource_types::service as resource_types;

/// Tenants changed per transaction.
pub const BATCH: i64 = 500;

/// How long `setPlanQuota` waits for its rollout before answering with it still RUNNING.
const WAIT: Duration = Duration::from_secs(5);

text_enum!(
    #[derive(async_graphql::Enum, Debug, Clone, Copy, PartialEq, Eq)]
    pub enum RolloutStatus {
        Running = "RUNNING",
        Done = "DONE",
    }
);

#[derive(Queryable, Selectable, Insertable, Debug, Clone)]
#[diesel(table_name = plan_rollouts, check_for_backend(diesel::pg::Pg))]
pub struct RolloutRow {
    pub id: Uuid,
    pub plan_id: PlanId,
    pub resource: String,
    pub status: RolloutStatus,
    pub cursor: Option<Uuid>,
    pub tenants_affected: i32,
    pub tenants_updated: i32,
    pub requested_by: String,
    pub created_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// What `setPlanQuota` did: the plan's quota, and the rollout taking it to the tenants
/// (`None` when the quota already had these values: nothing was written).
pub struct QuotaChange {
    pub plan: PlanRow,
    pub quota: PlanQuotaRow,
    pub rollout: Option<RolloutRow>,
}

fn view(q: &PlanQuotaRow) -> Value {
    json!({ "resource": q.resource, "limit": q.limit, "unit": q.unit,
        "resetPeriod": q.reset_period, "enforcement": q.enforcement })
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// Tenants on `plan` (not deleted) whose quota on `resource` is not overridden: those a
/// change of the plan's quota changes.
async fn count_affected(c: &mut Conn, plan: PlanId, resource: &str) -> QueryResult<i64> {
    let row: Count = diesel::sql_query(
        "select count(*) as n from tenants t
          where t.plan_id = $1 and t.status <> 'DELETED'
            and not exists (select 1 from quotas q
                             where q.tenant_id = t.id and q.resource = $2 and q.overridden)",
    )
    .bind::<SqlUuid, _>(plan.into_inner())
    .bind::<Text, _>(resource)
    .get_result(c)
    .await?;
    Ok(row.n)
}

/// Sets the plan's quota on a known resource type (platform admins) and takes it to the plan's
/// tenants, overrides kept. Answers once the rollout is done, or after [`WAIT`] with it still
/// RUNNING (it goes on, and `planRollout(id)` follows it). Alert thresholds are the tenants'
/// own and are refused here.
pub async fn set_quota(
    app: &Arc<App>,
    actor: &Actor,
    plan_slug: &str,
    input: SetQuota,
) -> AppResult<QuotaChange> {
    actor.require(Role::PlatformAdmin)?;
    let kind = resource_types::require_known(app, "resource", &input.resource).await?;
    check_limit_and_unit(input.limit, input.unit.as_deref())?;
    if input.alert_thresholds.is_some() {
        return Err(AppError::bad_input(
            "alertThresholds",
            "alert thresholds belong to each tenant's quota (setQuota), not to a plan",
        ));
    }
    let (actor_c, slug) = (actor.clone(), plan_slug.to_owned());
    let change = app
        .db
        .scoped(Scope::Platform("catalogue_admin"), |c| {
            async move {
                let plan = store::lock_by_slug(c, &slug)
                    .await?
                    .ok_or_else(|| AppError::not_found("plan"))?;
                let before = store::quotas_of(c, &[plan.id])
                    .await?
                    .into_iter()
                    .find(|q| q.resource == input.resource);
                let quota = PlanQuotaRow {
                    plan_id: plan.id,
                    resource: input.resource.clone(),
                    limit: input.limit,
                    unit: input
                        .unit
                        .or_else(|| before.as_ref().map(|b| b.unit.clone()))
                        .unwrap_or(kind.unit),
                    reset_period: input
                        .reset_period
                        .or_else(|| before.as_ref().map(|b| b.reset_period))
                        .unwrap_or(ResetPeriod::Monthly),
                    enforcement: input
                        .enforcement
                        .or_else(|| before.as_ref().map(|b| b.enforcement))
                        .unwrap_or(kind.default_enforcement),
                };
                if before.as_ref().is_some_and(|b| view(b) == view(&quota)) {
                    return Ok(QuotaChange {
                        plan,
                        quota,
                        rollout: None,
                    });
                }
                store::upsert_quota(c, &quota).await?;
                let affected = count_affected(c, plan.id, &quota.resource).await?;
                let rollout = RolloutRow {
                    id: Uuid::now_v7(),
                    plan_id: plan.id,
                    resource: quota.resource.clone(),
                    status: RolloutStatus::Running,
                    cursor: None,
                    tenants_affected: affected.try_into().unwrap_or(i32::MAX),
                    tenants_updated: 0,
                    requested_by: actor_c
                        .id
                        .clone()
                        .unwrap_or_else(|| actor_c.kind.as_str().to_owned()),
                    created_at: Utc::now(),
                    finished_at: None,
                };
                diesel::insert_into(plan_rollouts::table)
                    .values(&rollout)
                    .execute(c)
                    .await?;
                let entry = audit::Change {
                    tenant_id: None,
                    entity_type: "plan",
                    entity_id: plan.slug.clone(),
                    action: "QUOTA_SET",
                    before: before.as_ref().map_or(Value::Null, view),
                    after: view(&quota),
                    metadata: json!({ "tenantsAffected": affected, "rolloutId": rollout.id }),
                };
                audit::record(c, &actor_c, entry).await?;
                Ok(QuotaChange {
                    plan,
                    quota,
                    rollout: Some(rollout),
                })
            }
            .scope_boxed()
        })
        .await?;
    let Some(started) = &change.rollout else {
        return Ok(change);
    };
    // Dashboards see the plan's new quota at once; tenants' rows follow batch by batch.
    app.plans_changed().await;
    let (app_c, id) = (app.clone(), started.id);
    let task = tokio::spawn(async move { run(&app_c, id).await });
    let rollout = match tokio::time::timeout(WAIT, task).await {
        Ok(Ok(Ok(Some(done)))) => Some(done),
        Ok(Ok(Err(e))) => {
            // The job resumes it; the catalogue change itself is committed.
            tracing::warn!(rollout = %id, error = %e.public_message(), "plan rollout interrupted");
            find(app, id).await?
        }
        _ => find(app, id).await?,
    };
    Ok(QuotaChange { rollout, ..change })
}

/// One rollout, for platform admins.
pub async fn find(app: &App, id: Uuid) -> AppResult<Option<RolloutRow>> {
    app.db
        .scoped(Scope::Anonymous, |c| {
            async move {
                Ok(plan_rollouts::table
                    .find(id)
                    .select(RolloutRow::as_select())
                    .first(c)
                    .await
                    .optional()?)
            }
            .scope_boxed()
        })
        .await
}

/// Runs rollout `id` to its end, batch after batch; waits while another instance holds it.
/// Returns the finished row (`None` if there is no such rollout).
pub async fn run(app: &App, id: Uuid) -> AppResult<Option<RolloutRow>> {
    let mut failures = 0;
    loop {
        let step = match batch(app, id).await {
            Ok(step) => step,
            // A deadlock victim or a dropped connection: the batch rolled back whole.
            Err(e) if failures < 3 => {
                failures += 1;
                tracing::warn!(rollout = %id, error = %e.public_message(), "plan rollout batch retried");
                tokio::time::sleep(Duration::from_millis(50 * failures)).await;
                continue;
            }
            Err(e) => return Err(e),
        };
        match step {
            Step::Missing => return Ok(None),
            // Finished by another instance, which announced it.
            Step::Done(row) => return Ok(Some(row)),
            Step::Busy => tokio::time::sleep(Duration::from_millis(25)).await,
            Step::Advanced { last: false } => {}
            Step::Advanced { last: true } => {
                app.plans_changed().await;
                metrics::counter!("tenantry_plan_rollouts_total").increment(1);
                let row = find(app, id).await?;
                if let Some(r) = &row {
                    tracing::info!(rollout = %id, tenants = r.tenants_updated, "plan rollout done");
                }
                return Ok(row);
            }
        }
    }
}

enum Step {
    Missing,
    Busy,
    Done(RolloutRow),
    Advanced { last: bool },
}

#[derive(QueryableByName)]
struct Id {
    #[diesel(sql_type = SqlUuid)]
    id: Uuid,
}

/// One batch of rollout `id` in its own transaction.
async fn batch(app: &App, id: Uuid) -> AppResult<Step> {
    app.db
        .scoped(Scope::Platform("plan_rollout"), |c| {
            async move {
                let Some(row) = plan_rollouts::table
                    .find(id)
                    .select(RolloutRow::as_select())
                    .first(c)
                    .await
                    .optional()?
                else {
                    return Ok(Step::Missing);
                };
                if row.status == RolloutStatus::Done {
                    return Ok(Step::Done(row));
                }
                let Some(row) = plan_rollouts::table
                    .find(id)
                    .filter(plan_rollouts::status.eq(RolloutStatus::Running))
                    .select(RolloutRow::as_select())
                    .for_update()
                    .skip_locked()
                    .first(c)
                    .await
                    .optional()?
                else {
                    return Ok(Step::Busy);
                };
                // The plan row shared: a `setPlanQuota` committing meanwhile is waited for, so
                // this batch writes its value, never an older one over it.
                diesel::sql_query("select 1 from plans where id = $1 for share")
                    .bind::<SqlUuid, _>(row.plan_id.into_inner())
                    .execute(c)
                    .await?;
                let quota = plan_quotas::table
                    .find((row.plan_id, &row.resource))
                    .select(PlanQuotaRow::as_select())
                    .first(c)
                    .await
                    .optional()?;
                // `FOR NO KEY UPDATE`: a plan switch (which updates the row) waits for the
                // batch or goes first, while usage recording (whose foreign keys only take
                // `KEY SHARE` on the tenant) is never blocked by it.
                let tenants: Vec<Uuid> = match &quota {
                    None => Vec::new(),
                    Some(_) => diesel::sql_query(
                        "select id from tenants
                          where plan_id = $1 and id > $2 and status <> 'DELETED'
                          order by id limit $3 for no key update",
                    )
                    .bind::<SqlUuid, _>(row.plan_id.into_inner())
                    .bind::<SqlUuid, _>(row.cursor.unwrap_or(Uuid::nil()))
                    .bind::<BigInt, _>(BATCH)
                    .load::<Id>(c)
                    .await?
                    .into_iter()
                    .map(|r| r.id)
                    .collect(),
                };
                let changed = match &quota {
                    Some(q) if !tenants.is_empty() => apply(c, &tenants, q).await?,
                    _ => 0,
                };
                let last = (tenants.len() as i64) < BATCH;
                diesel::update(plan_rollouts::table.find(id))
                    .set((
                        plan_rollouts::cursor.eq(tenants.last().copied().or(row.cursor)),
                        plan_rollouts::tenants_updated
                            .eq(plan_rollouts::tenants_updated + changed as i32),
                        plan_rollouts::status.eq(if last {
                            RolloutStatus::Done
                        } else {
                            RolloutStatus::Running
                        }),
                        plan_rollouts::finished_at.eq(last.then(Utc::now)),
                    ))
                    .execute(c)
                    .await?;
                Ok(Step::Advanced { last })
            }
            .scope_boxed()
        })
        .await
}

/// The plan's quota `q` on the quota rows of `tenants` that are not overridden (the period
/// starts again when the reset period changes; usage is kept otherwise), and a new row for
/// tenants without one. Returns the rows written.
async fn apply(c: &mut Conn, tenants: &[Uuid], q: &PlanQuotaRow) -> QueryResult<usize> {
    let updated = diesel::sql_query(
        r#"update quotas set
              "limit" = $3, unit = $4, enforcement = $5,
              used = case when reset_period = $6 then used else 0 end,
              period_start = case when reset_period = $6 then period_start
                                  else app_period_start($6, now()) end,
              reset_period = $6, updated_at = now()
            where tenant_id = any($1) and resource = $2 and not overridden
              and ("limit", unit, enforcement, reset_period) is distinct from ($3, $4, $5, $6)"#,
    )
    .bind::<Array<SqlUuid>, _>(tenants)
    .bind::<Text, _>(&q.resource)
    .bind::<BigInt, _>(q.limit)
    .bind::<Text, _>(&q.unit)
    .bind::<Text, _>(q.enforcement.as_str())
    .bind::<Text, _>(q.reset_period.as_str())
    .execute(c)
    .await?;
    let inserted = diesel::sql_query(
        r#"insert into quotas (tenant_id, resource, "limit", used, unit, reset_period,
                               period_start, alert_thresholds, enforcement)
           select t, $2, $3, 0, $4, $6, app_period_start($6, now()), $7, $5
             from unnest($1::uuid[]) as t
           on conflict (tenant_id, resource) do nothing"#,
    )
    .bind::<Array<SqlUuid>, _>(tenants)
    .bind::<Text, _>(&q.resource)
    .bind::<BigInt, _>(q.limit)
    .bind::<Text, _>(&q.unit)
    .bind::<Text, _>(q.enforcement.as_str())
    .bind::<Text, _>(q.reset_period.as_str())
    .bind::<Array<Int4>, _>(DEFAULT_ALERT_THRESHOLDS.as_slice())
    .execute(c)
    .await?;
    Ok(updated + inserted)
}

/// Runs every rollout left RUNNING (an instance stopped mid-way) for the `plan-rollouts`
/// job; rollouts started in the last few seconds are left to the instance that started them.
pub async fn resume(app: &App) -> AppResult<u64> {
    let stale: Vec<Uuid> = app
        .db
        .scoped(Scope::Anonymous, |c| {
            async move {
                Ok(plan_rollouts::table
                    .filter(plan_rollouts::status.eq(RolloutStatus::Running))
                    .filter(
                        plan_rollouts::created_at
                            .lt(Utc::now() - chrono::Duration::seconds(WAIT.as_secs() as i64)),
                    )
                    .order(plan_rollouts::created_at.asc())
                    .select(plan_rollouts::id)
                    .limit(10)
                    .load(c)
                    .await?)
            }
            .scope_boxed()
        })
        .await?;
    let mut n = 0;
    for id in stale {
        // One rollout that keeps failing does not hold up the others.
        match run(app, id).await {
            Ok(Some(_)) => n += 1,
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(rollout = %id, error = %e.public_message(), "plan rollout still failing")
            }
        }
    }
    Ok(n)
}
