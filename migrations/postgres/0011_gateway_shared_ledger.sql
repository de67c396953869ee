-- Gateways sharing one spend ledger (PostgreSQL). Owned by
-- `proxy/src/ledger/shared/`. The SQLite twin,
-- migrations/sqlite/0011_gateway_shared_ledger.sql, has the same tables,
-- which stay empty there: a SQLite ledger belongs to one gateway.
--
-- Every running gateway is an instance. A cap scope (a run on a service,
-- or a miner's UTC day on a service) is handed out to instances in
-- slices: an instance decides its calls in memory against the slices it
-- holds, and asks for a larger slice (gateway_grant) when one runs out.
-- What keeps the caps: for every scope,
--     gone_micros + SUM(granted_micros of its slices) <= the cap
-- at every grant, under the scope row's lock. An instance that closes, or
-- whose lease ran out, gives its slices up (gateway_give_up_slice): what
-- its recorded reservations committed in the scope (open ones in full, as
-- they may have been billed) moves to gone_micros, the rest is free again.
-- An instance records its reservations behind, but never lets what it has
-- not recorded in a scope pass the slice's margin_micros (a 32nd of the
-- cap): beyond it, a reservation waits for its record before its call is
-- made. So when a dead instance's slice is given up, its records plus the
-- margin cover everything it spent.

-- Reservation ids are the instance's id times 2^40 plus a count: unique
-- across instances without asking the database for each.
ALTER TABLE gateway_reservations ALTER COLUMN id DROP IDENTITY;
ALTER TABLE gateway_reservations ADD COLUMN gateway BIGINT;

-- What a shared ledger reads its reservations by: a run (the index on
-- run_id), a miner's day, and an instance's part of either (giving a
-- slice up), through these two with a filter on the instance.
CREATE INDEX gateway_reservations_miner_day
    ON gateway_reservations (miner, day, service);
-- These serve a file's ledger reading its books back at start; a ledger
-- in PostgreSQL is shared and never does, and every index is paid for on
-- every call.
DROP INDEX gateway_reservations_open;
DROP INDEX gateway_reservations_created;

-- The per-scope totals (gateway_run_totals, gateway_miner_day_totals) are
-- kept for a gateway's own ledger only. Shared ones would be rows that
-- every gateway's journal locks for every call of a miner, in whatever
-- order its batch holds them: contention and deadlocks between gateways.
-- A shared ledger's reports sum its reservations instead (by index).
DROP TRIGGER gateway_reservation_opened ON gateway_reservations;
CREATE TRIGGER gateway_reservation_opened
AFTER INSERT ON gateway_reservations
FOR EACH ROW WHEN (NEW.state = 'open' AND NEW.gateway IS NULL)
EXECUTE FUNCTION gateway_reservation_opened();

DROP TRIGGER gateway_reservation_closed ON gateway_reservations;
CREATE TRIGGER gateway_reservation_closed
AFTER UPDATE OF state ON gateway_reservations
FOR EACH ROW WHEN (OLD.state = 'open' AND NEW.state <> 'open' AND NEW.gateway IS NULL)
EXECUTE FUNCTION gateway_reservation_closed();

--   state        live; closed (gave its slices up); fenced (its lease ran
--                out and another instance gave its slices up for it: it
--                may record nothing more);
--   lease_until_ms  by the database's clock, renewed by every journal
--                batch and by a heartbeat;
--   reservations, charged_micros  what it recorded, for the operators.
CREATE TABLE gateway_instances (
    id             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    host           TEXT   NOT NULL,
    started_at_ms  BIGINT NOT NULL,
    lease_until_ms BIGINT NOT NULL,
    state          TEXT   NOT NULL DEFAULT 'live'
                   CHECK (state IN ('live', 'closed', 'fenced')),
    reservations   BIGINT NOT NULL DEFAULT 0,
    refusals       BIGINT NOT NULL DEFAULT 0,
    charged_micros BIGINT NOT NULL DEFAULT 0
);

--   kind     'run' (subject = run id, day = '') or 'day' (subject = miner);
--   gone_micros  what instances that gave their slices up committed here.
CREATE TABLE gateway_budget_scopes (
    kind        TEXT   NOT NULL COLLATE "C" CHECK (kind IN ('run', 'day')),
    subject     TEXT   NOT NULL COLLATE "C",
    day         TEXT   NOT NULL COLLATE "C",
    service     TEXT   NOT NULL COLLATE "C",
    gone_micros BIGINT NOT NULL DEFAULT 0 CHECK (gone_micros >= 0),
    PRIMARY KEY (kind, subject, day, service)
);

CREATE TABLE gateway_budget_slices (
    kind           TEXT   NOT NULL COLLATE "C",
    subject        TEXT   NOT NULL COLLATE "C",
    day            TEXT   NOT NULL COLLATE "C",
    service        TEXT   NOT NULL COLLATE "C",
    gateway        BIGINT NOT NULL REFERENCES gateway_instances (id),
    granted_micros BIGINT NOT NULL CHECK (granted_micros >= 0),
    margin_micros  BIGINT NOT NULL DEFAULT 0 CHECK (margin_micros >= 0),
    PRIMARY KEY (kind, subject, day, service, gateway),
    FOREIGN KEY (kind, subject, day, service) REFERENCES gateway_budget_scopes
);

CREATE INDEX gateway_budget_slices_gateway ON gateway_budget_slices (gateway);

-- What instance p_gateway's recorded reservations commit in a scope.
CREATE FUNCTION gateway_committed_by(
    p_gateway BIGINT, p_kind TEXT, p_subject TEXT, p_day TEXT, p_service TEXT
) RETURNS BIGINT AS $$
    SELECT COALESCE(SUM(CASE state WHEN 'open' THEN reserved_micros
                                   WHEN 'settled' THEN charged_micros
                                   ELSE 0 END), 0)::BIGINT
      FROM gateway_reservations
     WHERE gateway = p_gateway AND service = p_service
       AND CASE p_kind WHEN 'run' THEN run_id = p_subject
                       ELSE miner = p_subject AND day = p_day END
$$ LANGUAGE sql STABLE;

-- Gives instance p_gateway's slice of a scope up: what it committed there
-- stays taken (gone_micros), plus, when p_with_margin (it died: it may
-- have made calls it had not recorded), the slice's margin, but never more
-- than the slice; the rest is free.
CREATE FUNCTION gateway_give_up_slice(
    p_gateway BIGINT, p_kind TEXT, p_subject TEXT, p_day TEXT, p_service TEXT,
    p_with_margin BOOLEAN
) RETURNS VOID AS $$
BEGIN
    UPDATE gateway_budget_scopes s
       SET gone_micros = s.gone_micros + LEAST(
               sl.granted_micros,
               gateway_committed_by(p_gateway, p_kind, p_subject, p_day, p_service)
               + CASE WHEN p_with_margin THEN sl.margin_micros ELSE 0 END)
      FROM gateway_budget_slices sl
     WHERE s.kind = p_kind AND s.subject = p_subject AND s.day = p_day
       AND s.service = p_service
       AND sl.kind = p_kind AND sl.subject = p_subject AND sl.day = p_day
       AND sl.service = p_service AND sl.gateway = p_gateway;
    DELETE FROM gateway_budget_slices
     WHERE kind = p_kind AND subject = p_subject AND day = p_day AND service = p_service
       AND gateway = p_gateway;
END;
$$ LANGUAGE plpgsql;

-- Grows instance p_gateway's slices of a run's scope and of its miner's
-- day by at least p_run_need and p_day_need micro-dollars, both or
-- neither, keeping each scope within its cap. First gives up the slices
-- of instances whose lease ran out (fencing them, under their row's lock,
-- so that a journal batch of theirs either committed before or never
-- will). A scope grants a quarter of what it has free, or the need if
-- that is more. Returns the amounts granted, or, when a scope cannot
-- cover its need, refused_kind and what that scope had free (nothing is
-- granted then).
CREATE FUNCTION gateway_grant(
    p_gateway BIGINT, p_run TEXT, p_miner TEXT, p_day TEXT, p_service TEXT,
    p_run_cap BIGINT, p_run_need BIGINT, p_day_cap BIGINT, p_day_need BIGINT,
    OUT run_granted BIGINT, OUT day_granted BIGINT,
    OUT refused_kind TEXT, OUT free_micros BIGINT
) AS $$
DECLARE
    now_ms BIGINT := (EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::BIGINT;
    kinds TEXT[] := ARRAY['run', 'day'];
    subjects TEXT[] := ARRAY[p_run, p_miner];
    days TEXT[] := ARRAY['', p_day];
    caps BIGINT[] := ARRAY[p_run_cap, p_day_cap];
    needs BIGINT[] := ARRAY[p_run_need, p_day_need];
    grants BIGINT[] := ARRAY[0, 0]::BIGINT[];
    gone BIGINT;
    held BIGINT;
    free BIGINT;
    lapsed BIGINT;
    any_lapsed BOOLEAN;
BEGIN
    PERFORM 1 FROM gateway_instances WHERE id = p_gateway AND state = 'live';
    IF NOT FOUND THEN
        RAISE EXCEPTION 'gateway instance fenced: %', p_gateway;
    END IF;
    -- Always run before day: two instances lock scopes in one order.
    FOR i IN 1..2 LOOP
        IF needs[i] <= 0 THEN
            CONTINUE;
        END IF;
        -- Creates the scope or locks it (an update of nothing but the lock).
        INSERT INTO gateway_budget_scopes AS s (kind, subject, day, service)
        VALUES (kinds[i], subjects[i], days[i], p_service)
        ON CONFLICT (kind, subject, day, service) DO UPDATE SET gone_micros = s.gone_micros
        RETURNING s.gone_micros INTO gone;
        SELECT COALESCE(SUM(sl.granted_micros), 0),
               COALESCE(bool_or(sl.gateway <> p_gateway
                                AND (g.state <> 'live' OR g.lease_until_ms < now_ms)), FALSE)
          INTO held, any_lapsed
          FROM gateway_budget_slices sl
          JOIN gateway_instances g ON g.id = sl.gateway
         WHERE sl.kind = kinds[i] AND sl.subject = subjects[i] AND sl.day = days[i]
           AND sl.service = p_service;
        IF any_lapsed THEN
            FOR lapsed IN
                SELECT sl.gateway FROM gateway_budget_slices sl
                  JOIN gateway_instances g ON g.id = sl.gateway
                 WHERE sl.kind = kinds[i] AND sl.subject = subjects[i] AND sl.day = days[i]
                   AND sl.service = p_service AND sl.gateway <> p_gateway
                   AND (g.state <> 'live' OR g.lease_until_ms < now_ms)
            LOOP
                UPDATE gateway_instances SET state = 'fenced'
                 WHERE id = lapsed AND state = 'live' AND lease_until_ms < now_ms;
                -- Under the instance's row lock now: a journal batch of
                -- its either committed before (and renewed the lease) or
                -- never will.
                PERFORM 1 FROM gateway_instances WHERE id = lapsed AND state <> 'live';
                IF FOUND THEN
                    PERFORM gateway_give_up_slice(lapsed, kinds[i], subjects[i], days[i],
                                                  p_service, TRUE);
                END IF;
            END LOOP;
            SELECT s.gone_micros INTO gone FROM gateway_budget_scopes s
             WHERE s.kind = kinds[i] AND s.subject = subjects[i] AND s.day = days[i]
               AND s.service = p_service;
            SELECT COALESCE(SUM(sl.granted_micros), 0) INTO held
              FROM gateway_budget_slices sl
             WHERE sl.kind = kinds[i] AND sl.subject = subjects[i] AND sl.day = days[i]
               AND sl.service = p_service;
        END IF;
        free := caps[i] - gone - held;
        IF free < needs[i] THEN
            refused_kind := kinds[i];
            free_micros := GREATEST(free, 0);
            UPDATE gateway_instances SET refusals = refusals + 1 WHERE id = p_gateway;
            RETURN;
        END IF;
        grants[i] := GREATEST(needs[i], free / 4);
    END LOOP;
    FOR i IN 1..2 LOOP
        IF grants[i] > 0 THEN
            INSERT INTO gateway_budget_slices AS sl
                   (kind, subject, day, service, gateway, granted_micros, margin_micros)
            VALUES (kinds[i], subjects[i], days[i], p_service, p_gateway, grants[i],
                    caps[i] / 32)
            ON CONFLICT (kind, subject, day, service, gateway) DO UPDATE
               SET granted_micros = sl.granted_micros + excluded.granted_micros,
                   margin_micros = GREATEST(sl.margin_micros, excluded.margin_micros);
        END IF;
    END LOOP;
    run_granted := grants[1];
    day_granted := grants[2];
END;
$$ LANGUAGE plpgsql;

-- An instance closing: gives every slice of its up (runs before days, the
-- order grants lock scopes in). It has written its journal first, so its
-- margins are not counted, unless p_with_margin.
CREATE FUNCTION gateway_close_instance(p_gateway BIGINT, p_with_margin BOOLEAN)
RETURNS VOID AS $$
DECLARE
    s RECORD;
BEGIN
    UPDATE gateway_instances SET state = 'closed' WHERE id = p_gateway AND state = 'live';
    FOR s IN
        SELECT kind, subject, day, service FROM gateway_budget_slices
         WHERE gateway = p_gateway
         ORDER BY kind DESC, subject, day, service
    LOOP
        PERFORM gateway_give_up_slice(p_gateway, s.kind, s.subject, s.day, s.service,
                                      p_with_margin);
    END LOOP;
END;
$$ LANGUAGE plpgsql;

-- One batch of an instance's journal, in one round trip: renews its lease
-- (refusing, with nothing written, if it was fenced), records the new
-- reservations (r_*; r_gateways: the instance that made each, an earlier
-- one of the same gateway for calls made before it was fenced), closes
-- reservations (c_*; all must be open), and shrinks its slices by what it
-- hands back (g_*).
CREATE FUNCTION gateway_journal(
    p_gateway BIGINT, p_lease_ms BIGINT,
    r_ids BIGINT[], r_gateways BIGINT[], r_runs TEXT[], r_miners TEXT[], r_services TEXT[], r_days TEXT[],
    r_reserved BIGINT[], r_created BIGINT[],
    c_ids BIGINT[], c_states TEXT[], c_charged BIGINT[], c_overrun BIGINT[],
    c_estimated BOOLEAN[], c_closed BIGINT[],
    g_kinds TEXT[], g_subjects TEXT[], g_days TEXT[], g_services TEXT[], g_micros BIGINT[]
) RETURNS VOID AS $$
DECLARE
    now_ms BIGINT := (EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::BIGINT;
    closed BIGINT;
BEGIN
    UPDATE gateway_instances
       SET lease_until_ms = now_ms + p_lease_ms,
           reservations = reservations + cardinality(r_ids),
           charged_micros = charged_micros
                            + (SELECT COALESCE(SUM(c), 0) FROM UNNEST(c_charged) AS c)
     WHERE id = p_gateway AND state = 'live';
    IF NOT FOUND THEN
        RAISE EXCEPTION 'gateway instance fenced: %', p_gateway;
    END IF;
    INSERT INTO gateway_reservations
           (id, run_id, miner, service, day, state, reserved_micros, created_at_ms, gateway)
    SELECT u.id, u.run_id, u.miner, u.service, u.day, 'open', u.reserved, u.created, u.gateway
      FROM UNNEST(r_ids, r_gateways, r_runs, r_miners, r_services, r_days, r_reserved,
                  r_created)
           AS u(id, gateway, run_id, miner, service, day, reserved, created);
    UPDATE gateway_reservations r
       SET state = c.state, charged_micros = c.charged, overrun_micros = c.overrun,
           estimated = c.estimated, closed_at_ms = c.closed_at
      FROM UNNEST(c_ids, c_states, c_charged, c_overrun, c_estimated, c_closed)
           AS c(id, state, charged, overrun, estimated, closed_at)
     WHERE r.id = c.id AND r.state = 'open';
    GET DIAGNOSTICS closed = ROW_COUNT;
    IF closed <> cardinality(c_ids) THEN
        RAISE EXCEPTION 'ledger inconsistent: % of % closed reservations were not open',
            cardinality(c_ids) - closed, cardinality(c_ids);
    END IF;
    UPDATE gateway_budget_slices s
       SET granted_micros = GREATEST(s.granted_micros - g.micros, 0)
      FROM UNNEST(g_kinds, g_subjects, g_days, g_services, g_micros)
           AS g(kind, subject, day, service, micros)
     WHERE s.kind = g.kind AND s.subject = g.subject AND s.day = g.day
       AND s.service = g.service AND s.gateway = p_gateway;
END;
$$ LANGUAGE plpgsql;
