-- One-time tickets of the anonymous feedback questionnaire (services/registration/feedback.py).
-- `token_hash` = SHA-256 of the token HMAC(QTI_LINK_SECRET, "feedback ticket", registration id): the row
-- names no registration and no person, and keeps no time (so a spent ticket cannot be matched with an
-- answer by its moment). `spent` turns true with the one answer the ticket allows.
CREATE TABLE feedback_tickets (
    token_hash  text    PRIMARY KEY,
    offering_id text    NOT NULL,
    spent       boolean NOT NULL DEFAULT false
);
