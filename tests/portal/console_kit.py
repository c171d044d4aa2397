"""Helpers of the console tests: staff accounts (through the real `qti staff` module), a new node, a
signed-in HTTP client with CSRF tokens, registrations through registration's public API."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
from portal.portal_kit import ROOT, STAFF, PortalSystem

from support import eventually

PASSWORD = "ein-langes-Passwort-für-Tests"
CSRF = re.compile(r'name="csrf_token" value="([0-9a-f]+)"')


async def qti_staff(portal: PortalSystem, *args: str, password: str = PASSWORD) -> str:
    """`qti staff …` as an operator runs it, on this system's catalogue database; its output."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "contracts")]),
        "QTI_DATABASE_URL": portal.system.database_url,
    }
    done = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "qti_host.cli", "staff", *args],
        input=password + "\n", text=True, capture_output=True, env=env, cwd=ROOT, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


async def add_staff(portal: PortalSystem, email: str, node_id: str | None = None) -> None:
    """`qti staff add EMAIL --node ID|--all --password-stdin`."""
    await qti_staff(
        portal, "add", email, *(["--node", node_id] if node_id else ["--all"]), "--password-stdin"
    )


async def open_node(portal: PortalSystem, town: str) -> str:
    """A newly opened QTI node (catalogue's staff API), as the project would open one."""
    body = {
        "name": f"QTI-Knoten {town}",
        "town": town,
        "county": "Sömmerda",
        "host": "Bildungszentrum Testhausen",
        "address": f"Hauptstraße 1, 99610 {town}",
        "opened_on": date.today().isoformat(),
    }
    async with httpx.AsyncClient(
        base_url=portal.system.urls["catalogue"], headers=STAFF, timeout=30
    ) as client:
        answer = await client.post("/nodes", json=body)
    assert answer.status_code == 201, answer.text
    return str(answer.json()["node_id"])


async def register_directly(
    portal: PortalSystem, offering_id: str, given: str, family: str, email: str | None = None
) -> str:
    """A registration through registration's public API; returns its id once confirmed or waitlisted."""
    email = email or f"{given.lower()}.{uuid.uuid4().hex[:6]}@example.de"
    body = {
        "offering_id": offering_id,
        "participant": {
            "given_name": given,
            "family_name": family,
            "email": email,
            "gender": "unspecified",
            "age_band": "unspecified",
        },
        "company": {"name": f"{family} Zulieferteile GmbH", "postal_code": "99610", "county": "soemmerda"},
        "privacy_consent": True,
    }
    async with httpx.AsyncClient(base_url=portal.system.urls["registration"], timeout=30) as client:
        accepted = await client.post("/registrations", json=body)
        assert accepted.status_code == 202, accepted.text
        url = accepted.json()["status_url"]

        async def decided() -> dict[str, Any] | None:
            status: dict[str, Any] = (await client.get(url)).json()
            return status if status["status"] != "pending" else None

        status = await eventually(decided, timeout=60, interval=0.2)
    assert status["status"] in ("confirmed", "waitlisted"), status
    return str(status["registration_id"])


def later(days: int, hour: int) -> datetime:
    return (datetime.now(UTC) + timedelta(days=days)).replace(hour=hour, minute=0, second=0, microsecond=0)


@dataclass
class ConsoleClient:
    """One browser's view of the console over HTTP: cookies kept, CSRF token taken from the pages."""

    http: httpx.AsyncClient
    csrf: str = ""

    async def page(self, path: str) -> httpx.Response:
        response = await self.http.get(path)
        if found := CSRF.search(response.text):
            self.csrf = found.group(1)
        return response

    async def post(
        self, path: str, data: dict[str, str] | None = None, *, csrf: bool = True
    ) -> httpx.Response:
        if not self.csrf:
            await self.page("/verwaltung/anmelden")
        form = {**(data or {}), **({"csrf_token": self.csrf} if csrf else {})}
        return await self.http.post(path, data=form)

    async def sign_in(self, email: str, password: str = PASSWORD) -> httpx.Response:
        await self.page("/verwaltung/anmelden")
        return await self.post("/verwaltung/anmelden", {"email": email, "passwort": password})


def console_client(portal: PortalSystem) -> ConsoleClient:
    return ConsoleClient(httpx.AsyncClient(base_url=portal.url, timeout=60, follow_redirects=False))
