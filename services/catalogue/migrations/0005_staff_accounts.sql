-- The staff directory: accounts of the staff console (argon2id hashes, role, lockout counters) and the
-- audit log of staff actions. The closed list of actions lives in services/catalogue/staff_rules.py.

CREATE TABLE staff_accounts (
    account_id       uuid        PRIMARY KEY,
    email            text        NOT NULL UNIQUE
                                 CHECK (email = lower(email) AND length(email) BETWEEN 3 AND 254),
    password_hash    text        NOT NULL,
    role             text        NOT NULL CHECK (role IN ('lead', 'node')),
    node_id          uuid        REFERENCES nodes (node_id),
    created_at       timestamptz NOT NULL DEFAULT now(),
    disabled_at      timestamptz,
    failed_attempts  integer     NOT NULL DEFAULT 0 CHECK (failed_attempts >= 0),
    first_failure_at timestamptz,
    locked_until     timestamptz,
    CHECK ((role = 'node') = (node_id IS NOT NULL))
);

CREATE TABLE staff_audit (
    id               bigserial   PRIMARY KEY,
    at               timestamptz NOT NULL DEFAULT now(),
    actor_account_id uuid        NOT NULL REFERENCES staff_accounts (account_id),
    actor_email      text        NOT NULL,
    action           text        NOT NULL CHECK (action ~ '^[a-z_]{1,40}\.[a-z_]{1,40}$'),
    node_id          uuid,
    offering_id      uuid,
    subject          text        CHECK (length(subject) <= 200),
    detail           jsonb       NOT NULL DEFAULT '{}'::jsonb
                                 CHECK (jsonb_typeof(detail) = 'object' AND length(detail::text) <= 4000)
);
CREATE INDEX staff_audit_node ON staff_audit (node_id, id DESC);
