-- Gateway spend ledger (SQLite). Owned by `proxy/src/ledger.rs`.
--
-- One row per reservation. A reservation is opened before a request is
-- forwarded upstream (worst-case cost), then closed exactly once:
--   'settled'  charged the real cost, capped at the reserved amount;
--   'released' dropped with no charge (the upstream failed without billing);
--   'stale'    dropped with no charge by `release_stale` at startup (left
--              open by a crash).
-- What counts against a cap ("committed") is: reserved_micros of 'open'
-- rows plus charged_micros of 'settled' rows. The two totals tables below
-- hold exactly these sums per cap scope; the ledger updates them in the same
-- transaction as the rows.
--
-- Money is integer micro-dollars (1 USD = 1,000,000), timestamps are Unix
-- milliseconds, `day` is the UTC day 'YYYY-MM-DD' the reservation counts
-- against.
--
-- The PostgreSQL twin is migrations/postgres/0001_gateway_ledger.sql; the
-- only differences are the id column (here INTEGER PRIMARY KEY AUTOINCREMENT,
-- SQLite's rowid alias that never reuses an id; there BIGINT GENERATED ALWAYS
-- AS IDENTITY). Everything else (BIGINT, BOOLEAN with TRUE/FALSE, CHECK,
-- partial indexes, composite primary keys) is accepted by both. (SQLite could
-- make the totals tables WITHOUT ROWID; left out to keep the files alike.)

CREATE TABLE gateway_reservations (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
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
    -- Only settled rows carry a charge.
    CHECK (state = 'settled' OR (charged_micros = 0 AND overrun_micros = 0)),
    -- Open rows are not closed, closed rows have a closing time.
    CHECK ((state = 'open') = (closed_at_ms IS NULL))
);

-- Totals per cap scope, maintained in the same transactions as the rows
-- above (which stay the source of truth), so that the cap check of
-- `reserve` reads one row per scope instead of summing all of a miner's
-- reservations of the day. reserved_micros: open reservations;
-- charged_micros: settled charges.
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

-- `charges_for_run`.
CREATE INDEX gateway_reservations_run
    ON gateway_reservations (run_id);

-- `release_stale`: only open rows, oldest first.
CREATE INDEX gateway_reservations_open
    ON gateway_reservations (created_at_ms)
    WHERE state = 'open';
