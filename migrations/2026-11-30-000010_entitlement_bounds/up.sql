-- Override provenance: who set an override (the actor type, as the audit log names it), so a
-- tenant admin cannot undo what a platform actor decided. Expand-only: old code ignores it.
ALTER TABLE tenant_features ADD COLUMN set_by_type text;

-- Existing overrides: the actor type of their latest audit entry (NULL = unknown, treated as
-- set by the tenant).
UPDATE tenant_features f
   SET set_by_type = a.actor_type
  FROM (SELECT DISTINCT ON (tenant_id, entity_id) tenant_id, entity_id, actor_type
          FROM audit_logs
         WHERE entity_type = 'feature' AND action IN ('CREATE', 'UPDATE')
         ORDER BY tenant_id, entity_id, created_at DESC) a
 WHERE a.tenant_id = f.tenant_id AND a.entity_id = f.feature_key;

-- Per-plan ceiling of SOFT-quota overage in one period, in percent of the limit (100 = usage
-- may reach twice the limit).
ALTER TABLE plans ADD COLUMN overage_limit_percent integer NOT NULL DEFAULT 100
    CHECK (overage_limit_percent BETWEEN 0 AND 10000);

-- The most a quota's usage may reach in one period: the limit for HARD quotas (and for
-- callers not allowed into overage), the limit plus the plan's overage ceiling for SOFT ones.
-- numeric arithmetic, so a huge limit cannot overflow bigint.
CREATE FUNCTION app_usage_cap(p_limit bigint, p_enforcement text, p_overage boolean, p_percent integer)
RETURNS bigint LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN p_enforcement = 'SOFT' AND p_overage
                THEN least(floor(p_limit::numeric * (100 + coalesce(p_percent, 100)) / 100),
                           9223372036854775807)::bigint
                ELSE p_limit END
$$;
