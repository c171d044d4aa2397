-- Fixed-window counters of `qti_runtime.ratelimit`, shared by every replica of the service.
-- `bucket` is the rule's name and a keyed hash of the subject (client or e-mail address): no personal
-- data in clear. A row lives for its window only; `window_end` lets the limiter delete old rows cheaply.
CREATE TABLE rate_limits (
    bucket       text    NOT NULL,
    window_start bigint  NOT NULL,   -- Unix seconds, a multiple of the rule's window
    window_end   bigint  NOT NULL,
    hits         integer NOT NULL,
    PRIMARY KEY (bucket, window_start)
);
CREATE INDEX rate_limits_window_end ON rate_limits (window_end);
