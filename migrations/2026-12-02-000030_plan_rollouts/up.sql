-- A plan's quota changes reach the tenants on it (SPEC §13, "overrides kept").
--
-- `quotas.overridden`: the limit was set for this tenant by a platform admin (`setQuota`), so
-- a change of its plan's quota leaves it alone; a plan switch gives the tenant the new plan's
-- quotas and clears it on those. Rows that differ from their plan's quota (or, for resources
-- the plan does not name, from the defaults) today are such overrides.
ALTER TABLE quotas ADD COLUMN overridden boolean NOT NULL DEFAULT false;

SELECT set_config('app.bypass_rls', 'on', true);
UPDATE quotas q SET overridden = true
FROM tenants t, plan_quotas pq
WHERE t.id = q.tenant_id AND pq.plan_id = t.plan_id AND pq.resource = q.resource
  AND (pq."limit" <> q."limit" OR pq.enforcement <> q.enforcement
       OR pq.reset_period <> q.reset_period OR pq.unit <> q.unit);
-- A quota on a resource its plan does not name is either one of the defaults every tenant gets
-- (`DEFAULT_QUOTAS` in src/quotas/model.rs) or was set for this tenant by hand.
UPDATE quotas q SET overridden = true
FROM tenants t
WHERE t.id = q.tenant_id
  AND NOT EXISTS (SELECT 1 FROM plan_quotas pq WHERE pq.plan_id = t.plan_id AND pq.resource = q.resource)
  AND NOT EXISTS (
      SELECT 1 FROM (VALUES
          ('users', 100::bigint, 'users', 'NEVER'),
          ('storage', 10737418240::bigint, 'bytes', 'NEVER'),
          ('api_calls', 10000::bigint, 'calls', 'MONTHLY'),
          ('bandwidth', 107374182400::bigint, 'bytes', 'MONTHLY')) AS d(resource, lim, unit, period)
      WHERE d.resource = q.resource AND d.lim = q."limit" AND d.unit = q.unit
        AND d.period = q.reset_period AND q.enforcement = 'HARD');
SELECT set_config('app.bypass_rls', '', true);

-- One row per `setPlanQuota`: the change walks the plan's tenants in batches (one short
-- transaction each, tenants in id order after `cursor`), so no statement locks every tenant
-- at once and an interrupted rollout resumes where it stopped (the `plan-rollouts` job).
-- Platform data like `plans`: no tenant rows, no RLS.
CREATE TABLE plan_rollouts (
    id                uuid PRIMARY KEY,
    plan_id           uuid NOT NULL REFERENCES plans (id) ON DELETE CASCADE,
    resource          text NOT NULL,
    status            text NOT NULL DEFAULT 'RUNNING' CHECK (status IN ('RUNNING', 'DONE')),
    cursor            uuid,
    tenants_affected  integer NOT NULL DEFAULT 0,
    tenants_updated   integer NOT NULL DEFAULT 0,
    requested_by      text NOT NULL,
    created_at        timestamptz NOT NULL DEFAULT now(),
    finished_at       timestamptz
);
CREATE INDEX plan_rollouts_running ON plan_rollouts (created_at) WHERE status = 'RUNNING';
CREATE INDEX tenants_plan_id ON tenants (plan_id, id);
