-- Gateway response cache (PostgreSQL). Owned by `proxy/src/cache.rs`.
--
-- Same schema as migrations/sqlite/0002_gateway_cache.sql (see the comments
-- there for what the columns mean); keep the two in step. Differences:
--   * body: BYTEA here, BLOB in SQLite.
--   * Not tested yet. The cache's queries use `$N` placeholders, an upsert
--     with `ON CONFLICT (key) DO UPDATE` and `excluded`, and a batched
--     `DELETE ... WHERE key IN (SELECT key ... LIMIT n)`, all of which
--     PostgreSQL accepts unchanged (`key` is a non-reserved word in both).
--     The cache takes no locks of its own: a lost race between two writers
--     of one key just keeps the last answer.

CREATE TABLE gateway_cache (
    key           TEXT    NOT NULL PRIMARY KEY,
    service       TEXT    NOT NULL,
    status        INTEGER NOT NULL CHECK (status >= 200 AND status <= 299),
    body          BYTEA   NOT NULL,
    content_type  TEXT    NOT NULL,
    created_at_ms BIGINT  NOT NULL,
    expires_at_ms BIGINT  NOT NULL CHECK (expires_at_ms > created_at_ms)
);

CREATE INDEX gateway_cache_expires
    ON gateway_cache (expires_at_ms);
