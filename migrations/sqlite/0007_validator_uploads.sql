-- Miners' uploads and their verification (SQLite). Owned by
-- `validator/src/store/` (`uploads.rs`, `verification.rs`, `integrity.rs`).
--
-- An upload is a row of validator_agent_versions (status 'pending') with
-- its component kept content-addressed beside the database; the
-- verification queue holds one item per version to verify, durable across
-- restarts. The PostgreSQL twin is migrations/postgres/0007_validator_uploads.sql.

-- Who added a version: the operator ('operator', `sooth validator
-- add-agent`) or the miner itself through the upload API ('miner', which
-- counts against the upload rate). The component's size in bytes, where known.
-- The version another miner's that a rejected version matched (a duplicate, a
-- copy), named in the rejection.
ALTER TABLE validator_agent_versions
    ADD COLUMN uploaded_by TEXT NOT NULL DEFAULT 'operator'
        CHECK (uploaded_by IN ('operator', 'miner'));
ALTER TABLE validator_agent_versions
    ADD COLUMN size_bytes BIGINT CHECK (size_bytes >= 0);
ALTER TABLE validator_agent_versions
    ADD COLUMN matched_version_no INTEGER REFERENCES validator_agent_versions (version_no);

-- The upload rate reads a miner's newest upload; the duplicate check looks a
-- hash up across miners.
CREATE INDEX validator_agent_versions_uploads
    ON validator_agent_versions (miner_no, uploaded_by, uploaded_at_ms);
CREATE INDEX validator_agent_versions_hash ON validator_agent_versions (hash, uploaded_at_ms);

-- The verification queue: one item per version to verify.
--   'queued'     waiting for a worker (again, after a failed attempt);
--   'verifying'  held by a worker until lease_until_ms; a worker that dies
--                loses it then, and the item is claimed again;
--   'done'       verified or rejected, the verdict recorded with the version;
--   'failed'     every attempt failed (last_error says why); the version
--                was rejected with that reason.
-- `attempts` counts claims; it is also the fencing token: a worker records
-- its verdict only while the item is still 'verifying' at its attempt, so
-- each item gets exactly one verdict.
CREATE TABLE validator_verifications (
    version_no     INTEGER PRIMARY KEY REFERENCES validator_agent_versions (version_no),
    queued_at_ms   BIGINT  NOT NULL,
    state          TEXT    NOT NULL
                   CHECK (state IN ('queued', 'verifying', 'done', 'failed')),
    attempts       INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    lease_until_ms BIGINT,
    last_error     TEXT,
    finished_at_ms BIGINT,
    CHECK ((state = 'verifying') = (lease_until_ms IS NOT NULL)),
    CHECK ((state IN ('done', 'failed')) = (finished_at_ms IS NOT NULL))
);

CREATE INDEX validator_verifications_waiting
    ON validator_verifications (queued_at_ms, version_no) WHERE state IN ('queued', 'verifying');

-- A version's runs on the probe set: public past events, run once when the
-- version is verified. Events are named by their id in the probe file (they
-- are not competition events). Statuses and values as in validator_runs.
CREATE TABLE validator_probe_runs (
    version_no         INTEGER NOT NULL REFERENCES validator_agent_versions (version_no),
    event_id           TEXT    NOT NULL CHECK (length(event_id) >= 1),
    status             TEXT    NOT NULL CHECK (status IN ('ok', 'timeout', 'trap',
                               'invalid_output', 'memory_exceeded', 'instantiation_failure',
                               'crash')),
    prediction         REAL,
    clipped_prediction REAL CHECK (clipped_prediction BETWEEN 0.01 AND 0.99),
    duration_ms        BIGINT  NOT NULL CHECK (duration_ms >= 0),
    PRIMARY KEY (version_no, event_id),
    CHECK ((status = 'ok') = (prediction IS NOT NULL AND clipped_prediction IS NOT NULL))
);

-- Every integrity verdict: at verification (scope 'probe') and from the
-- daily check over live events (scope 'live'). A version whose newest live
-- verdict of a check failed earns no weight.
CREATE TABLE validator_integrity_verdicts (
    verdict_no         INTEGER PRIMARY KEY,
    version_no         INTEGER NOT NULL REFERENCES validator_agent_versions (version_no),
    check_name         TEXT    NOT NULL
                       CHECK (check_name IN ('duplicate', 'originality', 'concordance')),
    scope              TEXT    NOT NULL CHECK (scope IN ('probe', 'live')),
    passed             BOOLEAN NOT NULL,
    matched_version_no INTEGER REFERENCES validator_agent_versions (version_no),
    statistic          REAL,
    detail             TEXT    NOT NULL,
    decided_at_ms      BIGINT  NOT NULL
);

CREATE INDEX validator_integrity_verdicts_by_version
    ON validator_integrity_verdicts (version_no, check_name, scope, decided_at_ms);

-- Each miner's Brier scores summed per day of resolution (days since the
-- Unix epoch, UTC), kept by triggers as scores are written and rescored:
-- the leaderboard's consistency (the share of days whose mean Brier beat
-- 0.25) reads these few rows instead of every score.
CREATE TABLE validator_daily_scores (
    miner_no  INTEGER NOT NULL REFERENCES validator_miners (miner_no),
    day       BIGINT  NOT NULL,
    brier_sum REAL    NOT NULL,
    events    INTEGER NOT NULL CHECK (events >= 1),
    PRIMARY KEY (miner_no, day)
);

INSERT INTO validator_daily_scores (miner_no, day, brier_sum, events)
SELECT s.miner_no, e.resolved_at_ms / 86400000, sum(s.brier), count(*)
  FROM validator_scores s JOIN validator_events e USING (event_no)
 GROUP BY s.miner_no, e.resolved_at_ms / 86400000;

CREATE TRIGGER validator_scores_daily_insert
AFTER INSERT ON validator_scores
BEGIN
    INSERT INTO validator_daily_scores (miner_no, day, brier_sum, events)
    VALUES (NEW.miner_no,
            (SELECT resolved_at_ms / 86400000 FROM validator_events WHERE event_no = NEW.event_no),
            NEW.brier, 1)
    ON CONFLICT (miner_no, day) DO UPDATE
       SET brier_sum = brier_sum + excluded.brier_sum, events = events + 1;
END;

CREATE TRIGGER validator_scores_daily_update
AFTER UPDATE OF brier ON validator_scores
BEGIN
    UPDATE validator_daily_scores SET brier_sum = brier_sum - OLD.brier + NEW.brier
     WHERE miner_no = NEW.miner_no
       AND day = (SELECT resolved_at_ms / 86400000 FROM validator_events
                   WHERE event_no = NEW.event_no);
END;
