"""deploy/rabbitmq/definitions.json imported into a test's real vhost (users renamed per test): `imported`
is a fixture, re-exported by tests/deploy/conftest.py."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import aio_pika
import aio_pika.exceptions
import pytest

ROOT = Path(__file__).resolve().parents[1]
DEFINITIONS = ROOT / "deploy" / "rabbitmq" / "definitions.json"
# The KPI consumer's bound in the test: the overflow behaviour is what is tested, not the number.
KPI_TEST_MAX_LENGTH = 5


def _ctl(*args: str) -> None:
    ctl = shutil.which("rabbitmqctl")
    assert ctl, "rabbitmqctl is needed to import definitions"
    result = subprocess.run([ctl, "-q", *args], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, f"rabbitmqctl {args[0]}: {result.stdout}{result.stderr}"


def url_for(amqp_url: str, user: str, password: str) -> str:
    parts = urlsplit(amqp_url)
    netloc = f"{quote(user, safe='')}:{quote(password, safe='')}@{parts.hostname}:{parts.port or 5672}"
    return urlunsplit(parts._replace(netloc=netloc))


@dataclass
class Imported:
    """User (as named in the definitions) -> AMQP URL logged in as that user, in this test's vhost."""

    urls: dict[str, str]
    document: dict[str, Any]

    def __getitem__(self, user: str) -> str:
        return self.urls[user]


def _localise(document: dict[str, Any], vhost: str, rename: Callable[[str], str]) -> None:
    document["vhosts"] = [{"name": vhost}]
    for section in ("queues", "exchanges", "bindings", "policies", "permissions", "topic_permissions"):
        for entry in document[section]:
            entry["vhost"] = vhost
    for section in ("users", "permissions", "topic_permissions"):
        for entry in document[section]:
            key = "name" if section == "users" else "user"
            entry[key] = rename(entry[key])
    for policy in document["policies"]:
        if policy["name"] == "kpi-consumer-bounded":
            policy["definition"]["max-length"] = KPI_TEST_MAX_LENGTH


@pytest.fixture
async def imported(amqp_url: str) -> AsyncIterator[Imported]:
    """The definitions in this test's vhost, with users renamed so that nothing global is touched."""
    vhost = unquote(urlsplit(amqp_url).path.lstrip("/"))
    prefix = f"t{uuid.uuid4().hex[:6]}-"
    document: dict[str, Any] = json.loads(DEFINITIONS.read_text())
    users = [u["name"] for u in document["users"]]
    _localise(document, vhost, lambda name: prefix + name)
    # A world-readable file outside pytest's private tmp_path: the CLI tool may run as another user.
    with tempfile.NamedTemporaryFile("w", suffix=".json", prefix="qti-definitions-") as handle:
        handle.write(json.dumps(document))
        handle.flush()
        os.chmod(handle.name, 0o644)
        await asyncio.to_thread(_ctl, "import_definitions", handle.name)
    urls = {name: url_for(amqp_url, prefix + name, f"{name}-dev-password") for name in users}
    try:
        await _until_imported(urls, document)
        yield Imported(urls, document)
    finally:
        for name in users:
            await asyncio.to_thread(_ctl, "delete_user", prefix + name)


async def _until_imported(urls: dict[str, str], document: dict[str, Any]) -> None:
    """The import runs asynchronously in the broker: wait until the last user and objects exist."""
    last_queue = document["queues"][-1]["name"]
    for _ in range(150):
        try:
            connection = await aio_pika.connect(urls["qti-admin"])
            async with connection:
                channel = await connection.channel()
                await channel.get_queue(last_queue, ensure=True)
                await channel.get_exchange("qti.reporting", ensure=True)
            connection = await aio_pika.connect(urls["kpi-consumer"])  # the last user
            await connection.close()
            return
        except (aio_pika.exceptions.AMQPError, ConnectionError):
            await asyncio.sleep(0.2)
    raise AssertionError("definitions were not imported within 30s")
