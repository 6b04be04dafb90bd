ALTER TABLE billing_subscriptions DROP COLUMN payment_outcome;
