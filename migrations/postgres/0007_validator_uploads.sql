-- Miners' uploads and their verification (PostgreSQL).
--
-- The twin of migrations/sqlite/0007_validator_uploads.sql (tested with the
-- others by migrations/tests/postgres.rs); keys are BIGINT identities and
-- floating-point columns DOUBLE PRECISION, as in 0005. Meanings are described
-- in the SQLite file.

ALTER TABLE validator_agent_versions
    ADD COLUMN uploaded_by TEXT NOT NULL DEFAULT 'operator'
        CHECK (uploaded_by IN ('operator', 'miner'));
ALTER TABLE validator_agent_versions
    ADD COLUMN size_bytes BIGINT CHECK (size_bytes >= 0);
ALTER TABLE validator_agent_versions
    ADD COLUMN matched_version_no BIGINT REFERENCES validator_agent_versions (version_no);

CREATE INDEX validator_agent_versions_uploads
    ON validator_agent_versions (miner_no, uploaded_by, uploaded_at_ms);
CREATE INDEX validator_agent_versions_hash ON validator_agent_versions (hash, uploaded_at_ms);

CREATE TABLE validator_verifications (
    version_no     BIGINT  PRIMARY KEY REFERENCES validator_agent_versions (version_no),
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

CREATE TABLE validator_probe_runs (
    version_no         BIGINT  NOT NULL REFERENCES validator_agent_versions (version_no),
    event_id           TEXT    NOT NULL CHECK (length(event_id) >= 1),
    status             TEXT    NOT NULL CHECK (status IN ('ok', 'timeout', 'trap',
                               'invalid_output', 'memory_exceeded', 'instantiation_failure',
                               'crash')),
    prediction         DOUBLE PRECISION,
    clipped_prediction DOUBLE PRECISION CHECK (clipped_prediction BETWEEN 0.01 AND 0.99),
    duration_ms        BIGINT  NOT NULL CHECK (duration_ms >= 0),
    PRIMARY KEY (version_no, event_id),
    CHECK ((status = 'ok') = (prediction IS NOT NULL AND clipped_prediction IS NOT NULL))
);

CREATE TABLE validator_integrity_verdicts (
    verdict_no         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    version_no         BIGINT  NOT NULL REFERENCES validator_agent_versions (version_no),
    check_name         TEXT COLLATE "C" NOT NULL
                       CHECK (check_name IN ('duplicate', 'originality', 'concordance')),
    scope              TEXT    NOT NULL CHECK (scope IN ('probe', 'live')),
    passed             INTEGER NOT NULL CHECK (passed IN (0, 1)),
    matched_version_no BIGINT  REFERENCES validator_agent_versions (version_no),
    statistic          DOUBLE PRECISION,
    detail             TEXT    NOT NULL,
    decided_at_ms      BIGINT  NOT NULL
);

CREATE INDEX validator_integrity_verdicts_by_version
    ON validator_integrity_verdicts (version_no, check_name, scope, decided_at_ms);

CREATE TABLE validator_daily_scores (
    miner_no  BIGINT  NOT NULL REFERENCES validator_miners (miner_no),
    day       BIGINT  NOT NULL,
    brier_sum DOUBLE PRECISION NOT NULL,
    events    INTEGER NOT NULL CHECK (events >= 1),
    PRIMARY KEY (miner_no, day)
);

INSERT INTO validator_daily_scores (miner_no, day, brier_sum, events)
SELECT s.miner_no, e.resolved_at_ms / 86400000, sum(s.brier), count(*)
  FROM validator_scores s JOIN validator_events e USING (event_no)
 GROUP BY s.miner_no, e.resolved_at_ms / 86400000;

CREATE FUNCTION validator_scores_daily() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO validator_daily_scores (miner_no, day, brier_sum, events)
        VALUES (NEW.miner_no,
                (SELECT resolved_at_ms / 86400000 FROM validator_events
                  WHERE event_no = NEW.event_no),
                NEW.brier, 1)
        ON CONFLICT (miner_no, day) DO UPDATE
           SET brier_sum = validator_daily_scores.brier_sum + excluded.brier_sum,
               events = validator_daily_scores.events + 1;
    ELSE
        UPDATE validator_daily_scores SET brier_sum = brier_sum - OLD.brier + NEW.brier
         WHERE miner_no = NEW.miner_no
           AND day = (SELECT resolved_at_ms / 86400000 FROM validator_events
                       WHERE event_no = NEW.event_no);
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER validator_scores_daily
AFTER INSERT OR UPDATE OF brier ON validator_scores
FOR EACH ROW EXECUTE FUNCTION validator_scores_daily();
