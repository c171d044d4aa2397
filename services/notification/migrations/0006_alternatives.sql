-- Seats per offering, from the occupancy snapshots that registration's outcome and cancellation events
-- carry (the highest version wins), so that waiting-list mails can name offerings on the same topic that
-- still have free seats (alternatives.py). No personal data.
CREATE TABLE offering_seats (
    offering_id text        PRIMARY KEY,
    confirmed   integer     NOT NULL,
    capacity    integer     NOT NULL,
    version     integer     NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
-- Candidates are looked up by topic among offerings that have not started.
CREATE INDEX offerings_topic_start ON offerings ((state ->> 'topic'), first_starts_at) WHERE NOT cancelled;
