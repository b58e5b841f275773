-- 003_add_user_preferences: the seed's example migration, in runner format (the runner
-- wraps it in a transaction and records the version; no BEGIN/COMMIT/INSERT here).
-- A constant default: PostgreSQL 11+ adds the column without rewriting the table.

-- migrate:up
SET LOCAL ROLE mdus_owner;
ALTER TABLE users ADD COLUMN preferences jsonb NOT NULL DEFAULT '{}',
    ADD CONSTRAINT users_preferences_check CHECK (jsonb_typeof(preferences) = 'object');
CREATE INDEX idx_users_preferences ON users USING gin (preferences);

-- migrate:down
SET LOCAL ROLE mdus_owner;
DROP INDEX idx_users_preferences;
ALTER TABLE users DROP COLUMN preferences;
