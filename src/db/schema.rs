//! Diesel table definitions. Mirrors `migrations/`; the `schema_matches_database` test
//! compares the two, so edit both together.
// @generated-style: kept in the shape `diesel print-schema` writes.

diesel::table! {
    api_keys (tenant_id, id) {
        tenant_id -> Uuid,
        id -> Uuid,
        name -> Text,
        prefix -> Text,
        secret_hash -> Bytea,
        role -> Text,
        created_by -> Text,
        created_at -> Timestamptz,
        expires_at -> Nullable<Timestamptz>,
        last_used_at -> Nullable<Timestamptz>,
        revoked_at -> Nullable<Timestamptz>,
        rotated_from -> Nullable<Uuid>,
    }
}

diesel::table! {
    audit_logs (id) {
        id -> Uuid,
        tenant_id -> Nullable<Uuid>,
        entity_type -> Text,
        entity_id -> Text,
        action -> Text,
        actor_type -> Text,
        actor_id -> Nullable<Text>,
        changes -> Jsonb,
        metadata -> Jsonb,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    billing_subscriptions (tenant_id) {
        tenant_id -> Uuid,
        status -> Text,
        plan_id -> Uuid,
        billing_cycle -> Text,
        stripe_customer_id -> Nullable<Text>,
        stripe_subscription_id -> Nullable<Text>,
        current_period_start -> Nullable<Timestamptz>,
        current_period_end -> Nullable<Timestamptz>,
        trial_end -> Nullable<Timestamptz>,
        cancel_at_period_end -> Bool,
        canceled_at -> Nullable<Timestamptz>,
        grace_period_end -> Nullable<Timestamptz>,
        stripe_updated_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        payment_updated_at -> Nullable<Timestamptz>,
        // Not declared: `trial_ending_notified_for` (timestamptz, 2026-12-05-000030), read and
        // written by the trial-ending job's SQL only; a 17th column would need diesel's
        // `32-column-tables` feature (a slower build of diesel for one column).
    }
}

diesel::table! {
    config_defaults (category, key) {
        category -> Text,
        key -> Text,
        value -> Jsonb,
        data_type -> Text,
    }
}

diesel::table! {
    configs (tenant_id, category, key) {
        tenant_id -> Uuid,
        category -> Text,
        key -> Text,
        value -> Nullable<Jsonb>,
        encrypted_value -> Nullable<Bytea>,
        data_type -> Text,
        encrypted -> Bool,
        updated_by -> Nullable<Text>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    feature_definitions (key) {
        key -> Text,
        name -> Text,
        description -> Text,
        default_enabled -> Bool,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    invoices (tenant_id, id) {
        tenant_id -> Uuid,
        id -> Uuid,
        stripe_invoice_id -> Text,
        amount_due -> Int8,
        amount_paid -> Int8,
        currency -> Text,
        status -> Text,
        period_start -> Nullable<Timestamptz>,
        period_end -> Nullable<Timestamptz>,
        due_date -> Nullable<Timestamptz>,
        paid_at -> Nullable<Timestamptz>,
        hosted_invoice_url -> Nullable<Text>,
        stripe_updated_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    invitations (tenant_id, id) {
        tenant_id -> Uuid,
        id -> Uuid,
        member_id -> Uuid,
        email -> Text,
        role -> Text,
        status -> Text,
        token_hash -> Text,
        invited_by -> Text,
        expires_at -> Timestamptz,
        accepted_by -> Nullable<Text>,
        accepted_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    members (tenant_id, id) {
        tenant_id -> Uuid,
        id -> Uuid,
        user_id -> Nullable<Text>,
        email -> Nullable<Text>,
        role -> Text,
        status -> Text,
        invited_by -> Nullable<Text>,
        joined_at -> Nullable<Timestamptz>,
        last_seen_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    notification_outbox (tenant_id, id) {
        tenant_id -> Uuid,
        id -> Uuid,
        seq -> Int8,
        event_type -> Text,
        data -> Jsonb,
        created_at -> Timestamptz,
        dispatched_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    webhook_endpoints (tenant_id, id) {
        tenant_id -> Uuid,
        id -> Uuid,
        url -> Text,
        events -> Array<Text>,
        enabled -> Bool,
        secret_prefix -> Text,
        secret_sealed -> Bytea,
        previous_secret_sealed -> Nullable<Bytea>,
        previous_secret_expires_at -> Nullable<Timestamptz>,
        disabled_reason -> Nullable<Text>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    notification_deliveries (tenant_id, id) {
        tenant_id -> Uuid,
        id -> Uuid,
        event_id -> Uuid,
        event_seq -> Int8,
        // `seq` (the delivery order in a lane) is read by the worker's SQL only: a 17th
        // column would need diesel's 32-column-tables feature.
        event_type -> Text,
        channel -> Text,
        endpoint_id -> Nullable<Uuid>,
        redelivery_of -> Nullable<Uuid>,
        status -> Text,
        attempts -> Int4,
        last_status_code -> Nullable<Int4>,
        last_error -> Nullable<Text>,
        next_attempt_at -> Timestamptz,
        first_attempt_at -> Nullable<Timestamptz>,
        finished_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    plan_change_intents (tenant_id, id) {
        tenant_id -> Uuid,
        id -> Uuid,
        from_plan_id -> Uuid,
        to_plan_id -> Uuid,
        billing_cycle -> Text,
        status -> Text,
        version -> Int4,
        stripe_subscription_id -> Nullable<Text>,
        error -> Nullable<Text>,
        requested_by -> Nullable<Text>,
        expires_at -> Timestamptz,
        completed_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    plan_rollouts (id) {
        id -> Uuid,
        plan_id -> Uuid,
        resource -> Text,
        status -> Text,
        cursor -> Nullable<Uuid>,
        tenants_affected -> Int4,
        tenants_updated -> Int4,
        requested_by -> Text,
        created_at -> Timestamptz,
        finished_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    plan_features (plan_id, feature_key) {
        plan_id -> Uuid,
        feature_key -> Text,
    }
}

diesel::table! {
    plan_prices (id) {
        id -> Uuid,
        plan_id -> Uuid,
        region -> Text,
        currency -> Text,
        billing_cycle -> Text,
        amount -> Int8,
        stripe_price_id -> Nullable<Text>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    plan_quotas (plan_id, resource) {
        plan_id -> Uuid,
        resource -> Text,
        limit -> Int8,
        unit -> Text,
        reset_period -> Text,
        enforcement -> Text,
    }
}

diesel::table! {
    plan_stripe_prices (stripe_price_id) {
        stripe_price_id -> Text,
        plan_id -> Uuid,
        region -> Text,
        billing_cycle -> Text,
        currency -> Text,
        amount -> Int8,
        created_at -> Timestamptz,
        archived_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    plans (id) {
        id -> Uuid,
        slug -> Text,
        name -> Text,
        description -> Text,
        sort_order -> Int4,
        trial_days -> Int4,
        rate_limit_per_minute -> Int4,
        is_active -> Bool,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        overage_limit_percent -> Int4,
        stripe_product_id -> Nullable<Text>,
    }
}

diesel::table! {
    quota_alerts (tenant_id, id) {
        tenant_id -> Uuid,
        id -> Uuid,
        resource -> Text,
        threshold -> Int4,
        used -> Int8,
        limit -> Int8,
        period_start -> Timestamptz,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    quotas (tenant_id, resource) {
        tenant_id -> Uuid,
        resource -> Text,
        limit -> Int8,
        used -> Int8,
        unit -> Text,
        reset_period -> Text,
        period_start -> Timestamptz,
        alert_thresholds -> Array<Int4>,
        enforcement -> Text,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        overridden -> Bool,
    }
}

diesel::table! {
    resource_types (key) {
        key -> Text,
        unit -> Text,
        default_enforcement -> Text,
        description -> Text,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    stripe_events (id) {
        id -> Text,
        event_type -> Text,
        tenant_id -> Nullable<Uuid>,
        payload -> Jsonb,
        status -> Text,
        attempts -> Int4,
        last_error -> Nullable<Text>,
        event_created -> Timestamptz,
        received_at -> Timestamptz,
        processed_at -> Nullable<Timestamptz>,
        next_attempt_at -> Nullable<Timestamptz>,
        note -> Nullable<Text>,
        api_version -> Nullable<Text>,
    }
}

diesel::table! {
    tenant_domain_claims (tenant_id) {
        tenant_id -> Uuid,
        domain -> Text,
        token -> Text,
        expires_at -> Timestamptz,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    tenant_features (tenant_id, feature_key) {
        tenant_id -> Uuid,
        feature_key -> Text,
        enabled -> Bool,
        expires_at -> Nullable<Timestamptz>,
        reason -> Nullable<Text>,
        set_by -> Nullable<Text>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        set_by_type -> Nullable<Text>,
    }
}

diesel::table! {
    tenants (id) {
        id -> Uuid,
        name -> Text,
        slug -> Text,
        domain -> Nullable<Text>,
        status -> Text,
        plan_id -> Uuid,
        owner_id -> Nullable<Text>,
        region -> Text,
        settings -> Jsonb,
        stripe_customer_id -> Nullable<Text>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        suspended_at -> Nullable<Timestamptz>,
        suspend_reason -> Nullable<Text>,
        deleted_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    usage_hourly (tenant_id, resource, hour_start) {
        tenant_id -> Uuid,
        resource -> Text,
        hour_start -> Timestamptz,
        amount -> Int8,
    }
}

diesel::table! {
    usage_records (tenant_id, id) {
        tenant_id -> Uuid,
        id -> Int8,
        resource -> Text,
        amount -> Int8,
        period_start -> Timestamptz,
        idempotency_key -> Nullable<Text>,
        used_after -> Int8,
        limit_at -> Int8,
        recorded_at -> Timestamptz,
    }
}

diesel::table! {
    usage_reports (tenant_id, resource, period_start) {
        tenant_id -> Uuid,
        resource -> Text,
        period_start -> Timestamptz,
        quantity -> Int8,
        identifier -> Text,
        status -> Text,
        attempts -> Int4,
        last_error -> Nullable<Text>,
        reported_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
        reported_quantity -> Int8,
        event_at -> Timestamptz,
    }
}

diesel::joinable!(billing_subscriptions -> plans (plan_id));
diesel::joinable!(plan_features -> plans (plan_id));
diesel::joinable!(plan_features -> feature_definitions (feature_key));
diesel::joinable!(plan_prices -> plans (plan_id));
diesel::joinable!(plan_quotas -> plans (plan_id));
diesel::joinable!(plan_rollouts -> plans (plan_id));
diesel::joinable!(plan_stripe_prices -> plans (plan_id));
diesel::joinable!(tenant_domain_claims -> tenants (tenant_id));
diesel::joinable!(tenant_features -> tenants (tenant_id));
diesel::joinable!(tenants -> plans (plan_id));
diesel::joinable!(quotas -> tenants (tenant_id));
diesel::joinable!(configs -> tenants (tenant_id));

diesel::allow_tables_to_appear_in_same_query!(
    audit_logs,
    billing_subscriptions,
    config_defaults,
    configs,
    feature_definitions,
    invitations,
    invoices,
    members,
    notification_outbox,
    notification_deliveries,
    webhook_endpoints,
    plan_change_intents,
    plan_features,
    plan_prices,
    plan_quotas,
    plan_rollouts,
    plan_stripe_prices,
    plans,
    quota_alerts,
    quotas,
    resource_types,
    stripe_events,
    tenant_domain_claims,
    tenant_features,
    tenants,
    usage_hourly,
    usage_records,
    usage_reports,
);
