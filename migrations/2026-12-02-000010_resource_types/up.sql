-- The resource types quotas and usage may name (SPEC §4 "Quotas", §13): platform catalogue
-- data like `plans` and `feature_definitions` — no tenant rows, no RLS, readable in every
-- scope; written by platform admins (`createResourceType`) under the platform scope. Seeded
-- here with the nine resource types of the design, so every database has them.
CREATE TABLE resource_types (
    key                  text PRIMARY KEY CHECK (key ~ '^[a-z][a-z0-9_]{0,63}$'),
    unit                 text NOT NULL CHECK (char_length(unit) BETWEEN 1 AND 32),
    default_enforcement  text NOT NULL DEFAULT 'HARD' CHECK (default_enforcement IN ('HARD', 'SOFT')),
    description          text NOT NULL DEFAULT '' CHECK (char_length(description) <= 500),
    created_at           timestamptz NOT NULL DEFAULT now()
);

-- Metered resources that paid plans bill as overage default to SOFT; counted things to HARD.
INSERT INTO resource_types (key, unit, default_enforcement, description) VALUES
    ('users', 'users', 'HARD', 'Members of the tenant'),
    ('storage', 'bytes', 'HARD', 'Stored data'),
    ('api_calls', 'calls', 'SOFT', 'Calls to the tenant''s API'),
    ('bandwidth', 'bytes', 'SOFT', 'Data transferred'),
    ('databases', 'databases', 'HARD', 'Databases provisioned'),
    ('compute_hours', 'hours', 'HARD', 'Compute time used'),
    ('ai_interactions', 'interactions', 'SOFT', 'Requests to AI features'),
    ('file_uploads', 'files', 'HARD', 'Files uploaded'),
    ('email_sends', 'emails', 'HARD', 'Emails sent');

-- A database that already has quotas on other names keeps them working: each such name
-- becomes a resource type (HARD, its unit as stored). The quota tables are RLS-forced, so
-- the platform bypass is set for this transaction only.
SELECT set_config('app.bypass_rls', 'on', true);
INSERT INTO resource_types (key, unit, default_enforcement, description)
SELECT resource, min(unit), 'HARD', 'In use before resource types were catalogued'
FROM (SELECT resource, coalesce(nullif(left(unit, 32), ''), 'count') AS unit FROM quotas
      UNION ALL
      SELECT resource, coalesce(nullif(left(unit, 32), ''), 'count') FROM plan_quotas) used
GROUP BY resource
ON CONFLICT (key) DO NOTHING;
SELECT set_config('app.bypass_rls', '', true);
