-- Reporting: an append-only log of scrubbed events, and projections (normalized facts) built from it.
-- No table holds names or e-mail addresses; persons and companies appear only as keyed pseudonyms.

CREATE TABLE event_log (
    seq bigserial PRIMARY KEY,
    event_id text NOT NULL UNIQUE,
    type text NOT NULL,
    occurred_at timestamptz NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    data jsonb NOT NULL
);

-- Projections: every update is commutative (flags only ever set, highest revision or latest time wins),
-- so duplicates and any arrival order give the same state.
CREATE TABLE nodes (
    node_id text PRIMARY KEY,
    name text NOT NULL,
    town text,
    county text NOT NULL,
    published_at timestamptz NOT NULL,
    event_id text NOT NULL
);

CREATE TABLE offerings (
    offering_id text PRIMARY KEY,
    revision integer NOT NULL,
    node_id text NOT NULL,
    kind text NOT NULL,
    topic text NOT NULL,
    capacity integer NOT NULL,
    status text NOT NULL,
    starts_at timestamptz
);

CREATE TABLE offering_sessions (
    offering_id text NOT NULL,
    session_id text NOT NULL,
    starts_at timestamptz NOT NULL,
    teaching_units integer NOT NULL,
    PRIMARY KEY (offering_id, session_id)
);

CREATE TABLE offering_cancellations (
    offering_id text PRIMARY KEY
);

CREATE TABLE requests (
    request_id text PRIMARY KEY,
    offering_id text,
    requested_at timestamptz NOT NULL,
    outcome text,
    reason text,
    size_class text
);

CREATE TABLE registrations (
    registration_id text PRIMARY KEY,
    offering_id text,
    request_id text,
    first_seen_at timestamptz NOT NULL,
    person_ref text,
    company_ref text,
    company_county text,
    size_class text,
    automotive_supplier boolean,
    gender text,
    age_band text,
    confirmed boolean NOT NULL DEFAULT false,
    waitlisted boolean NOT NULL DEFAULT false,
    cancelled boolean NOT NULL DEFAULT false,
    completed_units integer,
    completed boolean NOT NULL DEFAULT false,
    certificate_eligible boolean NOT NULL DEFAULT false
);

CREATE TABLE attendance (
    registration_id text NOT NULL,
    session_id text NOT NULL,
    offering_id text NOT NULL,
    attended boolean NOT NULL,
    recorded_at timestamptz NOT NULL,
    event_id text NOT NULL,
    PRIMARY KEY (registration_id, session_id)
);

CREATE TABLE notifications (
    notification_id text PRIMARY KEY,
    offering_id text,
    first_seen_at timestamptz NOT NULL,
    sent boolean NOT NULL DEFAULT false,
    failed_permanent boolean NOT NULL DEFAULT false
);

-- Debounced KPI events: the last event_log.seq whose figures were published.
CREATE TABLE kpi_state (
    id integer PRIMARY KEY CHECK (id = 1),
    emitted_seq bigint NOT NULL DEFAULT 0,
    emitted_at timestamptz
);
INSERT INTO kpi_state (id) VALUES (1);

-- Frozen figures per reporting period; `body` is returned byte for byte.
CREATE TABLE snapshots (
    snapshot_id text PRIMARY KEY,
    period text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    media_type text NOT NULL,
    sha256 text NOT NULL,
    body bytea NOT NULL
);
