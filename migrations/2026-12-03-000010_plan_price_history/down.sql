DROP TABLE plan_stripe_prices;
ALTER TABLE plans DROP COLUMN stripe_product_id;
