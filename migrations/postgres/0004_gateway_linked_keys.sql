-- Miners' own upstream API keys ("linked keys", PostgreSQL). Owned by
-- `proxy/src/linked_keys.rs`.
--
-- Same schema as migrations/sqlite/0004_gateway_linked_keys.sql (see the
-- comments there for what the columns mean); keep the two in step.
--   * Not tested yet. The store's queries use `$N` placeholders and an
--     upsert with `ON CONFLICT (miner, service) DO UPDATE` and `excluded`,
--     which PostgreSQL accepts unchanged.
--   * The keys are stored as given (the gateway must present them upstream):
--     grant SELECT on this table to the gateway's role only.

CREATE TABLE gateway_linked_keys (
    miner        TEXT   NOT NULL CHECK (length(miner) >= 1),
    service      TEXT   NOT NULL CHECK (length(service) >= 1),
    api_key      TEXT   NOT NULL CHECK (length(api_key) >= 1),
    linked_at_ms BIGINT NOT NULL,
    PRIMARY KEY (miner, service)
);
