DROP TABLE IF EXISTS audit_logs, stripe_events, usage_reports, plan_change_intents, invoices,
    billing_subscriptions, quota_alerts, usage_hourly, usage_records, quotas, configs,
    tenant_features, tenants, config_defaults, plan_quotas, plan_features, feature_definitions,
    plan_prices, plans CASCADE;
DROP FUNCTION IF EXISTS app_bypass_rls();
DROP FUNCTION IF EXISTS app_current_tenant();
