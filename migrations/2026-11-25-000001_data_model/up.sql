-- Tenantry data model (SPEC §4), created whole so later work adds behaviour, not schema.
--
-- Isolation: every table that holds tenant data has a `tenant_id` column (NOT NULL and part
-- of the primary key, except the two platform tables `audit_logs` and `stripe_events` whose
-- rows may belong to no tenant), RLS enabled and FORCEd, and the one policy below. The scope
-- is transaction-local (`select set_config('app.tenant_id', $1, true)`), so a pooled
-- connection never carries it to the next unit of work. The platform bypass is its own,
-- explicit setting (`app.bypass_rls = 'on'`), set only by the server's platform scope.

CREATE FUNCTION app_current_tenant() RETURNS uuid
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$ SELECT nullif(current_setting('app.tenant_id', true), '')::uuid $$;

CREATE FUNCTION app_bypass_rls() RETURNS boolean
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$ SELECT coalesce(current_setting('app.bypass_rls', true), '') = 'on' $$;

-- ---------------------------------------------------------------- platform catalogue

CREATE TABLE plans (
    id                     uuid PRIMARY KEY,
    slug                   text NOT NULL UNIQUE CHECK (slug ~ '^[a-z0-9-]{1,50}$'),
    name                   text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 100),
    description            text NOT NULL DEFAULT '',
    sort_order             integer NOT NULL DEFAULT 0,
    trial_days             integer NOT NULL DEFAULT 0 CHECK (trial_days >= 0),
    rate_limit_per_minute  integer NOT NULL CHECK (rate_limit_per_minute > 0),
    is_active              boolean NOT NULL DEFAULT true,
    created_at             timestamptz NOT NULL DEFAULT now(),
    updated_at             timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE plan_prices (
    id               uuid PRIMARY KEY,
    plan_id          uuid NOT NULL REFERENCES plans (id) ON DELETE CASCADE,
    region           text NOT NULL CHECK (region IN ('US', 'CA', 'EU', 'GB', 'AU')),
    currency         text NOT NULL CHECK (currency ~ '^[a-z]{3}$'),
    billing_cycle    text NOT NULL CHECK (billing_cycle IN ('MONTHLY', 'YEARLY')),
    amount           bigint NOT NULL CHECK (amount >= 0),
    stripe_price_id  text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (plan_id, region, billing_cycle)
);
CREATE UNIQUE INDEX plan_prices_stripe_price_id ON plan_prices (stripe_price_id) WHERE stripe_price_id IS NOT NULL;

CREATE TABLE feature_definitions (
    key              text PRIMARY KEY CHECK (key ~ '^[a-z][a-z0-9_]{0,63}$'),
    name             text NOT NULL,
    description      text NOT NULL DEFAULT '',
    default_enabled  boolean NOT NULL DEFAULT false,
    created_at       timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE plan_features (
    plan_id      uuid NOT NULL REFERENCES plans (id) ON DELETE CASCADE,
    feature_key  text NOT NULL REFERENCES feature_definitions (key) ON DELETE CASCADE,
    PRIMARY KEY (plan_id, feature_key)
);

CREATE TABLE plan_quotas (
    plan_id       uuid NOT NULL REFERENCES plans (id) ON DELETE CASCADE,
    resource      text NOT NULL CHECK (resource ~ '^[a-z][a-z0-9_]{0,63}$'),
    "limit"       bigint NOT NULL CHECK ("limit" >= 0),
    unit          text NOT NULL DEFAULT 'count',
    reset_period  text NOT NULL CHECK (reset_period IN ('HOURLY', 'DAILY', 'WEEKLY', 'MONTHLY', 'NEVER')),
    enforcement   text NOT NULL DEFAULT 'HARD' CHECK (enforcement IN ('HARD', 'SOFT')),
    PRIMARY KEY (plan_id, resource)
);

-- Defaults of the tenant configuration layer; resetConfig(category) restores these.
CREATE TABLE config_defaults (
    category   text NOT NULL,
    key        text NOT NULL,
    value      jsonb NOT NULL,
    data_type  text NOT NULL CHECK (data_type IN ('STRING', 'NUMBER', 'BOOLEAN', 'JSON')),
    PRIMARY KEY (category, key)
);

-- ---------------------------------------------------------------- tenants

CREATE TABLE tenants (
    id                  uuid PRIMARY KEY,
    name                text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 100),
    slug                text NOT NULL CHECK (slug ~ '^[a-z0-9-]{1,50}$'),
    domain              text CHECK (domain IS NULL OR char_length(domain) <= 253),
    status              text NOT NULL DEFAULT 'ACTIVE' CHECK (status IN ('ACTIVE', 'SUSPENDED', 'DELETED')),
    plan_id             uuid NOT NULL REFERENCES plans (id),
    owner_id            text,
    region              text NOT NULL DEFAULT 'US' CHECK (region IN ('US', 'CA', 'EU', 'GB', 'AU')),
    settings            jsonb NOT NULL DEFAULT '{}'::jsonb,
    stripe_customer_id  text,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    suspended_at        timestamptz,
    suspend_reason      text,
    deleted_at          timestamptz,
    CHECK ((status = 'DELETED') = (deleted_at IS NOT NULL))
);
-- A deleted tenant keeps its slug and domain until it is purged, so it can be restored.
CREATE UNIQUE INDEX tenants_slug ON tenants (slug);
CREATE UNIQUE INDEX tenants_domain ON tenants (lower(domain)) WHERE domain IS NOT NULL;
CREATE UNIQUE INDEX tenants_stripe_customer ON tenants (stripe_customer_id) WHERE stripe_customer_id IS NOT NULL;
CREATE INDEX tenants_created ON tenants (created_at, id);

-- ---------------------------------------------------------------- tenant-owned

CREATE TABLE tenant_features (
    tenant_id    uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    feature_key  text NOT NULL REFERENCES feature_definitions (key) ON DELETE CASCADE,
    enabled      boolean NOT NULL,
    expires_at   timestamptz,
    reason       text,
    set_by       text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, feature_key)
);

CREATE TABLE configs (
    tenant_id        uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    category         text NOT NULL CHECK (category ~ '^[a-z][a-z0-9_]{0,63}$'),
    key              text NOT NULL CHECK (char_length(key) BETWEEN 1 AND 128),
    value            jsonb,
    encrypted_value  bytea,
    data_type        text NOT NULL CHECK (data_type IN ('STRING', 'NUMBER', 'BOOLEAN', 'JSON')),
    encrypted        boolean NOT NULL DEFAULT false,
    updated_by       text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, category, key),
    CHECK (encrypted = (encrypted_value IS NOT NULL) AND encrypted = (value IS NULL))
);

CREATE TABLE quotas (
    tenant_id         uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    resource          text NOT NULL CHECK (resource ~ '^[a-z][a-z0-9_]{0,63}$'),
    "limit"           bigint NOT NULL CHECK ("limit" >= 0),
    used              bigint NOT NULL DEFAULT 0 CHECK (used >= 0),
    unit              text NOT NULL DEFAULT 'count',
    reset_period      text NOT NULL CHECK (reset_period IN ('HOURLY', 'DAILY', 'WEEKLY', 'MONTHLY', 'NEVER')),
    period_start      timestamptz NOT NULL,
    alert_thresholds  integer[] NOT NULL DEFAULT '{75,90,95,100}',
    enforcement       text NOT NULL DEFAULT 'HARD' CHECK (enforcement IN ('HARD', 'SOFT')),
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, resource)
);

-- One row per acknowledged increment: the durable record. `used_after`/`limit_at` keep the
-- answer given, so a repeated idempotency key returns the first result.
CREATE TABLE usage_records (
    tenant_id        uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    id               bigint GENERATED ALWAYS AS IDENTITY,
    resource         text NOT NULL,
    amount           bigint NOT NULL CHECK (amount > 0),
    period_start     timestamptz NOT NULL,
    idempotency_key  text CHECK (idempotency_key IS NULL OR char_length(idempotency_key) <= 255),
    used_after       bigint NOT NULL,
    limit_at         bigint NOT NULL,
    recorded_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id)
);
CREATE UNIQUE INDEX usage_records_idempotency ON usage_records (tenant_id, idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX usage_records_series ON usage_records (tenant_id, resource, recorded_at);

-- Hourly roll-up of usage for analytics (time series by hour/day/month).
CREATE TABLE usage_hourly (
    tenant_id     uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    resource      text NOT NULL,
    hour_start    timestamptz NOT NULL,
    amount        bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, resource, hour_start)
);

CREATE TABLE quota_alerts (
    tenant_id     uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    id            uuid NOT NULL,
    resource      text NOT NULL,
    threshold     integer NOT NULL CHECK (threshold BETWEEN 1 AND 1000),
    used          bigint NOT NULL,
    "limit"       bigint NOT NULL,
    period_start  timestamptz NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, resource, period_start, threshold)
);
CREATE INDEX quota_alerts_recent ON quota_alerts (tenant_id, created_at DESC, id);

-- Mirror of the tenant's Stripe subscription (Stripe is the source of truth).
CREATE TABLE billing_subscriptions (
    tenant_id               uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    status                  text NOT NULL CHECK (status IN ('TRIALING', 'ACTIVE', 'PAST_DUE', 'CANCELED', 'EXPIRED', 'INCOMPLETE', 'UNPAID')),
    plan_id                 uuid NOT NULL REFERENCES plans (id),
    billing_cycle           text NOT NULL DEFAULT 'MONTHLY' CHECK (billing_cycle IN ('MONTHLY', 'YEARLY')),
    stripe_customer_id      text,
    stripe_subscription_id  text,
    current_period_start    timestamptz,
    current_period_end      timestamptz,
    trial_end               timestamptz,
    cancel_at_period_end    boolean NOT NULL DEFAULT false,
    canceled_at             timestamptz,
    grace_period_end        timestamptz,
    stripe_updated_at       timestamptz,
    created_at              timestamptz NOT NULL DEFAULT now(),
    updated_at              timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id)
);
CREATE UNIQUE INDEX billing_subscriptions_stripe ON billing_subscriptions (stripe_subscription_id) WHERE stripe_subscription_id IS NOT NULL;

CREATE TABLE invoices (
    tenant_id           uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    id                  uuid NOT NULL,
    stripe_invoice_id   text NOT NULL,
    amount_due          bigint NOT NULL DEFAULT 0,
    amount_paid         bigint NOT NULL DEFAULT 0,
    currency            text NOT NULL,
    status              text NOT NULL CHECK (status IN ('DRAFT', 'OPEN', 'PAID', 'VOID', 'UNCOLLECTIBLE')),
    period_start        timestamptz,
    period_end          timestamptz,
    due_date            timestamptz,
    paid_at             timestamptz,
    hosted_invoice_url  text,
    stripe_updated_at   timestamptz,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id)
);
CREATE UNIQUE INDEX invoices_stripe ON invoices (stripe_invoice_id);
CREATE INDEX invoices_recent ON invoices (tenant_id, created_at DESC, id);

CREATE TABLE plan_change_intents (
    tenant_id               uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    id                      uuid NOT NULL,
    from_plan_id            uuid NOT NULL REFERENCES plans (id),
    to_plan_id              uuid NOT NULL REFERENCES plans (id),
    billing_cycle           text NOT NULL CHECK (billing_cycle IN ('MONTHLY', 'YEARLY')),
    status                  text NOT NULL DEFAULT 'PENDING' CHECK (status IN ('PENDING', 'COMPLETED', 'FAILED', 'EXPIRED')),
    version                 integer NOT NULL DEFAULT 1,
    stripe_subscription_id  text,
    error                   text,
    requested_by            text,
    expires_at              timestamptz NOT NULL,
    completed_at            timestamptz,
    created_at              timestamptz NOT NULL DEFAULT now(),
    updated_at              timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX plan_change_intents_pending ON plan_change_intents (expires_at) WHERE status = 'PENDING';

-- Usage reported to Stripe as meter events; the unique key makes the job idempotent.
CREATE TABLE usage_reports (
    tenant_id     uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    resource      text NOT NULL,
    period_start  timestamptz NOT NULL,
    quantity      bigint NOT NULL,
    identifier    text NOT NULL,
    status        text NOT NULL DEFAULT 'PENDING' CHECK (status IN ('PENDING', 'REPORTED', 'FAILED')),
    attempts      integer NOT NULL DEFAULT 0,
    last_error    text,
    reported_at   timestamptz,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, resource, period_start)
);

-- ---------------------------------------------------------------- platform tables with tenant attribution

-- Stripe events, processed exactly once (the primary key is Stripe's event id).
CREATE TABLE stripe_events (
    id             text PRIMARY KEY,
    event_type     text NOT NULL,
    tenant_id      uuid REFERENCES tenants (id) ON DELETE CASCADE,
    payload        jsonb NOT NULL,
    status         text NOT NULL DEFAULT 'PENDING' CHECK (status IN ('PENDING', 'PROCESSED', 'FAILED', 'IGNORED')),
    attempts       integer NOT NULL DEFAULT 0,
    last_error     text,
    event_created  timestamptz NOT NULL,
    received_at    timestamptz NOT NULL DEFAULT now(),
    processed_at   timestamptz
);
CREATE INDEX stripe_events_failed ON stripe_events (received_at) WHERE status = 'FAILED';

CREATE TABLE audit_logs (
    id           uuid PRIMARY KEY,
    tenant_id    uuid REFERENCES tenants (id) ON DELETE CASCADE,
    entity_type  text NOT NULL,
    entity_id    text NOT NULL,
    action       text NOT NULL,
    actor_type   text NOT NULL CHECK (actor_type IN ('USER', 'ADMIN', 'WEBHOOK', 'SYSTEM', 'SERVICE')),
    actor_id     text,
    changes      jsonb NOT NULL DEFAULT '{}'::jsonb,
    metadata     jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX audit_logs_tenant ON audit_logs (tenant_id, created_at DESC, id);
CREATE INDEX audit_logs_created ON audit_logs (created_at);

-- ---------------------------------------------------------------- row level security

ALTER TABLE tenants ENABLE ROW LEVEL SECURITY;
ALTER TABLE tenants FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON tenants
    USING (id = app_current_tenant() OR app_bypass_rls())
    WITH CHECK (id = app_current_tenant() OR app_bypass_rls());

DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['tenant_features', 'configs', 'quotas', 'usage_records',
        'usage_hourly', 'quota_alerts', 'billing_subscriptions', 'invoices',
        'plan_change_intents', 'usage_reports', 'stripe_events', 'audit_logs']
    LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format('CREATE POLICY tenant_isolation ON %I
            USING (tenant_id = app_current_tenant() OR app_bypass_rls())
            WITH CHECK (tenant_id = app_current_tenant() OR app_bypass_rls())', t);
    END LOOP;
END $$;
