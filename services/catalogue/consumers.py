"""The catalogue's subscriptions: registration outcomes keep the seat snapshot per offering."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from qti_contracts.envelope import RawEvent
from qti_contracts.topology import RoutingKey
from qti_runtime.batching import Batching
from qti_runtime.broker import QueueSpec
from qti_runtime.consumer import Delivery, Subscription
from qti_runtime.db import Database
from services.catalogue.handlers import handle_registration_event, handle_registration_events

SERVICE = "catalogue"
REGISTRATION_EVENTS = (
    RoutingKey.REGISTRATION_CONFIRMED,
    RoutingKey.REGISTRATION_WAITLISTED,
    RoutingKey.REGISTRATION_CANCELLED,
)


def registrations_spec(delivery_limit: int = 5) -> QueueSpec:
    return QueueSpec(SERVICE, "registrations", REGISTRATION_EVENTS, delivery_limit=delivery_limit)


def subscriptions(
    get_db: Callable[[], Database], *, delivery_limit: int = 5, prefetch: int = 100
) -> list[Subscription]:
    """`get_db` is called per message (the runtime creates the database after the subscriptions)."""

    async def on_registration_event(event: RawEvent, _delivery: Delivery) -> None:
        await handle_registration_event(get_db(), event)

    async def on_registration_events(items: Sequence[tuple[RawEvent, Delivery]]) -> None:
        await handle_registration_events(get_db(), [event for event, _ in items])

    return [
        Subscription(
            registrations_spec(delivery_limit),
            dict.fromkeys(REGISTRATION_EVENTS, on_registration_event),
            description="Keeps seats left per offering from registration's occupancy snapshots.",
            batching=Batching(on_registration_events, max_size=max(1, prefetch // 2)),
        )
    ]
