-- The newest payment outcome applied (PAID or FAILED, at payment_updated_at). A subscription
-- state Stripe created before that outcome but delivered after it gets the outcome applied on
-- top, so the result does not depend on the delivery order.
ALTER TABLE billing_subscriptions ADD COLUMN payment_outcome text
    CHECK (payment_outcome IN ('PAID', 'FAILED'));
