"""The registration service's queues and which handler takes which event type."""

from __future__ import annotations

from qti_contracts import RoutingKey
from qti_runtime.batching import Batching
from qti_runtime.broker import QueueSpec
from qti_runtime.consumer import Subscription
from qti_runtime.settings import Settings
from services.registration.handlers import RegistrationService

SERVICE = "registration"


def subscriptions(service: RegistrationService, settings: Settings) -> list[Subscription]:
    delivery_limit, prefetch = settings.delivery_limit, settings.prefetch
    return [
        Subscription(
            QueueSpec(
                SERVICE,
                "requests",
                [RoutingKey.REGISTRATION_REQUESTED, RoutingKey.REGISTRATION_CANCELLATION_REQUESTED],
                delivery_limit=delivery_limit,
            ),
            {
                RoutingKey.REGISTRATION_REQUESTED: service.on_requested,
                RoutingKey.REGISTRATION_CANCELLATION_REQUESTED: service.on_cancellation_requested,
            },
            description="Registration requests and cancellation requests from frontends; every "
            "registration.requested is answered with exactly one confirmed, waitlisted or rejected event.",
            # Half the prefetch per transaction: one batch is decided while the next one fills.
            batching=Batching(
                service.on_requested_batch,
                max_size=max(1, prefetch // 2),
                types=frozenset({RoutingKey.REGISTRATION_REQUESTED}),
            ),
        ),
        Subscription(
            QueueSpec(
                SERVICE,
                "catalogue",
                [RoutingKey.OFFERING_PUBLISHED, RoutingKey.OFFERING_UPDATED, RoutingKey.OFFERING_CANCELLED],
                delivery_limit=delivery_limit,
            ),
            {
                RoutingKey.OFFERING_PUBLISHED: service.on_offering_changed,
                RoutingKey.OFFERING_UPDATED: service.on_offering_changed,
                RoutingKey.OFFERING_CANCELLED: service.on_offering_cancelled,
            },
            description="Registration's copy of offerings: status, capacity, deadline, limits, sessions.",
        ),
    ]
