-- Where each event source of the validator has read up to (PostgreSQL).
--
-- The twin of migrations/sqlite/0006_validator_sources.sql (tested with the
-- others by migrations/tests/postgres.rs); the JSON column stays TEXT,
-- checked by a cast to jsonb. Meanings are described
-- in the SQLite file.
CREATE TABLE validator_source_state (
    source        TEXT   NOT NULL PRIMARY KEY CHECK (length(source) >= 1),
    state         TEXT   NOT NULL CHECK (state::jsonb IS NOT NULL),
    updated_at_ms BIGINT NOT NULL
);
