"""Adapters to the public HTTP APIs of catalogue and registration (INTERFACE.md, "HTTP").

Answers are plain JSON dicts as documented; a missing thing is `None`, never an exception for the page.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any

import httpx

# A personal token is URL-safe base64 (contracts: 22-128 characters); anything else is never sent on.
TOKEN_PATTERN = re.compile(r"^[A-Za-z0-9_-]{22,128}$")
NODES_TTL_SECONDS = 30.0
ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,99}$")


class BackendUnavailable(Exception):
    """A service did not answer as documented (down, 5xx): the page says so in German (503)."""


@dataclass
class Backend:
    catalogue: httpx.AsyncClient
    registration: httpx.AsyncClient
    _nodes: tuple[float, list[dict[str, Any]]] | None = None

    @classmethod
    def connect(cls, catalogue_url: str, registration_url: str) -> Backend:
        timeout = httpx.Timeout(10.0, connect=3.0)
        return cls(
            httpx.AsyncClient(base_url=catalogue_url, timeout=timeout),
            httpx.AsyncClient(base_url=registration_url, timeout=timeout),
        )

    async def close(self) -> None:
        await self.catalogue.aclose()
        await self.registration.aclose()

    async def _get(
        self, client: httpx.AsyncClient, path: str, *, params: Any = None, headers: Any = None
    ) -> Any | None:
        try:
            response = await client.get(path, params=params, headers=headers)
        except httpx.HTTPError as exc:
            raise BackendUnavailable(str(exc)) from exc
        if response.status_code in (404, 422):
            return None
        if response.status_code != 200:
            raise BackendUnavailable(f"{path}: {response.status_code}")
        return response.json()

    async def nodes(self) -> list[dict[str, Any]]:
        """The nodes, kept for NODES_TTL_SECONDS: every page needs them and they change rarely."""
        now = time.monotonic()
        if self._nodes is None or now - self._nodes[0] > NODES_TTL_SECONDS:
            found = await self._get(self.catalogue, "/nodes")
            nodes = list(found["items"]) if found else []
            if not nodes:
                return []  # not kept: the catalogue may be loading its nodes right now
            self._nodes = (now, nodes)
        return self._nodes[1]

    async def offerings(self, params: list[tuple[str, str]], limit: int = 200) -> dict[str, Any]:
        found = await self._get(self.catalogue, "/offerings", params=[*params, ("limit", str(limit))])
        return found or {"items": [], "total": 0}

    async def offering(self, offering_id: str) -> dict[str, Any] | None:
        if not ID_PATTERN.match(offering_id):
            return None
        found: dict[str, Any] | None = await self._get(self.catalogue, f"/offerings/{offering_id}")
        return found

    async def alternatives(self, offering_id: str, county: str | None = None) -> list[dict[str, Any]]:
        """Up to three offerings on the same topic with free seats, nearest first to `county` (a closed-list
        code; anything else is not sent); [] when there are none or the offering is unknown."""
        if not ID_PATTERN.match(offering_id):
            return []
        params = {"county": county} if county else None
        found = await self._get(self.catalogue, f"/offerings/{offering_id}/alternatives", params=params)
        return list(found["items"]) if found else []

    async def node_calendar(self, node_id: str) -> bytes | None:
        """The node's iCalendar feed from the catalogue; None for an unknown node."""
        if not ID_PATTERN.match(node_id):
            return None
        try:
            response = await self.catalogue.get(f"/nodes/{node_id}/calendar.ics")
        except httpx.HTTPError as exc:
            raise BackendUnavailable(str(exc)) from exc
        if response.status_code in (404, 422):
            return None
        if response.status_code != 200:
            raise BackendUnavailable(f"calendar: {response.status_code}")
        return response.content

    async def request_status(self, request_id: str) -> dict[str, Any] | None:
        if not ID_PATTERN.match(request_id):
            return None
        found: dict[str, Any] | None = await self._get(
            self.registration, f"/registrations/requests/{request_id}"
        )
        return found

    async def registration_by_token(self, token: str) -> dict[str, Any] | None:
        """The participant's registration; None for an unknown or forged token (never sent if malformed)."""
        if not TOKEN_PATTERN.match(token):
            return None
        found: dict[str, Any] | None = await self._get(
            self.registration, "/registrations/by-token", headers={"X-Personal-Token": token}
        )
        return found

    async def ready(self) -> bool:
        try:
            answers = [await c.get("/healthz") for c in (self.catalogue, self.registration)]
        except httpx.HTTPError:
            return False
        return all(a.status_code == 200 for a in answers)
