-- Transactional outbox: rows are written in the same transaction as the state change they announce.
CREATE TABLE outbox (
    id             bigserial PRIMARY KEY,
    event_id       text        NOT NULL,
    exchange       text        NOT NULL,
    routing_key    text        NOT NULL,
    body           bytea       NOT NULL,
    headers        jsonb       NOT NULL DEFAULT '{}'::jsonb,
    correlation_id text,
    -- 'event' rows must reach a queue; 'reply' rows go to a client's reply queue that may be gone.
    kind           text        NOT NULL DEFAULT 'event' CHECK (kind IN ('event', 'reply')),
    created_at     timestamptz NOT NULL DEFAULT now(),
    available_at   timestamptz NOT NULL DEFAULT now(),
    attempts       integer     NOT NULL DEFAULT 0,
    last_error     text
);
CREATE INDEX outbox_available ON outbox (available_at, id);

-- Inbox: one row per (consumer, event id) handled, written in the transaction of the handler's effects.
CREATE TABLE inbox (
    consumer    text        NOT NULL,
    event_id    text        NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, event_id)
);
CREATE INDEX inbox_received_at ON inbox (received_at);
