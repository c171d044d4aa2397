-- `registration.rejected` carries its recipient now (an optional field added to v1), so the mirror of
-- registration's requests, kept only to know whom to tell about a rejection, goes. A rejection that was
-- waiting in it for its request (one seen before its request) is dropped with it: its mail is not sent.
DROP TABLE requests;

-- Every address in the delivery log, trimmed and lower-cased: the first mail to an address carries the
-- DSGVO Art. 14 notice (`store.known_addresses`); the cap on unsolicited mails (mailcap.py) and the
-- purge (`qti forget-person`) match addresses the same way. It replaces the partial index of 0002.
CREATE INDEX deliveries_email ON deliveries (lower(btrim(email)));
DROP INDEX deliveries_confirmed_email;
