-- Where each event source of the validator has read up to (SQLite). Owned by
-- `validator/src/store/sources.rs`.
--
-- One row per source, named by its configuration (`jsonl:DIR`, `feed:URL`);
-- `state` is a JSON document the source's reader defines (a watched
-- directory: bytes and lines consumed per file; a feed: its cursor). It is
-- written after what was read has been stored, so a restart reads on from
-- there; a state lost in a crash only makes the source deliver rows again,
-- which the daemon accepts again without change.
CREATE TABLE validator_source_state (
    source        TEXT   NOT NULL PRIMARY KEY CHECK (length(source) >= 1),
    state         TEXT   NOT NULL CHECK (json_valid(state)),
    updated_at_ms BIGINT NOT NULL
);
