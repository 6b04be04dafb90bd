-- Stripe billing: webhook retries with backoff, and usage reports that resend the same
-- pending meter event (same identifier) until Stripe has acknowledged it.
ALTER TABLE stripe_events ADD COLUMN next_attempt_at timestamptz;
ALTER TABLE stripe_events ADD COLUMN note text;
CREATE INDEX stripe_events_retry ON stripe_events (next_attempt_at) WHERE status = 'FAILED';
CREATE INDEX stripe_events_recent ON stripe_events (received_at DESC, id);

-- `quantity` is the cumulative overage the pending or last report brings Stripe to;
-- `reported_quantity` what Stripe has acknowledged. A report sends the difference.
ALTER TABLE usage_reports ADD COLUMN reported_quantity bigint NOT NULL DEFAULT 0;
-- The meter event's timestamp (the last usage of the target), resent unchanged.
ALTER TABLE usage_reports ADD COLUMN event_at timestamptz NOT NULL DEFAULT now();
ALTER TABLE usage_reports DROP CONSTRAINT usage_reports_status_check;
ALTER TABLE usage_reports ADD CONSTRAINT usage_reports_status_check
    CHECK (status IN ('PENDING', 'REPORTED'));

-- Event time of the last payment outcome (invoice.paid / payment_failed) applied to the
-- status, next to stripe_updated_at (the last subscription state applied).
ALTER TABLE billing_subscriptions ADD COLUMN payment_updated_at timestamptz;

CREATE INDEX billing_subscriptions_customer ON billing_subscriptions (stripe_customer_id)
    WHERE stripe_customer_id IS NOT NULL;
