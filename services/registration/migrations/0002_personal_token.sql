-- The SHA-256 of each registration's personal token (qti_runtime.links), to find the registration a
-- token from a mail link belongs to. The token itself is stored nowhere: it is derived from the request
-- id with QTI_LINK_SECRET. Rows from before this migration get theirs from the service at start-up.
ALTER TABLE registrations ADD COLUMN token_hash text;
CREATE UNIQUE INDEX registrations_token_hash ON registrations (token_hash) WHERE token_hash IS NOT NULL;
