-- Miners' own upstream API keys ("linked keys", SQLite). Owned by
-- `proxy/src/linked_keys.rs`.
--
-- One row per (miner hotkey, service): when a row exists, the gateway sends
-- that miner's calls to that service with `api_key` instead of the
-- operator's key, and applies the service's linked (higher) daily cap.
-- Linking again replaces the key; unlinking deletes the row. `linked_at_ms`
-- is Unix milliseconds, for the operator's records only.
--
-- The key is stored as given: the gateway must present it upstream, so it
-- cannot be hashed. The database file is made readable by its owner only
-- when the gateway opens it.
--
-- The PostgreSQL twin is migrations/postgres/0004_gateway_linked_keys.sql;
-- the schema is the same.

CREATE TABLE gateway_linked_keys (
    miner        TEXT   NOT NULL CHECK (length(miner) >= 1),
    service      TEXT   NOT NULL CHECK (length(service) >= 1),
    api_key      TEXT   NOT NULL CHECK (length(api_key) >= 1),
    linked_at_ms BIGINT NOT NULL,
    PRIMARY KEY (miner, service)
);
