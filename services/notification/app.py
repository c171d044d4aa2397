"""Composition root of the notification service."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from qti_runtime.db import Database
from qti_runtime.service import ServiceRuntime, serve
from services.notification.api import notifications_router
from services.notification.consumers import SERVICE, subscriptions
from services.notification.handlers import NotificationHandlers
from services.notification.sender import Sender
from services.notification.settings import NotificationSettings

MIGRATIONS = Path(__file__).parent / "migrations"


def build_runtime(settings: NotificationSettings) -> ServiceRuntime:
    handlers = NotificationHandlers(settings)
    runtime = ServiceRuntime(
        SERVICE,
        settings,
        migrations=MIGRATIONS,
        subscriptions=subscriptions(handlers, settings.delivery_limit, settings.prefetch),
    )
    handlers.bind(runtime.db)
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

    runtime.add_job("notification-sender", run_sender)
    return runtime


def create_app(settings: NotificationSettings | None = None) -> FastAPI:
    settings = settings or NotificationSettings()
    runtime = build_runtime(settings)
    return runtime.create_app(
        [notifications_router(runtime.db, settings)], title="qti-net notification", version="1.0.0"
    )


def main() -> None:
    settings = NotificationSettings()
    serve(
        create_app(settings),
        settings.http_host,
        settings.notification_port,
        grace_seconds=settings.shutdown_grace_seconds,
        nice=settings.cpu_nice,
    )
