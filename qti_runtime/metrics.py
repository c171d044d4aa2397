"""Prometheus metrics shared by every service (one process = one service)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

MESSAGES_HANDLED = Counter(
    "qti_messages_handled_total",
    "Messages consumed, by queue, event type and outcome (ok, duplicate, dead_lettered, requeued).",
    ["service", "queue", "type", "outcome"],
)
HANDLER_SECONDS = Histogram(
    "qti_handler_seconds",
    "Time spent handling one message, by event type.",
    ["service", "type"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
DEAD_LETTERED = Counter(
    "qti_dead_lettered_total",
    "Messages this service moved to its dead-letter queue, by reason kind.",
    ["service", "queue", "reason"],
)
OUTBOX_PUBLISHED = Counter("qti_outbox_published_total", "Outbox rows confirmed by the broker.", ["service"])
OUTBOX_PUBLISH_FAILURES = Counter(
    "qti_outbox_publish_failures_total", "Outbox publishes that failed and were postponed.", ["service"]
)
OUTBOX_BACKLOG = Gauge("qti_outbox_backlog", "Outbox rows not yet published.", ["service"])
OUTBOX_OLDEST_AGE = Gauge(
    "qti_outbox_oldest_age_seconds", "Age of the oldest unpublished outbox row.", ["service"]
)
DEAD_LETTER_DEPTH = Gauge(
    "qti_dead_letter_queue_messages", "Messages waiting in the service's dead-letter queue.", ["service"]
)
READY = Gauge("qti_ready", "1 while broker, database and consumers are all up.", ["service"])
OUTBOX_PARKED = Gauge(
    "qti_outbox_parked_rows",
    "Outbox rows parked after the broker or the AMQP encoder refused them (`qti outbox` lists them).",
    ["service"],
)
OUTBOX_PARKED_TOTAL = Counter(
    "qti_outbox_parked_total", "Outbox rows this process parked (each with its error).", ["service"]
)
