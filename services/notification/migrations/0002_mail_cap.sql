-- The cap on unsolicited mails (mailcap.py) asks whether an address ever had a confirmed registration;
-- the purge (`qti forget-person`) matches addresses the same way.
CREATE INDEX recipients_email ON recipients (lower(btrim(email)));
CREATE INDEX deliveries_confirmed_email ON deliveries (lower(btrim(email)))
    WHERE template IN ('confirmation', 'promoted');
