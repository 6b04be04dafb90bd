-- A custom domain a tenant admin sets is a claim until the tenant proves control of it (DNS
-- TXT `_tenantry-challenge.<domain>` = token); `tenants.domain` keeps meaning the verified
-- domain, the only one Host resolution uses. Claims do not reserve a name: several tenants
-- may claim one, only one verifies it (the unique index on lower(tenants.domain)). One claim
-- per tenant; an expired claim counts as none.
CREATE TABLE tenant_domain_claims (
    tenant_id   uuid PRIMARY KEY REFERENCES tenants (id) ON DELETE CASCADE,
    domain      text NOT NULL CHECK (char_length(domain) <= 253),
    token       text NOT NULL,
    expires_at  timestamptz NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX tenant_domain_claims_expires ON tenant_domain_claims (expires_at);

ALTER TABLE tenant_domain_claims ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenant_domain_claims FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON tenant_domain_claims
    USING (tenant_id = app_current_tenant() OR app_bypass_rls())
    WITH CHECK (tenant_id = app_current_tenant() OR app_bypass_rls());
