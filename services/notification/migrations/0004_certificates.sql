-- Certificates of attendance ("Teilnahmebescheinigung"), issued once per registration when
-- `registration.completed` says it is eligible. What the certificate states is frozen here at issue time
-- (a certificate is a record of what happened; a later rename of the offering or node does not change it).
-- No name or address: the PDF takes the participant's name from the recipient when it is mailed, and the
-- public verification (`GET /certificates/{code}`) shows only the course, its dates and the node.
CREATE TABLE certificates (
    code             text PRIMARY KEY,              -- verification code, 80 random bits, base32
    registration_id  text        NOT NULL UNIQUE,
    offering_id      text        NOT NULL,
    title            text        NOT NULL,
    kind             text        NOT NULL,
    sessions         jsonb       NOT NULL,          -- [{starts_at, ends_at, teaching_units}]
    attended_units   integer     NOT NULL,
    total_units      integer     NOT NULL,
    node_id          text        NOT NULL,
    node_name        text        NOT NULL,
    node_address     text        NOT NULL,
    issuer           text        NOT NULL,
    issued_at        timestamptz NOT NULL DEFAULT now(),
    trigger_event_id text        NOT NULL,
    revoked_at       timestamptz,
    revoked_reason   text
);
CREATE INDEX certificates_offering ON certificates (offering_id, issued_at);

-- What staff did with a certificate (re-send, revoke), with the acting person's name from the console.
CREATE TABLE certificate_actions (
    id         bigserial PRIMARY KEY,
    code       text        NOT NULL REFERENCES certificates (code),
    action     text        NOT NULL CHECK (action IN ('resend', 'revoke')),
    actor      text        NOT NULL,
    reason     text,
    at         timestamptz NOT NULL DEFAULT now()
);

-- `catalogue.node.updated` carries a revision: an older update arriving late must not win.
ALTER TABLE nodes ADD COLUMN revision integer;
