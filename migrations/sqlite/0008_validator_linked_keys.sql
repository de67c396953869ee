-- Miners' own service keys, linked through the validator's API (SQLite).
-- Owned by `validator/src/store/miner_keys.rs`.
--
-- One row per (miner, service). A miner sends its own upstream API key for
-- a gateway service (`POST /v1/services/{service}/key`, signed); the
-- validator keeps it sealed with XChaCha20-Poly1305 under a key of its own
-- that is not in this database (`linked-keys.key` in the data directory by
-- default): `nonce` is the seal's random 24-byte nonce, `ciphertext` the
-- sealed key with its tag, and the miner's hotkey and the service are the
-- seal's associated data, so a row moved to another miner or service does
-- not open. The validator hands the opened key to its gateway, which uses
-- it for that miner's calls to that service under the higher cap.
--
-- `version_no` is the miner's newest agent version when the key was linked
-- (NULL when it had none). A new upload requires linking again: when a
-- version newer than that activates, the row is dropped in the activation's
-- transaction (`nonce` and `ciphertext` wiped, `dropped_at_ms` set) and kept
-- only until the gateway has been told to forget the key, then deleted.
-- Linking again replaces the row. Instants are Unix milliseconds.
--
-- The PostgreSQL twin is migrations/postgres/0008_validator_linked_keys.sql.

CREATE TABLE validator_miner_keys (
    miner_no      INTEGER NOT NULL REFERENCES validator_miners (miner_no),
    service       TEXT    NOT NULL CHECK (length(service) BETWEEN 1 AND 64),
    nonce         BLOB    CHECK (length(nonce) = 24),
    ciphertext    BLOB    CHECK (length(ciphertext) > 16),
    linked_at_ms  BIGINT  NOT NULL,
    version_no    INTEGER REFERENCES validator_agent_versions (version_no),
    dropped_at_ms BIGINT,
    PRIMARY KEY (miner_no, service),
    CHECK ((dropped_at_ms IS NULL) = (nonce IS NOT NULL AND ciphertext IS NOT NULL)),
    CHECK ((nonce IS NULL) = (ciphertext IS NULL))
);

-- What is left to tell the gateway after activations dropped keys.
CREATE INDEX validator_miner_keys_dropped
    ON validator_miner_keys (dropped_at_ms) WHERE dropped_at_ms IS NOT NULL;
