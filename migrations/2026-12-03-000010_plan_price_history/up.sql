-- Plan prices as data (issue 14, `setPlanPrice`). Stripe Prices are immutable: a changed
-- price is a new Stripe Price, and subscriptions stay on the old one until they are moved.
-- Both tables below are platform catalogue data like `plans` and `plan_prices`: no tenant
-- rows, no RLS, readable in every scope, written under the platform scope.

-- The one Stripe Product per plan that its Stripe Prices belong to (created on first need).
ALTER TABLE plans ADD COLUMN stripe_product_id text;
CREATE UNIQUE INDEX plans_stripe_product_id ON plans (stripe_product_id)
    WHERE stripe_product_id IS NOT NULL;

-- Every Stripe Price a plan has had for a region and cycle, the current one included
-- (`archived_at` is null until a newer price replaces it). The webhook maps a subscription's
-- price to its plan through `plan_prices` and, for prices replaced since, through this table,
-- so a subscription still on an old price keeps its plan.
CREATE TABLE plan_stripe_prices (
    stripe_price_id  text PRIMARY KEY,
    plan_id          uuid NOT NULL REFERENCES plans (id) ON DELETE CASCADE,
    region           text NOT NULL CHECK (region IN ('US', 'CA', 'EU', 'GB', 'AU')),
    billing_cycle    text NOT NULL CHECK (billing_cycle IN ('MONTHLY', 'YEARLY')),
    currency         text NOT NULL CHECK (currency ~ '^[a-z]{3}$'),
    amount           bigint NOT NULL CHECK (amount >= 0),
    created_at       timestamptz NOT NULL DEFAULT now(),
    archived_at      timestamptz
);
CREATE INDEX plan_stripe_prices_plan ON plan_stripe_prices (plan_id, region, billing_cycle);

-- The prices known so far (seeded or configured ids) are the first entries.
INSERT INTO plan_stripe_prices (stripe_price_id, plan_id, region, billing_cycle, currency, amount, created_at)
SELECT stripe_price_id, plan_id, region, billing_cycle, currency, amount, created_at
FROM plan_prices
WHERE stripe_price_id IS NOT NULL
ON CONFLICT (stripe_price_id) DO NOTHING;
