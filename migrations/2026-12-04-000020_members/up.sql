-- Members and invitations (SPEC §11): who belongs to a tenant, with which role. Identity stays
-- with the customer's identity provider (the JWT `sub` is `user_id`); Tenantry keeps the
-- membership. Tenant-owned like every other table: RLS forced, the one policy, exported and
-- purged with the tenant (the FK cascades).
CREATE TABLE members (
    tenant_id     uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    id            uuid NOT NULL,
    -- The JWT `sub`; null while the member is INVITED and has not accepted yet.
    user_id       text CHECK (char_length(user_id) BETWEEN 1 AND 255),
    email         text CHECK (char_length(email) BETWEEN 3 AND 254),
    role          text NOT NULL CHECK (role IN ('OWNER', 'ADMIN', 'MEMBER', 'VIEWER')),
    -- REMOVED rows are kept (hidden from the API) so that the removed person's still-valid
    -- tokens are refused; a new invitation of the same person replaces the row.
    status        text NOT NULL CHECK (status IN ('INVITED', 'ACTIVE', 'DISABLED', 'REMOVED')),
    invited_by    text,
    joined_at     timestamptz,
    last_seen_at  timestamptz,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id)
);
CREATE UNIQUE INDEX members_user ON members (tenant_id, user_id) WHERE user_id IS NOT NULL;
CREATE UNIQUE INDEX members_email ON members (tenant_id, lower(email))
    WHERE email IS NOT NULL AND status <> 'REMOVED';
CREATE INDEX members_list ON members (tenant_id, created_at, id);

-- A single-use invitation: the token is shown once (in `inviteMember`'s answer) and stored as
-- its SHA-256 (a 256-bit random secret needs no slow hash). EXPIRED is computed from
-- `expires_at`, never stored.
CREATE TABLE invitations (
    tenant_id    uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    id           uuid NOT NULL,
    member_id    uuid NOT NULL,
    email        text NOT NULL,
    role         text NOT NULL CHECK (role IN ('OWNER', 'ADMIN', 'MEMBER', 'VIEWER')),
    status       text NOT NULL DEFAULT 'PENDING' CHECK (status IN ('PENDING', 'ACCEPTED', 'REVOKED')),
    token_hash   text NOT NULL,
    invited_by   text NOT NULL,
    expires_at   timestamptz NOT NULL,
    accepted_by  text,
    accepted_at  timestamptz,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id)
);
CREATE UNIQUE INDEX invitations_token ON invitations (token_hash);

DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['members', 'invitations'] LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format('CREATE POLICY tenant_isolation ON %I
            USING (tenant_id = app_current_tenant() OR app_bypass_rls())
            WITH CHECK (tenant_id = app_current_tenant() OR app_bypass_rls())', t);
    END LOOP;
END $$;

-- Each tenant's owner (`createTenant`'s ownerId) is its first OWNER.
SELECT set_config('app.bypass_rls', 'on', true);
INSERT INTO members (tenant_id, id, user_id, role, status, joined_at, created_at)
SELECT id, gen_random_uuid(), owner_id, 'OWNER', 'ACTIVE', created_at, created_at
  FROM tenants WHERE owner_id IS NOT NULL AND char_length(owner_id) BETWEEN 1 AND 255;
SELECT set_config('app.bypass_rls', '', true);
