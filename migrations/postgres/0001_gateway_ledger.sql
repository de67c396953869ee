-- Gateway spend ledger (PostgreSQL). Owned by `proxy/src/ledger.rs`.
--
-- Same schema as migrations/sqlite/0001_gateway_ledger.sql (see the comments
-- there for what the columns mean); keep the two in step. Differences:
--   * id: BIGINT GENERATED ALWAYS AS IDENTITY here, INTEGER PRIMARY KEY
--     AUTOINCREMENT in SQLite (both never reuse an id).
--   * Not tested yet. The ledger's queries use `$N` placeholders, upserts
--     with `ON CONFLICT ... DO UPDATE` and `excluded`, and `RETURNING id`, all
--     of which PostgreSQL accepts unchanged. Only the write lock differs:
--     SQLite serialises writers with `BEGIN IMMEDIATE` (a database-wide write
--     lock), which PostgreSQL has no equivalent of. A PostgreSQL backend must
--     lock the two totals rows of the scope before reading them in
--     `reserve`: upsert them with a zero amount, then
--     `SELECT ... FOR UPDATE` (or `pg_advisory_xact_lock` on the scope keys,
--     or SERIALIZABLE isolation with retry on serialization failure).

CREATE TABLE gateway_reservations (
    id              BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id          TEXT    NOT NULL,
    miner           TEXT    NOT NULL,
    service         TEXT    NOT NULL,
    day             TEXT    NOT NULL,
    state           TEXT    NOT NULL DEFAULT 'open'
                    CHECK (state IN ('open', 'settled', 'released', 'stale')),
    reserved_micros BIGINT  NOT NULL CHECK (reserved_micros >= 0),
    charged_micros  BIGINT  NOT NULL DEFAULT 0
                    CHECK (charged_micros >= 0 AND charged_micros <= reserved_micros),
    overrun_micros  BIGINT  NOT NULL DEFAULT 0 CHECK (overrun_micros >= 0),
    estimated       BOOLEAN NOT NULL DEFAULT FALSE,
    created_at_ms   BIGINT  NOT NULL,
    closed_at_ms    BIGINT,
    CHECK (state = 'settled' OR (charged_micros = 0 AND overrun_micros = 0)),
    CHECK ((state = 'open') = (closed_at_ms IS NULL))
);

CREATE TABLE gateway_run_totals (
    run_id          TEXT   NOT NULL,
    service         TEXT   NOT NULL,
    reserved_micros BIGINT NOT NULL DEFAULT 0 CHECK (reserved_micros >= 0),
    charged_micros  BIGINT NOT NULL DEFAULT 0 CHECK (charged_micros >= 0),
    PRIMARY KEY (run_id, service)
);

CREATE TABLE gateway_miner_day_totals (
    miner           TEXT   NOT NULL,
    day             TEXT   NOT NULL,
    service         TEXT   NOT NULL,
    reserved_micros BIGINT NOT NULL DEFAULT 0 CHECK (reserved_micros >= 0),
    charged_micros  BIGINT NOT NULL DEFAULT 0 CHECK (charged_micros >= 0),
    PRIMARY KEY (miner, day, service)
);

CREATE INDEX gateway_reservations_run
    ON gateway_reservations (run_id);

CREATE INDEX gateway_reservations_open
    ON gateway_reservations (created_at_ms)
    WHERE state = 'open';
