-- Gateway spend ledger (SQLite): the totals follow the reservations by
-- triggers. Owned by `proxy/src/ledger.rs`.
--
-- 0001 had the ledger update gateway_run_totals and gateway_miner_day_totals
-- itself, in the same transaction as each reservation row: five or six
-- statements per operation, each a round trip to the connection's thread.
-- With these triggers, reserving is one INSERT ... SELECT ... WHERE <fits>
-- and closing is one UPDATE, each atomic on its own, and the totals cannot
-- drift from the rows whoever writes them.
--
-- Opening a reservation adds its amount to both scopes' open totals.
CREATE TRIGGER gateway_reservation_opened
AFTER INSERT ON gateway_reservations
WHEN NEW.state = 'open'
BEGIN
    INSERT INTO gateway_run_totals (run_id, service, reserved_micros)
    VALUES (NEW.run_id, NEW.service, NEW.reserved_micros)
    ON CONFLICT (run_id, service) DO UPDATE
       SET reserved_micros = reserved_micros + excluded.reserved_micros;
    INSERT INTO gateway_miner_day_totals (miner, day, service, reserved_micros)
    VALUES (NEW.miner, NEW.day, NEW.service, NEW.reserved_micros)
    ON CONFLICT (miner, day, service) DO UPDATE
       SET reserved_micros = reserved_micros + excluded.reserved_micros;
END;

-- Closing one moves its amount out of the open totals and its charge (zero
-- unless settled) into the charged totals. A missing total aborts the whole
-- statement: the ledger reports it as inconsistent and nothing changes.
CREATE TRIGGER gateway_reservation_closed
AFTER UPDATE OF state ON gateway_reservations
WHEN OLD.state = 'open' AND NEW.state <> 'open'
BEGIN
    SELECT RAISE(ABORT, 'ledger inconsistent: a total of the reservation is missing')
     WHERE NOT EXISTS (SELECT 1 FROM gateway_run_totals
                        WHERE run_id = OLD.run_id AND service = OLD.service)
        OR NOT EXISTS (SELECT 1 FROM gateway_miner_day_totals
                        WHERE miner = OLD.miner AND day = OLD.day AND service = OLD.service);
    UPDATE gateway_run_totals
       SET reserved_micros = reserved_micros - OLD.reserved_micros,
           charged_micros = charged_micros + NEW.charged_micros
     WHERE run_id = OLD.run_id AND service = OLD.service;
    UPDATE gateway_miner_day_totals
       SET reserved_micros = reserved_micros - OLD.reserved_micros,
           charged_micros = charged_micros + NEW.charged_micros
     WHERE miner = OLD.miner AND day = OLD.day AND service = OLD.service;
END;

-- The ledger's books are read back at start: the runs that reserved in
-- the last day.
CREATE INDEX gateway_reservations_created
    ON gateway_reservations (created_at_ms);
