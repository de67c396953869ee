-- Gateway response cache (SQLite). Owned by `proxy/src/cache.rs`.
--
-- One row per cached upstream answer. `key` is the hex SHA-256 of the
-- request (service, route, canonical JSON body without volatile fields; see
-- `cache_key` in the module). Only successful (2xx) answers are stored. A row
-- is served while `expires_at_ms` is in the future; expired rows are ignored
-- by lookups and deleted by `purge_expired` (the index below). Storing a key
-- again replaces its row. Timestamps are Unix milliseconds.
--
-- The PostgreSQL twin is migrations/postgres/0002_gateway_cache.sql; the only
-- difference is the body column type (BLOB here, BYTEA there).

CREATE TABLE gateway_cache (
    key           TEXT    NOT NULL PRIMARY KEY,
    service       TEXT    NOT NULL,
    status        INTEGER NOT NULL CHECK (status >= 200 AND status <= 299),
    body          BLOB    NOT NULL,
    content_type  TEXT    NOT NULL,
    created_at_ms BIGINT  NOT NULL,
    expires_at_ms BIGINT  NOT NULL CHECK (expires_at_ms > created_at_ms)
);

-- `purge_expired`: oldest expiry first.
CREATE INDEX gateway_cache_expires
    ON gateway_cache (expires_at_ms);
