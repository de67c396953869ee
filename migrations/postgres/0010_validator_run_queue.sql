-- Runner workers (postgres): the runs handed to workers on other hosts, the
-- workers themselves, and the components they fetch. Owned by
-- `validator/src/store/run_queue.rs`. Workers claim runs from here with
-- `FOR UPDATE SKIP LOCKED`; on SQLite the tables stay empty.
-- The SQLite original is migrations/sqlite/0010_validator_run_queue.sql.

-- One row per run owed and handed to the workers, from the scheduler's
-- enqueue until a worker records its outcome (in the same transaction as
-- the run or reference forecast it records).
--   miner_no   a miner's run; or entry_no, a benchmark agent's;
--   gateway_name  the name the gateway meters the run under (the hotkey, or
--              benchmark:NAME);
--   claimed_by, lease_until_ms  the worker holding the run and until when,
--              by the database's clock; both null while queued;
--   attempts   how many times it was claimed: the fencing token a worker's
--              record must still match.
CREATE TABLE validator_run_queue (
    run_id         TEXT    COLLATE "C" NOT NULL PRIMARY KEY,
    event_no       BIGINT  NOT NULL REFERENCES validator_events (event_no),
    miner_no       BIGINT  REFERENCES validator_miners (miner_no),
    entry_no       BIGINT  REFERENCES validator_reference_entries (entry_no),
    component_hash TEXT    NOT NULL CHECK (length(component_hash) = 64),
    gateway_name   TEXT    NOT NULL,
    uid            INTEGER NOT NULL CHECK (uid BETWEEN 0 AND 65535),
    queued_at_ms   BIGINT  NOT NULL,
    claimed_by     TEXT,
    lease_until_ms BIGINT,
    attempts       INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    CHECK ((miner_no IS NULL) <> (entry_no IS NULL)),
    CHECK ((claimed_by IS NULL) = (lease_until_ms IS NULL))
);

-- Claims take the oldest claimable runs: queued, or leased until before now.
CREATE INDEX validator_run_queue_claimable
    ON validator_run_queue (lease_until_ms, queued_at_ms);
CREATE INDEX validator_run_queue_by_event ON validator_run_queue (event_no);
CREATE INDEX validator_run_queue_by_worker ON validator_run_queue (claimed_by);

-- The workers that ever registered, and what each did (what `/metrics` and
-- `sooth validator status` report).
--   state  'running' claims runs; 'draining' finishes what it holds and
--          claims nothing more (SIGTERM); 'stopped' exited; 'refused' its
--          sandbox differs from the scheduler's and it was turned away.
CREATE TABLE validator_workers (
    worker_id       TEXT    COLLATE "C" NOT NULL PRIMARY KEY CHECK (length(worker_id) BETWEEN 1 AND 128),
    host            TEXT    NOT NULL,
    sandbox_version TEXT    NOT NULL,
    concurrency     INTEGER NOT NULL CHECK (concurrency >= 1),
    state           TEXT    NOT NULL
                    CHECK (state IN ('running', 'draining', 'stopped', 'refused')),
    started_at_ms   BIGINT  NOT NULL,
    seen_at_ms      BIGINT  NOT NULL,
    claimed         BIGINT  NOT NULL DEFAULT 0 CHECK (claimed >= 0),
    completed       BIGINT  NOT NULL DEFAULT 0 CHECK (completed >= 0),
    expired         BIGINT  NOT NULL DEFAULT 0 CHECK (expired >= 0),
    detail          TEXT    NOT NULL DEFAULT ''
);

-- What the scheduler runs: the sandbox a worker must match to be handed
-- runs. One row.
CREATE TABLE validator_scheduler (
    singleton       INTEGER NOT NULL PRIMARY KEY CHECK (singleton = 1),
    sandbox_version TEXT    NOT NULL,
    seen_at_ms      BIGINT  NOT NULL
);

-- Components every worker can read, content-addressed (sha256 hex of the
-- bytes), written once.
CREATE TABLE validator_components (
    hash          TEXT    NOT NULL PRIMARY KEY CHECK (length(hash) = 64),
    bytes         BYTEA   NOT NULL,
    stored_at_ms  BIGINT  NOT NULL
);
