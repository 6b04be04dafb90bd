DROP INDEX IF EXISTS usage_records_recent_keys;
DROP FUNCTION IF EXISTS app_period_start(text, timestamptz);
