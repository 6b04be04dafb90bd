DROP FUNCTION app_usage_cap(bigint, text, boolean, integer);
ALTER TABLE plans DROP COLUMN overage_limit_percent;
ALTER TABLE tenant_features DROP COLUMN set_by_type;
