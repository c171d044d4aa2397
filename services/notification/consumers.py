"""The notification service's one queue and what handles each event type on it."""

from __future__ import annotations

from typing import Final

from qti_contracts import RoutingKey
from qti_runtime.batching import Batching
from qti_runtime.broker import QueueSpec
from qti_runtime.consumer import Subscription
from qti_runtime.settings import Settings
from services.notification.handlers import NotificationHandlers
from services.notification.outcomes import OUTCOME_TYPES

SERVICE: Final = "notification"

ROUTING_KEYS: Final = (
    RoutingKey.REGISTRATION_CONFIRMED,
    RoutingKey.REGISTRATION_WAITLISTED,
    RoutingKey.REGISTRATION_REJECTED,
    RoutingKey.REGISTRATION_CANCELLED,
    RoutingKey.OFFERING_PUBLISHED,
    RoutingKey.OFFERING_UPDATED,
    RoutingKey.OFFERING_CANCELLED,
    RoutingKey.NODE_PUBLISHED,
    RoutingKey.NODE_UPDATED,
    RoutingKey.REGISTRATION_COMPLETED,
    RoutingKey.FEEDBACK_INVITED,
)


def events_queue(delivery_limit: int = 5) -> QueueSpec:
    return QueueSpec(SERVICE, "events", ROUTING_KEYS, delivery_limit=delivery_limit)


def subscriptions(handlers: NotificationHandlers, settings: Settings) -> list[Subscription]:
    return [
        Subscription(
            events_queue(settings.delivery_limit),
            handlers.handlers(),
            title="notification.events:consume",
            description="Registration outcomes and catalogue changes → delivery-log rows (mails to send).",
            # Outcomes, the bulk of the traffic, many to a transaction; the rest one by one.
            batching=Batching(
                handlers.on_batch, max_size=max(1, settings.prefetch // 2), types=OUTCOME_TYPES
            ),
        )
    ]
