-- Parking: a row the broker keeps refusing (nack, return, no confirm in time), or one the AMQP encoder can
-- never encode, leaves the rows due for publishing with its error, so the rows behind it flow.
-- `refusals` counts only the broker's or the encoder's refusals of this row; `attempts` (the back-off)
-- also counts outages, which must never park a row.
ALTER TABLE outbox
    ADD COLUMN parked_at timestamptz,
    ADD COLUMN refusals  integer NOT NULL DEFAULT 0;
DROP INDEX outbox_available;
CREATE INDEX outbox_due ON outbox (available_at, id) WHERE parked_at IS NULL;
CREATE INDEX outbox_parked ON outbox (id) WHERE parked_at IS NOT NULL;
