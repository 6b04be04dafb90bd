-- Delivery of the notification outbox (SPEC §12): tenants' webhook endpoints and one delivery
-- row per (event, channel, endpoint). One dispatcher at a time turns committed outbox rows
-- into deliveries (their `seq` is the order they are delivered in, per lane: one lane per
-- endpoint, one for the tenant's mail); workers on any instance claim a due lane head (FOR
-- UPDATE SKIP LOCKED) with a lease (`next_attempt_at` pushed past the send), send, and record
-- the outcome; a killed worker's delivery is claimed again when its lease ends.

-- An internal event: an endpoint disabled after failing throughout, told to the tenant by mail.
ALTER TABLE notification_outbox DROP CONSTRAINT notification_outbox_event_type_check;
ALTER TABLE notification_outbox ADD CONSTRAINT notification_outbox_event_type_check
    CHECK (event_type IN ('quota.threshold_reached', 'plan.changed', 'subscription.trial_ending',
        'invoice.payment_failed', 'tenant.suspended', 'tenant.reactivated', 'member.invited',
        'webhook_endpoint.disabled'));
ALTER TABLE notification_outbox ADD COLUMN dispatched_at timestamptz;
CREATE INDEX notification_outbox_undispatched ON notification_outbox (seq)
    WHERE dispatched_at IS NULL;

-- The signing secret is needed to sign, so it is sealed (AES-256-GCM with
-- CONFIG_ENCRYPTION_KEY, bound to tenant and endpoint), never stored in clear. After a
-- rotation the previous secret also signs until `previous_secret_expires_at`.
CREATE TABLE webhook_endpoints (
    tenant_id                  uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    id                         uuid NOT NULL,
    url                        text NOT NULL CHECK (char_length(url) BETWEEN 8 AND 2048),
    events                     text[] NOT NULL CHECK (cardinality(events) >= 1),
    enabled                    boolean NOT NULL DEFAULT true,
    secret_prefix              text NOT NULL,
    secret_sealed              bytea NOT NULL,
    previous_secret_sealed     bytea,
    previous_secret_expires_at timestamptz,
    disabled_reason            text,
    created_at                 timestamptz NOT NULL DEFAULT now(),
    updated_at                 timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id)
);
CREATE UNIQUE INDEX webhook_endpoints_id ON webhook_endpoints (id);

CREATE TABLE notification_deliveries (
    tenant_id         uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    id                uuid NOT NULL,
    event_id          uuid NOT NULL,
    event_seq         bigint NOT NULL,
    -- The delivery order within a lane: the order the dispatcher saw events commit.
    seq               bigint GENERATED ALWAYS AS IDENTITY,
    event_type        text NOT NULL,
    channel           text NOT NULL CHECK (channel IN ('WEBHOOK', 'EMAIL')),
    -- WEBHOOK only; deleting the endpoint deletes its delivery log.
    endpoint_id       uuid,
    -- A manual redelivery (`redeliverWebhook`) names the delivery it repeats.
    redelivery_of     uuid,
    status            text NOT NULL DEFAULT 'PENDING'
                          CHECK (status IN ('PENDING', 'SUCCEEDED', 'FAILED', 'SKIPPED')),
    attempts          integer NOT NULL DEFAULT 0,
    last_status_code  integer,
    last_error        text,
    next_attempt_at   timestamptz NOT NULL DEFAULT now(),
    first_attempt_at  timestamptz,
    finished_at       timestamptz,
    created_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id),
    FOREIGN KEY (tenant_id, endpoint_id) REFERENCES webhook_endpoints (tenant_id, id) ON DELETE CASCADE,
    CHECK ((channel = 'WEBHOOK') = (endpoint_id IS NOT NULL))
);
CREATE UNIQUE INDEX notification_deliveries_id ON notification_deliveries (id);
-- Exactly one first delivery per event and endpoint, one mail per event (dispatch is
-- idempotent across instances).
CREATE UNIQUE INDEX notification_deliveries_once_hook ON notification_deliveries (event_id, endpoint_id)
    WHERE channel = 'WEBHOOK' AND redelivery_of IS NULL;
CREATE UNIQUE INDEX notification_deliveries_once_mail ON notification_deliveries (event_id)
    WHERE channel = 'EMAIL';
-- The due ones, and each lane's head.
CREATE INDEX notification_deliveries_due ON notification_deliveries (next_attempt_at)
    WHERE status = 'PENDING';
CREATE INDEX notification_deliveries_lane ON notification_deliveries (tenant_id, channel, endpoint_id, seq)
    WHERE status = 'PENDING';
CREATE INDEX notification_deliveries_log ON notification_deliveries (tenant_id, created_at, id);

DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['webhook_endpoints', 'notification_deliveries'] LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format('CREATE POLICY tenant_isolation ON %I
            USING (tenant_id = app_current_tenant() OR app_bypass_rls())
            WITH CHECK (tenant_id = app_current_tenant() OR app_bypass_rls())', t);
    END LOOP;
END $$;
