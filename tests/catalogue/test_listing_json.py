"""The listings' items are built as JSON by Postgres (`store.search_offerings_json`); they must equal
what the single-offering endpoints build in Python (`representations.public_offering` / `.staff_offering`),
value for value and type for type, in the same key order."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import pytest
import pytest_asyncio
from catalogue.harness import STAFF, Service, isolated_service, offering_body

from devtools.demo import load_demo_data
from services.catalogue import store
from support import Isolation


def typed(item: dict[str, Any]) -> list[tuple[str, type, Any]]:
    """Key order, JSON types (0 vs 0.0) and values, sessions included."""
    return [
        (key, type(value), [typed(s) for s in value] if key == "sessions" else value)
        for key, value in item.items()
    ]


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def service(isolation: Isolation) -> AsyncIterator[Service]:
    async with isolated_service(isolation, nodes=False) as service:
        await load_demo_data(service.runtime.db)
        client = service.client
        # Odd values: fee with cents, sessions with seconds and microseconds, one in summer time, a
        # session across the change to winter time, no deadline, a draft and a cancelled offering.
        summer = datetime(2031, 10, 25, 22, 30, 15, 250_000, tzinfo=UTC)
        bodies = [
            offering_body(fee_eur=49.9, title="Cent-Gebühr"),
            offering_body(
                title="Sekunden und Zeitumstellung",
                registration_deadline=None,
                sessions=[
                    {
                        "starts_at": "2031-07-01T09:00:00.000001+02:00",
                        "ends_at": "2031-07-01T16:45:00+02:00",
                        "location": "Gotha",
                    },
                    {
                        "starts_at": summer.isoformat(),
                        "ends_at": (summer + timedelta(hours=5, seconds=7)).isoformat(),
                        "location": "Gotha",
                    },
                ],
            ),
            offering_body(title="Entwurf", fee_eur=1200),
            offering_body(title="Wird abgesagt"),
        ]
        created = []
        for body in bodies:
            response = await client.post("/offerings", json=body, headers=STAFF)
            assert response.status_code == 201, response.text
            created.append(response.json())
        for item in created[:2] + created[3:]:
            path = f"/offerings/{item['offering_id']}/publish"
            response = await client.post(path, headers={**STAFF, "If-Match": item["etag"]})
            assert response.status_code == 200, response.text
        cancel = f"/offerings/{created[3]['offering_id']}/cancel"
        response = await client.post(cancel, json={"reason": "Zu wenige Anmeldungen."}, headers=STAFF)
        assert response.status_code == 200, response.text
        async with service.runtime.db.pool.acquire() as conn:
            await store.apply_occupancy_snapshot(
                conn,
                UUID(created[0]["offering_id"]),
                version=3,
                confirmed=15,
                waitlisted=2,
                capacity=12,
                as_of=datetime(2027, 1, 10, 12, 0, 0, 123_400, tzinfo=UTC),
            )
        yield service


@pytest.mark.asyncio(loop_scope="session")
async def test_public_listing_items_equal_the_detail(service: Service) -> None:
    params = {"status": ["published", "completed", "cancelled"], "limit": 200}
    response = await service.client.get("/offerings", params=params)
    assert response.status_code == 200
    body = response.json()
    assert list(body) == ["items", "total", "limit", "offset"]
    assert body["total"] == len(body["items"]) > 10
    for item in body["items"]:
        detail = (await service.client.get(f"/offerings/{item['offering_id']}")).json()
        assert typed(item) == typed(detail)


@pytest.mark.asyncio(loop_scope="session")
async def test_staff_listing_items_equal_the_detail(service: Service) -> None:
    response = await service.client.get("/staff/offerings", params={"limit": 200}, headers=STAFF)
    assert response.status_code == 200
    items = response.json()["items"]
    assert {item["status"] for item in items} >= {"draft", "published", "cancelled"}
    for item in items:
        path = f"/staff/offerings/{item['offering_id']}"
        detail = (await service.client.get(path, headers=STAFF)).json()
        assert typed(item) == typed(detail)


@pytest.mark.asyncio(loop_scope="session")
async def test_total_without_and_with_count(service: Service) -> None:
    everything = (await service.client.get("/offerings", params={"limit": 200})).json()
    total = everything["total"]
    for limit, offset in [(1, 0), (3, 2), (200, 0), (5, total - 2), (5, total), (5, total + 10)]:
        page = (await service.client.get("/offerings", params={"limit": limit, "offset": offset})).json()
        assert page["total"] == total, (limit, offset)
        assert [i["offering_id"] for i in page["items"]] == [
            i["offering_id"] for i in everything["items"][offset : offset + limit]
        ]
