"""Reporting's subscription: one queue for every catalogue, registration and notification event."""

from __future__ import annotations

from qti_contracts import EVENT_TYPES
from qti_runtime.batching import Batching
from qti_runtime.broker import QueueSpec
from qti_runtime.consumer import Subscription
from qti_runtime.settings import Settings
from services.reporting.handlers import ReportingHandlers

SERVICE = "reporting"
ROUTING_KEYS = ("catalogue.#", "registration.#", "notification.#")
EVENTS_QUEUE = QueueSpec(SERVICE, "events", ROUTING_KEYS)
CONSUMED_TYPES = tuple(
    sorted(t for t in EVENT_TYPES if t.startswith(("catalogue.", "registration.", "notification.")))
)


def subscriptions(handlers: ReportingHandlers, settings: Settings) -> list[Subscription]:
    # Half the prefetch per transaction: one batch fills while the other commits.
    batch_size = max(1, settings.prefetch // 2)
    return [
        Subscription(
            EVENTS_QUEUE,
            {event_type: handlers.handle for event_type in CONSUMED_TYPES},
            description="Scrubs personal data, appends to the raw log and updates the projections.",
            # A type added later (e.g. registration.requested.v2) may carry personal data: it must not be
            # parked unscrubbed in reporting.dead-letter, so reporting skips types it does not know.
            unknown_types="ignore",
            batching=Batching(handlers.handle_batch, max_size=batch_size),
        )
    ]
