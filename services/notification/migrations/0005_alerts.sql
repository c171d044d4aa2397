-- Offer alerts ("Angebotsalarm") and interest ("Interesse melden"), see services/notification/alerts.py.
-- The address is kept because the alert mails need it; the confirm and unsubscribe tokens are HMACs of
-- the subscription id (QTI_LINK_SECRET) and only their SHA-256 hashes are stored, to find a subscription
-- by the token in a link. The consent record (time, text version, source, confirmation time) stays with
-- the row; when a subscription ends its address is erased and only the pseudonym is kept.
CREATE TABLE alert_subscriptions (
    subscription_id      text PRIMARY KEY,
    kind                 text        NOT NULL CHECK (kind IN ('alert', 'interest')),
    email                text,                       -- NULL once ended (erased)
    recipient_ref        text        NOT NULL,       -- keyed pseudonym of the address
    topics               text[]      NOT NULL DEFAULT '{}',   -- empty: every topic
    kinds                text[]      NOT NULL DEFAULT '{}',   -- empty: every format
    counties             text[]      NOT NULL DEFAULT '{}',   -- empty with no nodes: everywhere
    nodes                text[]      NOT NULL DEFAULT '{}',
    frequency            text        NOT NULL DEFAULT 'immediate' CHECK (frequency IN ('immediate', 'weekly')),
    status               text        NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'confirmed', 'ended')),
    confirm_hash         text        NOT NULL UNIQUE,
    unsubscribe_hash     text        NOT NULL UNIQUE,
    consent_at           timestamptz NOT NULL,
    consent_text_version text        NOT NULL,
    consent_source       text        NOT NULL,
    confirmed_at         timestamptz,
    expires_at           timestamptz NOT NULL,       -- a pending sign-up is purged after this
    ended_at             timestamptz,
    end_cause            text,
    last_digest_at       timestamptz,
    created_at           timestamptz NOT NULL DEFAULT now()
);
-- The matching statement scans confirmed subscriptions of one kind; the purge the pending ones by age.
CREATE INDEX alert_subscriptions_live ON alert_subscriptions (kind, frequency) WHERE status = 'confirmed';
CREATE INDEX alert_subscriptions_pending ON alert_subscriptions (expires_at) WHERE status = 'pending';
CREATE INDEX alert_subscriptions_email ON alert_subscriptions (lower(btrim(email)));

-- Offerings waiting for a subscriber's weekly digest.
CREATE TABLE alert_digest_items (
    subscription_id text        NOT NULL REFERENCES alert_subscriptions ON DELETE CASCADE,
    offering_id     text        NOT NULL,
    added_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (subscription_id, offering_id)
);

-- Which offerings alerts were already matched for (first publication only; a later update is no news).
CREATE TABLE alert_offerings_matched (
    offering_id text PRIMARY KEY,
    matched_at  timestamptz NOT NULL DEFAULT now()
);

-- Alert mails name their subscription, so an unsubscribe can skip what is still queued.
CREATE INDEX deliveries_subscription ON deliveries ((params ->> 'subscription_id'))
    WHERE params ? 'subscription_id';
