ALTER TABLE stripe_events DROP COLUMN api_version;
