-- The transactional outbox of tenant notifications (SPEC §12): each event is written in the
-- same transaction as its cause, with a stable id receivers deduplicate on, in order per
-- tenant (`seq`). Delivery (webhooks, e-mail) reads it; this table only ever grows by
-- inserts and is pruned by delivery's retention. Tenant-owned: RLS forced, exported, purged.
CREATE TABLE notification_outbox (
    tenant_id   uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    id          uuid NOT NULL,
    seq         bigint GENERATED ALWAYS AS IDENTITY,
    event_type  text NOT NULL CHECK (event_type IN ('quota.threshold_reached', 'plan.changed',
                    'subscription.trial_ending', 'invoice.payment_failed', 'tenant.suspended',
                    'tenant.reactivated', 'member.invited')),
    data        jsonb NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id)
);
CREATE INDEX notification_outbox_order ON notification_outbox (tenant_id, seq);

ALTER TABLE notification_outbox ENABLE ROW LEVEL SECURITY;
ALTER TABLE notification_outbox FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON notification_outbox
    USING (tenant_id = app_current_tenant() OR app_bypass_rls())
    WITH CHECK (tenant_id = app_current_tenant() OR app_bypass_rls());
