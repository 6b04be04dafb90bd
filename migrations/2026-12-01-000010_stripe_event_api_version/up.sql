-- The API version each Stripe event was rendered in (the endpoint's pinned version), so an
-- event that cannot be read can be matched to the layout it came in.
ALTER TABLE stripe_events ADD COLUMN api_version text;
