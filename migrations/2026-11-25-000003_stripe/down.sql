DROP INDEX IF EXISTS billing_subscriptions_customer;
ALTER TABLE billing_subscriptions DROP COLUMN payment_updated_at;
ALTER TABLE usage_reports DROP COLUMN event_at;
ALTER TABLE usage_reports DROP CONSTRAINT usage_reports_status_check;
ALTER TABLE usage_reports ADD CONSTRAINT usage_reports_status_check
    CHECK (status IN ('PENDING', 'REPORTED', 'FAILED'));
ALTER TABLE usage_reports DROP COLUMN reported_quantity;
DROP INDEX IF EXISTS stripe_events_recent;
DROP INDEX IF EXISTS stripe_events_retry;
ALTER TABLE stripe_events DROP COLUMN note;
ALTER TABLE stripe_events DROP COLUMN next_attempt_at;
