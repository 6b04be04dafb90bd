-- Audit rows are kept two years (SPEC §4), also after their tenant is purged 30 days after
-- deletion. The foreign key's ON DELETE CASCADE deleted the whole trail with the tenant, so
-- audit_logs.tenant_id becomes a plain value: no foreign key, same column, same index, same
-- RLS policy (tenant_id = app_current_tenant() OR app_bypass_rls()), so a purged tenant's
-- rows are readable by platform admins only. The audit retention job deletes them after two
-- years like every other row.
ALTER TABLE audit_logs DROP CONSTRAINT IF EXISTS audit_logs_tenant_id_fkey;
COMMENT ON COLUMN audit_logs.tenant_id IS
    'tenant the entry concerns; deliberately no foreign key: the trail outlives a purged tenant';
