-- Miners' own service keys, linked through the validator's API (PostgreSQL).
--
-- The twin of migrations/sqlite/0008_validator_linked_keys.sql (tested with
-- the others by migrations/tests/postgres.rs); keys are BIGINT and the
-- sealed bytes BYTEA. Meanings are described in the SQLite file. The rows
-- hold sealed keys only; the key that opens them is kept apart from the
-- database, on the validator's machine.

CREATE TABLE validator_miner_keys (
    miner_no      BIGINT  NOT NULL REFERENCES validator_miners (miner_no),
    service       TEXT COLLATE "C" NOT NULL CHECK (length(service) BETWEEN 1 AND 64),
    nonce         BYTEA   CHECK (length(nonce) = 24),
    ciphertext    BYTEA   CHECK (length(ciphertext) > 16),
    linked_at_ms  BIGINT  NOT NULL,
    version_no    BIGINT  REFERENCES validator_agent_versions (version_no),
    dropped_at_ms BIGINT,
    PRIMARY KEY (miner_no, service),
    CHECK ((dropped_at_ms IS NULL) = (nonce IS NOT NULL AND ciphertext IS NOT NULL)),
    CHECK ((nonce IS NULL) = (ciphertext IS NULL))
);

CREATE INDEX validator_miner_keys_dropped
    ON validator_miner_keys (dropped_at_ms) WHERE dropped_at_ms IS NOT NULL;
