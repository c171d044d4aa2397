-- Notification service schema. Personal data (names, e-mail addresses) is kept here because sending
-- mails about cancellations, changes and reminders needs it; it never leaves in events.

-- Replica of the catalogue's offerings: the full payload of the newest revision seen.
CREATE TABLE offerings (
    offering_id     text PRIMARY KEY,
    revision        integer     NOT NULL DEFAULT 0,
    node_id         text,
    state           jsonb,                      -- OfferingState as JSON; NULL if only a cancellation was seen
    first_starts_at timestamptz,
    cancelled       boolean     NOT NULL DEFAULT false,
    cancel_reason   text,
    cancel_revision integer,
    updated_at      timestamptz NOT NULL DEFAULT now()
);

-- Replica of the QTI nodes (latest event wins).
CREATE TABLE nodes (
    node_id    text PRIMARY KEY,
    name       text        NOT NULL,
    town       text        NOT NULL,
    county     text        NOT NULL,
    host       text        NOT NULL,
    address    text        NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Registration requests, kept only until their outcome arrives: a rejection carries no address.
-- A rejection seen before its request leaves a row without address holding the rejection until then.
CREATE TABLE requests (
    request_id        text PRIMARY KEY,
    offering_id       text,
    given_name        text        NOT NULL DEFAULT '',
    family_name       text        NOT NULL DEFAULT '',
    email             text,
    gender            text        NOT NULL DEFAULT 'unspecified',
    rejection_event_id text,
    rejection_reason  text,
    rejection_detail  text,
    correlation_id    text,
    received_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX requests_received_at ON requests (received_at);

-- Recipients per registration. A cancellation seen before its registration leaves a tombstone
-- (status 'cancelled', email NULL) holding the cancellation until the registration arrives.
CREATE TABLE recipients (
    registration_id  text PRIMARY KEY,
    offering_id      text        NOT NULL,
    request_id       text,
    given_name       text,
    family_name      text,
    email            text,
    gender           text        NOT NULL DEFAULT 'unspecified',
    status           text        NOT NULL CHECK (status IN ('confirmed', 'waitlisted', 'cancelled')),
    cancel_event_id  text,
    cancel_event_type text,
    cancel_cause     text,
    cancel_reason    text,
    correlation_id   text,
    updated_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX recipients_offering ON recipients (offering_id, status);

-- Delivery log: one row per mail. `notification_id` is derived from (trigger, template, registration),
-- so a redelivered event finds its row instead of adding one. Reminders are rows due in the future.
CREATE TABLE deliveries (
    notification_id  text PRIMARY KEY,
    template         text        NOT NULL,
    trigger_event_id text        NOT NULL,
    trigger_type     text        NOT NULL,
    correlation_id   text,
    registration_id  text,
    request_id       text,
    offering_id      text,
    email            text        NOT NULL,
    given_name       text        NOT NULL DEFAULT '',
    family_name      text        NOT NULL DEFAULT '',
    gender           text        NOT NULL DEFAULT 'unspecified',
    recipient_ref    text        NOT NULL,
    params           jsonb       NOT NULL DEFAULT '{}'::jsonb,
    status           text        NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'sending', 'sent', 'failed', 'skipped')),
    attempts         integer     NOT NULL DEFAULT 0,
    -- pending: when to try next; sending: when the lease ends (a crashed sender's row becomes due again).
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    lease_token      uuid,
    last_error       text,
    message_id       text        NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    sent_at          timestamptz
);
CREATE INDEX deliveries_due ON deliveries (next_attempt_at) WHERE status IN ('pending', 'sending');
CREATE INDEX deliveries_registration ON deliveries (registration_id);
CREATE INDEX deliveries_offering ON deliveries (offering_id, template, status);
