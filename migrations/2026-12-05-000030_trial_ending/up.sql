-- `subscription.trial_ending` (SPEC §12) is told once per trial, 3 days before it ends: the
-- trial end that was told. A new or extended trial has another end, so it is told again.
ALTER TABLE billing_subscriptions ADD COLUMN trial_ending_notified_for timestamptz;
