-- Older code knows no API_KEY actor: their entries read as USER (the actor id still says
-- `apikey:<id>`), so the constraint of the previous version holds again.
SELECT set_config('app.bypass_rls', 'on', true);
UPDATE audit_logs SET actor_type = 'USER' WHERE actor_type = 'API_KEY';
SELECT set_config('app.bypass_rls', '', true);
ALTER TABLE audit_logs DROP CONSTRAINT audit_logs_actor_type_check;
ALTER TABLE audit_logs ADD CONSTRAINT audit_logs_actor_type_check
    CHECK (actor_type IN ('USER', 'ADMIN', 'WEBHOOK', 'SYSTEM', 'SERVICE', 'ANONYMOUS'));
DROP TABLE api_keys;
