-- What registration needs to know of each offering (kept from catalogue events) and its seat counters.
CREATE TABLE offerings (
    offering_id           text PRIMARY KEY,
    status                text        NOT NULL,
    kind                  text        NOT NULL,
    capacity              integer     NOT NULL CHECK (capacity >= 1),
    registration_deadline timestamptz NOT NULL,
    first_session_start   timestamptz,
    max_per_company       integer,
    waitlist_limit        integer     NOT NULL DEFAULT 0,
    sessions              jsonb       NOT NULL DEFAULT '[]'::jsonb,
    revision              integer     NOT NULL DEFAULT 0,
    confirmed             integer     NOT NULL DEFAULT 0 CHECK (confirmed >= 0),
    waitlisted            integer     NOT NULL DEFAULT 0 CHECK (waitlisted >= 0),
    seat_version          integer     NOT NULL DEFAULT 0,
    updated_at            timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE registrations (
    registration_id      text PRIMARY KEY,
    request_id           text        NOT NULL UNIQUE,
    offering_id          text        NOT NULL REFERENCES offerings (offering_id),
    status               text        NOT NULL CHECK (status IN ('confirmed', 'waitlisted', 'cancelled')),
    email                text        NOT NULL,
    company_key          text        NOT NULL,
    participant          jsonb       NOT NULL,
    company              jsonb       NOT NULL,
    from_waitlist        boolean     NOT NULL DEFAULT false,
    waitlist_seq         bigserial,
    cancel_cause         text,
    completion           jsonb,
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now()
);
-- One live registration per person and offering, whatever the code above it does.
CREATE UNIQUE INDEX registrations_live_email ON registrations (offering_id, email)
    WHERE status IN ('confirmed', 'waitlisted');
CREATE INDEX registrations_company ON registrations (offering_id, company_key)
    WHERE status IN ('confirmed', 'waitlisted');
CREATE INDEX registrations_waitlist ON registrations (offering_id, waitlist_seq) WHERE status = 'waitlisted';

-- Every request and its one outcome, so a redelivered request is answered again identically.
CREATE TABLE requests (
    request_id     text PRIMARY KEY,
    offering_id    text,
    status         text        NOT NULL CHECK (status IN ('pending', 'deferred', 'decided')),
    outcome_type   text,
    outcome        jsonb,
    reply_to       text,
    correlation_id text,
    envelope       jsonb,
    received_at    timestamptz NOT NULL DEFAULT now(),
    decided_at     timestamptz
);
CREATE INDEX requests_deferred ON requests (offering_id, received_at) WHERE status = 'deferred';

CREATE TABLE attendance (
    registration_id text        NOT NULL REFERENCES registrations (registration_id),
    session_id      text        NOT NULL,
    attended        boolean     NOT NULL,
    recorded_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (registration_id, session_id)
);
