"""The catalogue's subscriptions: registration outcomes keep the seat snapshot per offering."""

from __future__ import annotations

from qti_contracts import RoutingKey
from qti_runtime.batching import Batching
from qti_runtime.broker import QueueSpec
from qti_runtime.consumer import Subscription
from qti_runtime.settings import Settings
from services.catalogue.service import CatalogueService

SERVICE = "catalogue"
REGISTRATION_EVENTS = (
    RoutingKey.REGISTRATION_CONFIRMED,
    RoutingKey.REGISTRATION_WAITLISTED,
    RoutingKey.REGISTRATION_CANCELLED,
)


def registrations_spec(delivery_limit: int = 5) -> QueueSpec:
    return QueueSpec(SERVICE, "registrations", REGISTRATION_EVENTS, delivery_limit=delivery_limit)


def subscriptions(service: CatalogueService, settings: Settings) -> list[Subscription]:
    return [
        Subscription(
            registrations_spec(settings.delivery_limit),
            dict.fromkeys(REGISTRATION_EVENTS, service.on_registration_event),
            description="Keeps seats left per offering from registration's occupancy snapshots.",
            batching=Batching(service.on_registration_events, max_size=max(1, settings.prefetch // 2)),
        )
    ]
