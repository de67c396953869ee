-- Validator storage (PostgreSQL). Owned by `validator/src/store/`.
--
-- The twin of migrations/sqlite/0005_validator.sql, for the PostgreSQL
-- scale-out; migrations/tests/postgres.rs applies it to a real server and
-- checks its tables, columns and rules against SQLite's. Differences:
-- * the internal keys are BIGINT GENERATED ALWAYS AS IDENTITY (SQLite uses
--   rowid aliases);
-- * floating-point columns are DOUBLE PRECISION (PostgreSQL's REAL is only
--   4 bytes);
-- * JSON columns stay TEXT (the store binds strings) and are checked by a
--   cast to jsonb instead of SQLite's json_valid.
-- * the text keys that order results (ids, hotkeys, hashes, names) are
--   COLLATE "C": byte order, as SQLite compares text, whatever the server's
--   locale, so that both engines order and page alike;
-- * flags (imputed) are INTEGER 0 or 1, as SQLite stores its BOOLEAN, so that
--   the store binds and reads the same values on both engines.
-- Conventions and meanings are described in the SQLite file.

-- One row per hotkey that ever registered. Re-registering a deregistered
-- hotkey reuses its row (new uid and instant, deregistered_at_ms cleared):
-- the miner's runs and scores stay attached to it.
CREATE TABLE validator_miners (
    miner_no           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    uid                INTEGER NOT NULL CHECK (uid BETWEEN 0 AND 65535),
    hotkey             TEXT COLLATE "C" NOT NULL UNIQUE CHECK (length(hotkey) >= 1),
    registered_at_ms   BIGINT  NOT NULL,
    deregistered_at_ms BIGINT,
    CHECK (deregistered_at_ms IS NULL OR deregistered_at_ms >= registered_at_ms)
);

-- A slot (uid) is held by at most one registered miner.
CREATE UNIQUE INDEX validator_miners_registered_uid
    ON validator_miners (uid) WHERE deregistered_at_ms IS NULL;

-- Uploaded versions of a miner's agent.
--   'pending'   uploaded, not yet verified;
--   'verified'  verified, waiting for a midnight to activate;
--   'active'    the miner's active version since activated_at_ms;
--   'inactive'  was active until deactivated_at_ms, or was superseded
--               before it ever activated;
--   'refused'   failed verification (reason says why); never activates.
CREATE TABLE validator_agent_versions (
    version_no        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    miner_no          BIGINT  NOT NULL REFERENCES validator_miners (miner_no),
    hash              TEXT COLLATE "C" NOT NULL CHECK (length(hash) >= 1),
    uploaded_at_ms    BIGINT  NOT NULL,
    verified_at_ms    BIGINT,
    activated_at_ms   BIGINT,
    deactivated_at_ms BIGINT,
    status            TEXT    NOT NULL
                      CHECK (status IN ('pending', 'verified', 'active', 'inactive', 'refused')),
    reason            TEXT,
    UNIQUE (miner_no, hash),
    CHECK ((status IN ('verified', 'active')) <= (verified_at_ms IS NOT NULL)),
    CHECK ((status = 'active') <= (activated_at_ms IS NOT NULL AND deactivated_at_ms IS NULL))
);

-- A miner has at most one active version.
CREATE UNIQUE INDEX validator_agent_versions_one_active
    ON validator_agent_versions (miner_no) WHERE status = 'active';

-- Events (questions). `metadata` is a JSON object as text. An event is
-- 'open' until resolved; outcome and resolved_at_ms are set together with
-- status 'resolved' and never change afterwards.
CREATE TABLE validator_events (
    event_no       BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id             TEXT COLLATE "C" NOT NULL UNIQUE CHECK (length(id) >= 1),
    kind           TEXT    NOT NULL CHECK (length(kind) >= 1),
    title          TEXT    NOT NULL CHECK (length(title) >= 1),
    description    TEXT    NOT NULL,
    metadata       TEXT    NOT NULL DEFAULT '{}' CHECK ((metadata::jsonb) IS NOT NULL),
    created_at_ms  BIGINT  NOT NULL,
    cutoff_ms      BIGINT  NOT NULL CHECK (cutoff_ms > created_at_ms),
    status         TEXT    NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'resolved')),
    outcome        INTEGER CHECK (outcome IN (0, 1)),
    resolved_at_ms BIGINT  CHECK (resolved_at_ms >= created_at_ms),
    CHECK ((status = 'resolved') = (outcome IS NOT NULL AND resolved_at_ms IS NOT NULL))
);

-- The scoring window reads resolved events newest first by (resolution
-- instant, id); the scheduler reads open events by creation.
CREATE INDEX validator_events_resolution
    ON validator_events (resolved_at_ms, id) WHERE status = 'resolved';
CREATE INDEX validator_events_open
    ON validator_events (created_at_ms) WHERE status = 'open';

-- At most one run per (event, miner), ever: the primary key is what makes
-- execution once-only across crashes and restarts.
--   status 'ok' carries the agent's prediction (finite; may lie outside
--   [0, 1]) and clipped_prediction, the value scored (clipped to
--   [0.01, 0.99]); every other status has neither (imputed 0.5 at scoring,
--   never stored as a fake prediction).
-- `gateway_usage` is JSON text as the runner reported it; cost_usd its total.
CREATE TABLE validator_runs (
    event_no           BIGINT  NOT NULL REFERENCES validator_events (event_no),
    miner_no           BIGINT  NOT NULL REFERENCES validator_miners (miner_no),
    version_no         BIGINT  NOT NULL REFERENCES validator_agent_versions (version_no),
    status             TEXT    NOT NULL CHECK (status IN ('ok', 'timeout', 'trap',
                               'invalid_output', 'memory_exceeded', 'instantiation_failure',
                               'crash')),
    prediction         DOUBLE PRECISION,
    clipped_prediction DOUBLE PRECISION CHECK (clipped_prediction BETWEEN 0.01 AND 0.99),
    duration_ms        BIGINT  NOT NULL CHECK (duration_ms >= 0),
    logs               TEXT    NOT NULL DEFAULT '',
    gateway_usage      TEXT    NOT NULL DEFAULT '{}' CHECK ((gateway_usage::jsonb) IS NOT NULL),
    cost_usd           DOUBLE PRECISION NOT NULL DEFAULT 0 CHECK (cost_usd >= 0),
    finished_at_ms     BIGINT  NOT NULL,
    PRIMARY KEY (event_no, miner_no),
    CHECK ((status = 'ok') = (prediction IS NOT NULL AND clipped_prediction IS NOT NULL))
);

-- Rescoring reads (event, miner, scored value) for a window of events; this
-- index answers it without touching the rows and their logs.
CREATE INDEX validator_runs_scoring
    ON validator_runs (event_no, miner_no, clipped_prediction);
CREATE INDEX validator_runs_by_miner ON validator_runs (miner_no, event_no);

-- Brier score of every scored miner on every resolved event (clipped and
-- imputed as the rules say). Rescoring the same event writes the same rows.
CREATE TABLE validator_scores (
    event_no BIGINT  NOT NULL REFERENCES validator_events (event_no),
    miner_no BIGINT  NOT NULL REFERENCES validator_miners (miner_no),
    brier    DOUBLE PRECISION NOT NULL CHECK (brier BETWEEN 0 AND 1),
    imputed  INTEGER NOT NULL CHECK (imputed IN (0, 1)),
    PRIMARY KEY (event_no, miner_no)
);

-- Each weights computation: one row per miner scored at that instant.
CREATE TABLE validator_weights_history (
    computed_at_ms BIGINT  NOT NULL,
    miner_no       BIGINT  NOT NULL REFERENCES validator_miners (miner_no),
    rank           INTEGER NOT NULL CHECK (rank >= 1),
    weight         DOUBLE PRECISION NOT NULL CHECK (weight BETWEEN 0 AND 1),
    mean_brier     DOUBLE PRECISION,
    events_counted INTEGER NOT NULL CHECK (events_counted >= 0),
    imputed_count  INTEGER NOT NULL CHECK (imputed_count >= 0),
    PRIMARY KEY (computed_at_ms, miner_no)
);
