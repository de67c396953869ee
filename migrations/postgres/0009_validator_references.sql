-- Reference entries (postgres): the benchmark agents and the meta-model's
-- pools. Owned by `validator/src/store/references.rs`.
--
-- A reference entry forecasts every event like a miner and is scored like
-- one, but it is not a miner: it holds no slot (no uid), is never weighted
-- and never deregistered, so it lives apart from validator_miners and
-- nothing that ranks, registers or weights miners can see it.
-- The SQLite original is migrations/sqlite/0009_validator_references.sql.

--   'benchmark'   an example agent run on every event in the sandbox;
--                 component_hash is its component, content-addressed beside
--                 the database like miners' versions (the newest configured);
--   'meta_model'  a pool of the miners' forecasts, computed once an event's
--                 runs are complete; it has no component.
CREATE TABLE validator_reference_entries (
    entry_no       BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name           TEXT COLLATE "C" NOT NULL UNIQUE CHECK (length(name) BETWEEN 1 AND 64),
    kind           TEXT NOT NULL CHECK (kind IN ('benchmark', 'meta_model')),
    component_hash TEXT,
    CHECK ((kind = 'benchmark') = (component_hash IS NOT NULL))
);

-- One forecast per (event, entry), ever, like validator_runs. Statuses are
-- the runs' words plus 'no_forecasts', a pool over no miner's forecast (no
-- miner ran, or none with weight); only 'ok' carries a prediction, and every
-- other status is scored with the imputed 0.5. A pool's duration is 0 and
-- its logs empty.
CREATE TABLE validator_reference_forecasts (
    event_no           BIGINT  NOT NULL REFERENCES validator_events (event_no),
    entry_no           BIGINT  NOT NULL REFERENCES validator_reference_entries (entry_no),
    status             TEXT    NOT NULL CHECK (status IN ('ok', 'timeout', 'trap',
                               'invalid_output', 'memory_exceeded', 'instantiation_failure',
                               'crash', 'no_forecasts')),
    prediction         DOUBLE PRECISION,
    clipped_prediction DOUBLE PRECISION CHECK (clipped_prediction BETWEEN 0.01 AND 0.99),
    duration_ms        BIGINT  NOT NULL CHECK (duration_ms >= 0),
    logs               TEXT    NOT NULL DEFAULT '',
    cost_usd           DOUBLE PRECISION NOT NULL DEFAULT 0 CHECK (cost_usd >= 0),
    finished_at_ms     BIGINT  NOT NULL,
    PRIMARY KEY (event_no, entry_no),
    CHECK ((status = 'ok') = (prediction IS NOT NULL AND clipped_prediction IS NOT NULL))
);

-- A reference's history (its rolling score, its downloads) reads by entry.
CREATE INDEX validator_reference_forecasts_by_entry
    ON validator_reference_forecasts (entry_no, event_no);

-- The downloads read a day's events by creation, open or resolved.
CREATE INDEX validator_events_created ON validator_events (created_at_ms);

-- The leaderboard's pages (validator/src/store/page_queries.rs). A miner's
-- scored history, in full from the index: the rolling Brier and calibration
-- charts of its page.
CREATE INDEX validator_scores_by_miner
    ON validator_scores (miner_no, event_no, brier, imputed);

-- A miner's newest runs by finish, read with a limit; holding the event and
-- the clipped prediction, it also gives the miner's predictions for its
-- calibration without reading the runs (validator_runs_scoring holds them
-- too, but spread over every miner's runs).
CREATE INDEX validator_runs_by_miner_finish
    ON validator_runs (miner_no, finished_at_ms, event_no, clipped_prediction);

-- The operator page: the newest finish, and the runs of the day before it.
CREATE INDEX validator_runs_finished ON validator_runs (finished_at_ms);
