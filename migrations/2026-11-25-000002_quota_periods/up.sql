-- Start of the quota period containing `at`, on UTC calendar boundaries (weeks start Monday).
-- Mirrors quotas::model::ResetPeriod::period_start; the metering UPDATE uses it so a new
-- period starts from zero atomically with the increment.
CREATE FUNCTION app_period_start(period text, at timestamptz) RETURNS timestamptz
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$
    SELECT CASE period
        WHEN 'HOURLY'  THEN date_trunc('hour',  at, 'UTC')
        WHEN 'DAILY'   THEN date_trunc('day',   at, 'UTC')
        WHEN 'WEEKLY'  THEN date_trunc('week',  at, 'UTC')
        WHEN 'MONTHLY' THEN date_trunc('month', at, 'UTC')
        ELSE 'epoch'::timestamptz
    END
    $$;

-- Idempotency keys are looked up per tenant among recent records.
CREATE INDEX usage_records_recent_keys ON usage_records (recorded_at) WHERE idempotency_key IS NOT NULL;
