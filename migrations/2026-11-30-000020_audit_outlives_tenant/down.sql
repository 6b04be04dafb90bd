-- NOT VALID: rows of tenants purged meanwhile stay (audit retention is two years); only new
-- rows are checked again.
COMMENT ON COLUMN audit_logs.tenant_id IS NULL;
ALTER TABLE audit_logs ADD CONSTRAINT audit_logs_tenant_id_fkey
    FOREIGN KEY (tenant_id) REFERENCES tenants (id) ON DELETE CASCADE NOT VALID;
