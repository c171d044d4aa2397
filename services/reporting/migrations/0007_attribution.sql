-- Attribution without personal data: where a registration came from (`angebotsalarm`, `alternative`,
-- `interesse`; NULL = directly), from the `source` of its first outcome event. Rebuilding the projections
-- from the log fills it for every event logged since the field exists.
ALTER TABLE registrations ADD COLUMN source text;
