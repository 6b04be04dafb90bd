-- API keys for a tenant's own back ends (SPEC §11, issue 15).
--
-- Tenant-owned like every other tenant table: `tenant_id` in the primary key, RLS ENABLEd and
-- FORCEd with the one policy, rows gone with the tenant (purge cascades). The secret itself
-- is never stored: `secret_hash` is SHA-256 of the whole `tnt_...` secret (256 random bits,
-- so a fast hash is enough), unique so authentication is one index look-up before any tenant
-- is known. `prefix` (`tnt_` + 8 characters) is what the API shows to tell keys apart.
CREATE TABLE api_keys (
    tenant_id     uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    id            uuid NOT NULL,
    name          text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 100),
    prefix        text NOT NULL,
    secret_hash   bytea NOT NULL CHECK (octet_length(secret_hash) = 32),
    role          text NOT NULL CHECK (role IN ('tenant_admin', 'tenant_member')),
    created_by    text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz,
    last_used_at  timestamptz,
    revoked_at    timestamptz,
    -- The key this one replaced (`rotateApiKey`); that key expires after the overlap window.
    rotated_from  uuid,
    PRIMARY KEY (tenant_id, id)
);
CREATE UNIQUE INDEX api_keys_secret_hash ON api_keys (secret_hash);
CREATE UNIQUE INDEX api_keys_id ON api_keys (id);
CREATE UNIQUE INDEX api_keys_rotated_from ON api_keys (tenant_id, rotated_from) WHERE rotated_from IS NOT NULL;

ALTER TABLE api_keys ENABLE ROW LEVEL SECURITY;
ALTER TABLE api_keys FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON api_keys
    USING (tenant_id = app_current_tenant() OR app_bypass_rls())
    WITH CHECK (tenant_id = app_current_tenant() OR app_bypass_rls());

-- An API key's actions are audited as the key (`actor_type` API_KEY, `actor_id` apikey:<id>).
ALTER TABLE audit_logs DROP CONSTRAINT audit_logs_actor_type_check;
ALTER TABLE audit_logs ADD CONSTRAINT audit_logs_actor_type_check
    CHECK (actor_type IN ('USER', 'ADMIN', 'WEBHOOK', 'SYSTEM', 'SERVICE', 'ANONYMOUS', 'API_KEY'));
