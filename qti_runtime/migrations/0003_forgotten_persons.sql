-- Persons forgotten by `qti forget-person`, as keyed hashes (HMAC-SHA256 with the link secret) of their
-- e-mail address and registration ids, never in clear: `qti dead-letters replay` drops a dead letter
-- that mentions one of them instead of bringing the person back.
CREATE TABLE forgotten_persons (
    digest       text PRIMARY KEY,
    forgotten_at timestamptz NOT NULL DEFAULT now()
);
