"""The whole system plus the portal as real processes, the portal logged in as a least-privilege
`frontend` broker user made from deploy/rabbitmq/definitions.json (shared by the portal tests)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.request
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import httpx
from e2e.system_kit import System, offering_body, start_system

from devtools.mail_sink import MailSink
from support import eventually, free_port

ROOT = Path(__file__).resolve().parents[2]
DEFINITIONS = ROOT / "deploy" / "rabbitmq" / "definitions.json"
STAFF = {"Authorization": "Bearer dev-staff-token"}
LINK = re.compile(r"https?://[^\s\"<>]+/meine-anmeldung/[A-Za-z0-9_-]+")


def _ctl(*args: str, check: bool = True) -> None:
    ctl = shutil.which("rabbitmqctl")
    assert ctl, "rabbitmqctl is needed to create the portal's broker user"
    subprocess.run([ctl, "-q", *args], check=check, capture_output=True, timeout=120)


@asynccontextmanager
async def frontend_user(amqp_url: str) -> AsyncIterator[str]:
    """A broker user with exactly the `frontend` permissions of definitions.json, in this vhost."""
    document = json.loads(DEFINITIONS.read_text())
    perms = next(p for p in document["permissions"] if p["user"] == "frontend")
    topics = [t for t in document["topic_permissions"] if t["user"] == "frontend"]
    vhost = unquote(urlsplit(amqp_url).path.lstrip("/"))
    user, password = f"frontend-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    await asyncio.to_thread(_ctl, "add_user", user, password)
    try:
        await asyncio.to_thread(
            _ctl, "set_permissions", "-p", vhost, user, perms["configure"], perms["write"], perms["read"]
        )
        for t in topics:
            await asyncio.to_thread(
                _ctl, "set_topic_permissions", "-p", vhost, user, t["exchange"], t["write"], t["read"]
            )
        parts = urlsplit(amqp_url)
        netloc = f"{quote(user)}:{password}@{parts.hostname}:{parts.port or 5672}"
        yield urlunsplit(parts._replace(netloc=netloc))
    finally:
        await asyncio.to_thread(_ctl, "delete_user", user, check=False)  # gone with a reset broker


@dataclass
class PortalSystem:
    system: System
    url: str
    frontend_amqp_url: str
    process: subprocess.Popen[bytes]
    log: Any

    @property
    def sink_url(self) -> str:
        return self.system.sink_url

    def log_text(self) -> str:
        self.log.seek(0)
        return str(self.log.read().decode(errors="replace"))

    async def create_offering(self, capacity: int, title: str, *, waitlist_limit: int = 10) -> str:
        """A published offering (staff API of catalogue), seen by registration before it returns."""
        catalogue = self.system.urls["catalogue"]
        async with httpx.AsyncClient(base_url=catalogue, headers=STAFF, timeout=30) as client:
            body = offering_body(capacity, waitlist_limit=waitlist_limit, title=title)
            created = (await client.post("/offerings", json=body)).json()
            offering_id = str(created["offering_id"])
            assert (await client.post(f"/offerings/{offering_id}/publish")).status_code == 200
        return offering_id

    async def node_of(self, offering_id: str) -> str:
        async with httpx.AsyncClient(base_url=self.system.urls["catalogue"], timeout=30) as client:
            return str((await client.get(f"/offerings/{offering_id}")).json()["node_id"])

    async def mails(self) -> list[dict[str, Any]]:
        async with httpx.AsyncClient(timeout=10) as client:
            listing: list[dict[str, Any]] = (await client.get(f"{self.sink_url}/api/mails")).json()
        return listing

    async def mail_text(self, name: str) -> str:
        async with httpx.AsyncClient(timeout=10) as client:
            return (await client.get(f"{self.sink_url}/mail/{name}/raw")).text

    async def personal_link(self, recipient: str, subject_start: str = "") -> str:
        """The personal link from the newest mail to `recipient` (waiting until it arrives)."""

        async def mail() -> dict[str, Any] | None:
            found = [
                m
                for m in await self.mails()
                if recipient in m["to"] and m["subject"].startswith(subject_start)
            ]
            return found[-1] if found else None

        found = await eventually(mail, timeout=60)
        raw = await self.mail_text(found["name"])
        import email
        import email.policy

        message = email.message_from_string(raw, policy=email.policy.default)
        body = message.get_body(preferencelist=("plain",))
        assert body is not None
        match = LINK.search(body.get_content())
        assert match, f"no personal link in the mail {found['subject']!r}"
        return match.group(0)


def _wait_ready(url: str, process: subprocess.Popen[bytes]) -> bool:
    if process.poll() is not None:
        raise AssertionError(f"portal exited with {process.returncode}")
    try:
        return bool(urllib.request.urlopen(f"{url}/readyz", None, 2).status == 200)
    except OSError:
        return False


@asynccontextmanager
async def start_portal_system(
    database_url: str, amqp_url: str, mail_sink: MailSink, portal_env: dict[str, str] | None = None
) -> AsyncIterator[PortalSystem]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    async with (
        start_system(database_url, amqp_url, mail_sink, {"QTI_PORTAL_URL": url}) as system,
        frontend_user(amqp_url) as frontend_url,
    ):
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "contracts")]),
            "QTI_AMQP_URL": frontend_url,
            "QTI_CATALOGUE_URL": system.urls["catalogue"],
            "QTI_REGISTRATION_URL": system.urls["registration"],
            "QTI_NOTIFICATION_URL": system.urls["notification"],
            "QTI_REPORTING_URL": system.urls["reporting"],
            "QTI_PORTAL_PORT": str(port),
            "QTI_PORTAL_URL": url,
            "QTI_REDIS_PREFIX": f"qti-portal-test-{uuid.uuid4().hex[:8]}",
            "QTI_LOG_LEVEL": "WARNING",
            **(portal_env or {}),
        }
        env.pop("QTI_DATABASE_URL", None)
        log = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the process
        process = subprocess.Popen(
            [sys.executable, "-m", "frontends.portal"], env=env, cwd=ROOT, stdout=log, stderr=log
        )
        portal = PortalSystem(system, url, frontend_url, process, log)
        try:
            await eventually(lambda: asyncio.to_thread(_wait_ready, url, process), timeout=60, interval=0.3)
            yield portal
        finally:
            process.terminate()
            await asyncio.to_thread(process.wait, 20)
