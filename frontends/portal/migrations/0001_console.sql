-- The staff console's own data, in the portal's own schema (never a service's).
CREATE TABLE portal.staff_accounts (
    account_id      text PRIMARY KEY DEFAULT gen_random_uuid()::text,
    email           text        NOT NULL UNIQUE CHECK (email = lower(email) AND length(email) <= 254),
    password_hash   text        NOT NULL,
    role            text        NOT NULL CHECK (role IN ('node', 'lead')),
    node_id         text,
    failed_attempts integer     NOT NULL DEFAULT 0,
    first_failed_at timestamptz,
    locked_until    timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    -- node staff belong to exactly one node; the project lead to all of them
    CHECK ((role = 'node') = (node_id IS NOT NULL))
);

-- Signed-in browsers: only the SHA-256 of the cookie's random session id is stored.
CREATE TABLE portal.staff_sessions (
    session_hash text PRIMARY KEY,
    account_id   text        NOT NULL REFERENCES portal.staff_accounts (account_id) ON DELETE CASCADE,
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_seen_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX staff_sessions_account ON portal.staff_sessions (account_id);

-- Every staff action of the console: who, when, what (ids, no names), for the project lead.
CREATE TABLE portal.audit_log (
    audit_id    bigserial PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    actor       text        NOT NULL,
    action      text        NOT NULL,
    offering_id text,
    subject     text,
    detail      jsonb       NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX audit_log_at ON portal.audit_log (at DESC);
