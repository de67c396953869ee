-- Gateway spend ledger (PostgreSQL): the totals follow the reservations by
-- triggers, as in migrations/sqlite/0003_gateway_ledger_triggers.sql (see
-- there for why). Not tested yet, like the rest of the PostgreSQL schema.

CREATE FUNCTION gateway_reservation_opened() RETURNS trigger AS $$
BEGIN
    INSERT INTO gateway_run_totals (run_id, service, reserved_micros)
    VALUES (NEW.run_id, NEW.service, NEW.reserved_micros)
    ON CONFLICT (run_id, service) DO UPDATE
       SET reserved_micros = gateway_run_totals.reserved_micros + excluded.reserved_micros;
    INSERT INTO gateway_miner_day_totals (miner, day, service, reserved_micros)
    VALUES (NEW.miner, NEW.day, NEW.service, NEW.reserved_micros)
    ON CONFLICT (miner, day, service) DO UPDATE
       SET reserved_micros = gateway_miner_day_totals.reserved_micros + excluded.reserved_micros;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER gateway_reservation_opened
AFTER INSERT ON gateway_reservations
FOR EACH ROW WHEN (NEW.state = 'open')
EXECUTE FUNCTION gateway_reservation_opened();

CREATE FUNCTION gateway_reservation_closed() RETURNS trigger AS $$
BEGIN
    UPDATE gateway_run_totals
       SET reserved_micros = reserved_micros - OLD.reserved_micros,
           charged_micros = charged_micros + NEW.charged_micros
     WHERE run_id = OLD.run_id AND service = OLD.service;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'ledger inconsistent: a total of the reservation is missing';
    END IF;
    UPDATE gateway_miner_day_totals
       SET reserved_micros = reserved_micros - OLD.reserved_micros,
           charged_micros = charged_micros + NEW.charged_micros
     WHERE miner = OLD.miner AND day = OLD.day AND service = OLD.service;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'ledger inconsistent: a total of the reservation is missing';
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER gateway_reservation_closed
AFTER UPDATE OF state ON gateway_reservations
FOR EACH ROW WHEN (OLD.state = 'open' AND NEW.state <> 'open')
EXECUTE FUNCTION gateway_reservation_closed();

-- The ledger's books are read back at start: the runs that reserved in
-- the last day.
CREATE INDEX gateway_reservations_created
    ON gateway_reservations (created_at_ms);
