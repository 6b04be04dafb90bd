DROP TABLE notification_deliveries;
DROP TABLE webhook_endpoints;
DROP INDEX notification_outbox_undispatched;
ALTER TABLE notification_outbox DROP COLUMN dispatched_at;
DELETE FROM notification_outbox WHERE event_type = 'webhook_endpoint.disabled';
ALTER TABLE notification_outbox DROP CONSTRAINT notification_outbox_event_type_check;
ALTER TABLE notification_outbox ADD CONSTRAINT notification_outbox_event_type_check
    CHECK (event_type IN ('quota.threshold_reached', 'plan.changed', 'subscription.trial_ending',
        'invoice.payment_failed', 'tenant.suspended', 'tenant.reactivated', 'member.invited'));
