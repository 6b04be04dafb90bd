DROP INDEX tenants_plan_id;
DROP TABLE plan_rollouts;
ALTER TABLE quotas DROP COLUMN overridden;
