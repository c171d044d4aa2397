"""The catalogue service as its consumers see it: one object with its database and settings."""

from __future__ import annotations

from collections.abc import Sequence

from qti_contracts.envelope import RawEvent
from qti_runtime.consumer import Delivery
from qti_runtime.db import Database
from qti_runtime.settings import Settings
from services.catalogue.handlers import handle_registration_event, handle_registration_events


class CatalogueService:
    """Built by the runtime like every service: `CatalogueService(db, settings)`."""

    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings

    async def on_registration_event(self, event: RawEvent, _delivery: Delivery) -> None:
        await handle_registration_event(self.db, event)

    async def on_registration_events(self, items: Sequence[tuple[RawEvent, Delivery]]) -> None:
        await handle_registration_events(self.db, [event for event, _ in items])
