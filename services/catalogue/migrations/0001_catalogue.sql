-- Catalogue: QTI nodes, offerings with their sessions, and the seat snapshot kept from registration events.

CREATE TABLE nodes (
    node_id    uuid        PRIMARY KEY,
    name       text        NOT NULL,
    town       text        NOT NULL,
    county     text        NOT NULL,
    host       text        NOT NULL,
    address    text        NOT NULL,
    opened_on  date        NOT NULL,
    status     text        NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'closed')),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX nodes_county ON nodes (lower(county));

CREATE TABLE offerings (
    offering_id           uuid          PRIMARY KEY,
    node_id               uuid          NOT NULL REFERENCES nodes (node_id),
    kind                  text          NOT NULL,
    topic                 text          NOT NULL,
    title                 text          NOT NULL,
    description           text          NOT NULL DEFAULT '',
    target_group          text,
    capacity              integer       NOT NULL CHECK (capacity >= 1),
    registration_deadline timestamptz,
    fee_eur               numeric(9, 2) NOT NULL DEFAULT 0 CHECK (fee_eur >= 0),
    max_per_company       integer       CHECK (max_per_company IS NULL OR max_per_company >= 1),
    waitlist_limit        integer       NOT NULL DEFAULT 0 CHECK (waitlist_limit >= 0),
    status                text          NOT NULL DEFAULT 'draft'
                                        CHECK (status IN ('draft', 'published', 'cancelled', 'completed')),
    revision              integer       NOT NULL DEFAULT 1 CHECK (revision >= 1),
    -- Opaque version tag for optimistic concurrency (HTTP ETag / If-Match); changes with every revision.
    etag                  text          NOT NULL,
    -- Denormalised from sessions, for ordering and date filters without a join.
    first_starts_at       timestamptz   NOT NULL,
    last_ends_at          timestamptz   NOT NULL,
    cancel_reason         text,
    created_at            timestamptz   NOT NULL DEFAULT now(),
    updated_at            timestamptz   NOT NULL DEFAULT now(),
    published_at          timestamptz
);
-- The public listing: status filter, ordered by first session start, then id.
CREATE INDEX offerings_listing ON offerings (status, first_starts_at, offering_id);
CREATE INDEX offerings_node_listing ON offerings (node_id, status, first_starts_at, offering_id);
CREATE INDEX offerings_topic_listing ON offerings (topic, status, first_starts_at, offering_id);
CREATE INDEX offerings_kind_listing ON offerings (kind, status, first_starts_at, offering_id);

CREATE TABLE sessions (
    offering_id    uuid        NOT NULL REFERENCES offerings (offering_id) ON DELETE CASCADE,
    session_id     uuid        NOT NULL,
    position       integer     NOT NULL,
    starts_at      timestamptz NOT NULL,
    ends_at        timestamptz NOT NULL CHECK (ends_at > starts_at),
    location       text        NOT NULL,
    teaching_units integer     NOT NULL DEFAULT 0,
    PRIMARY KEY (offering_id, session_id)
);
CREATE INDEX sessions_by_offering ON sessions (offering_id, position);

-- Seats per offering as last reported by the registration service (eventually consistent).
-- `version` comes from the event's occupancy snapshot; only a higher version replaces the row.
CREATE TABLE occupancy (
    offering_id uuid        PRIMARY KEY,
    confirmed   integer     NOT NULL DEFAULT 0 CHECK (confirmed >= 0),
    waitlisted  integer     NOT NULL DEFAULT 0 CHECK (waitlisted >= 0),
    capacity    integer,
    version     bigint      NOT NULL DEFAULT 0,
    as_of       timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- Text search (`q`): substring match over title and description, case-insensitive, with a trigram index.
-- pg_trgm is a trusted extension; it lives in `public` so every schema on the search_path sees it.
-- `search_text` is lower-cased once on write, so the query uses LIKE (much cheaper than ILIKE per row).
CREATE EXTENSION IF NOT EXISTS pg_trgm WITH SCHEMA public;
ALTER TABLE offerings
    ADD COLUMN search_text text GENERATED ALWAYS AS (lower(title || ' ' || description)) STORED;
CREATE INDEX offerings_text ON offerings USING gin (search_text public.gin_trgm_ops);
