-- `ActorType::Anonymous` exists in the code (an unauthenticated caller); every actor type the
-- code can write must be one the table accepts, or the audit insert would fail the change.
ALTER TABLE audit_logs DROP CONSTRAINT audit_logs_actor_type_check;
ALTER TABLE audit_logs ADD CONSTRAINT audit_logs_actor_type_check
    CHECK (actor_type IN ('USER', 'ADMIN', 'WEBHOOK', 'SYSTEM', 'SERVICE', 'ANONYMOUS'));
