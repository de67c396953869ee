-- Gateways sharing one spend ledger (sqlite): the tables of the PostgreSQL
-- twin, migrations/postgres/0011_gateway_shared_ledger.sql, where they are
-- explained. Gateways share a ledger only on PostgreSQL; a SQLite ledger
-- belongs to one gateway, so here they stay empty and exist so that both
-- engines have one schema.

ALTER TABLE gateway_reservations ADD COLUMN gateway INTEGER;

CREATE TABLE gateway_instances (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    host           TEXT    NOT NULL,
    started_at_ms  INTEGER NOT NULL,
    lease_until_ms INTEGER NOT NULL,
    state          TEXT    NOT NULL DEFAULT 'live'
                   CHECK (state IN ('live', 'closed', 'fenced')),
    reservations   INTEGER NOT NULL DEFAULT 0,
    refusals       INTEGER NOT NULL DEFAULT 0,
    charged_micros INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE gateway_budget_scopes (
    kind        TEXT    NOT NULL CHECK (kind IN ('run', 'day')),
    subject     TEXT    NOT NULL,
    day         TEXT    NOT NULL,
    service     TEXT    NOT NULL,
    gone_micros INTEGER NOT NULL DEFAULT 0 CHECK (gone_micros >= 0),
    PRIMARY KEY (kind, subject, day, service)
);

CREATE TABLE gateway_budget_slices (
    kind           TEXT    NOT NULL,
    subject        TEXT    NOT NULL,
    day            TEXT    NOT NULL,
    service        TEXT    NOT NULL,
    gateway        INTEGER NOT NULL REFERENCES gateway_instances (id),
    granted_micros INTEGER NOT NULL CHECK (granted_micros >= 0),
    margin_micros  INTEGER NOT NULL DEFAULT 0 CHECK (margin_micros >= 0),
    PRIMARY KEY (kind, subject, day, service, gateway),
    FOREIGN KEY (kind, subject, day, service) REFERENCES gateway_budget_scopes
);
