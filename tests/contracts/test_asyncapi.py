"""The committed AsyncAPI document is what the code generates, and it describes every queue and event."""

from __future__ import annotations

import json

from qti_contracts import EVENT_TYPES
from qti_host import asyncapi


def test_committed_document_matches_the_code() -> None:
    assert asyncapi.main(["--check"]) == 0, "run: python -m qti_host.asyncapi"


def test_document_covers_every_event_type_and_service_queue() -> None:
    document = json.loads(asyncapi.DOCUMENT.read_text("utf-8"))
    channels = document["channels"]
    addresses = {channel.get("address") for channel in channels.values()}
    for type_ in EVENT_TYPES:
        assert type_ in addresses, f"{type_} is not documented"
    for queue in (
        "registration.requests",
        "registration.catalogue",
        "catalogue.registrations",
        "notification.events",
        "reporting.events",
    ):
        assert queue in channels
    schemas = document["components"]["schemas"]
    assert "RegistrationRequestedEvent" in schemas and "KpiUpdatedEvent" in schemas
