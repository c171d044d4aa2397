"""The notification service, declared once (`DEFINITION`); `python -m services.notification` serves it."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter

from qti_contracts import RoutingKey
from qti_runtime.db import Database
from qti_runtime.definition import Job, ServiceDefinition
from services.notification import certificate_api, privacy
from services.notification.alert_api import alerts_router
from services.notification.api import notifications_router
from services.notification.consumers import SERVICE, subscriptions
from services.notification.handlers import NotificationHandlers
from services.notification.sender import Sender
from services.notification.settings import NotificationSettings

MIGRATIONS = Path(__file__).parent / "migrations"


def jobs(handlers: NotificationHandlers, settings: NotificationSettings) -> list[Job]:
    # The sender has its own small pool: under load the consumers keep every connection of the main pool
    # busy, and a sender queueing behind them for each claim and `sent` mark would nearly stop.
    sender_db = Database(settings.database_url, SERVICE, min_size=2, max_size=4)
    sender = Sender(sender_db, settings)

    async def run_sender() -> None:
        await sender_db.connect()
        try:
            await sender.run()
        finally:
            await sender_db.close()

    return [("notification-sender", run_sender), ("notification-alerts", handlers.alerts.run)]


def routers(handlers: NotificationHandlers, settings: NotificationSettings) -> list[APIRouter]:
    return [
        notifications_router(handlers.db, settings),
        alerts_router(handlers.db, settings, handlers.alerts),
        certificate_api.public_router(handlers.db, settings),
        certificate_api.staff_router(handlers.db, settings, handlers.certificates),
    ]


DEFINITION: ServiceDefinition[NotificationSettings, NotificationHandlers] = ServiceDefinition(
    name=SERVICE,
    title="qti-net notification",
    settings=NotificationSettings,
    service=NotificationHandlers,
    subscriptions=subscriptions,
    publishes=(
        RoutingKey.NOTIFICATION_SENT,
        RoutingKey.NOTIFICATION_FAILED,
        RoutingKey.ALERT_SUBSCRIBED,
        RoutingKey.ALERT_CONFIRMED,
        RoutingKey.ALERT_ENDED,
    ),
    routers=routers,
    jobs=jobs,
    migrations=MIGRATIONS,
    forget_person=privacy.forget_person,
)


# For tests and benchmarks that build one service the same way its process does.
build_runtime = DEFINITION.build_runtime
create_app = DEFINITION.create_app
