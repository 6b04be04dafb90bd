ALTER TABLE audit_logs DROP CONSTRAINT audit_logs_actor_type_check;
ALTER TABLE audit_logs ADD CONSTRAINT audit_logs_actor_type_check
    CHECK (actor_type IN ('USER', 'ADMIN', 'WEBHOOK', 'SYSTEM', 'SERVICE'));
