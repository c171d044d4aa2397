"""deploy/rabbitmq/definitions.json imported into the real broker: every service, logged in as its own
least-privilege user, can declare its topology over the pre-loaded one (same arguments) and publish;
the read-only kpi-consumer can read qti.reporting through its own queue and nothing else."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import aio_pika
import aio_pika.exceptions
import aiormq.exceptions
import pytest

from qti_contracts.topology import SERVICES
from qti_runtime.broker import create_broker, declare_service_topology
from qti_runtime.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DEFINITIONS = ROOT / "deploy" / "rabbitmq" / "definitions.json"


def _ctl(*args: str) -> None:
    ctl = shutil.which("rabbitmqctl")
    assert ctl, "rabbitmqctl is needed to import definitions"
    result = subprocess.run([ctl, "-q", *args], capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, f"rabbitmqctl {args[0]}: {result.stdout}{result.stderr}"


def _url_for(amqp_url: str, user: str, password: str) -> str:
    parts = urlsplit(amqp_url)
    netloc = f"{quote(user, safe='')}:{quote(password, safe='')}@{parts.hostname}:{parts.port or 5672}"
    return urlunsplit(parts._replace(netloc=netloc))


@pytest.fixture
async def imported(amqp_url: str) -> AsyncIterator[dict[str, str]]:
    """The definitions in this test's vhost, with users renamed so that nothing global is touched.
    Returns user -> AMQP URL."""
    vhost = unquote(urlsplit(amqp_url).path.lstrip("/"))
    prefix = f"t{uuid.uuid4().hex[:6]}-"
    document: dict[str, Any] = json.loads(DEFINITIONS.read_text())
    document["vhosts"] = [{"name": vhost}]
    for section in ("queues", "exchanges", "bindings", "policies", "permissions"):
        for entry in document[section]:
            entry["vhost"] = vhost
    for user in document["users"]:
        user["name"] = prefix + user["name"]
    for permission in document["permissions"]:
        permission["user"] = prefix + permission["user"]
    # A world-readable file outside pytest's private tmp_path: the CLI tool may run as another user.
    with tempfile.NamedTemporaryFile("w", suffix=".json", prefix="qti-definitions-") as handle:
        handle.write(json.dumps(document))
        handle.flush()
        os.chmod(handle.name, 0o644)
        await asyncio.to_thread(_ctl, "import_definitions", handle.name)
    users = [u["name"].removeprefix(prefix) for u in document["users"]]
    urls = {name: _url_for(amqp_url, prefix + name, f"{name}-dev-password") for name in users}
    try:
        await _until_imported(urls["qti-admin"], document)
        yield urls
    finally:
        for name in users:
            await asyncio.to_thread(_ctl, "delete_user", prefix + name)


async def _until_imported(admin_url: str, document: dict[str, Any]) -> None:
    """The import runs asynchronously in the broker: wait until the last user and objects exist."""
    last_queue = document["queues"][-1]["name"]
    for _ in range(150):
        try:
            connection = await aio_pika.connect(admin_url)
            async with connection:
                channel = await connection.channel()
                await channel.get_queue(last_queue, ensure=True)
                await channel.get_exchange("qti.reporting", ensure=True)
            return
        except (aio_pika.exceptions.AMQPError, ConnectionError):
            await asyncio.sleep(0.2)
    raise AssertionError("definitions were not imported within 30s")


async def _services_declare_their_topology(imported: dict[str, str], settings: Settings) -> None:
    generator_path = ROOT / "scripts" / "rabbitmq_definitions.py"
    import importlib.util

    spec = importlib.util.spec_from_file_location("rabbitmq_definitions", generator_path)
    assert spec is not None and spec.loader is not None
    generator = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generator)
    queues = generator.service_queues()
    for service in SERVICES:
        service_settings = settings.model_copy(update={"amqp_url": imported[service]})
        broker = create_broker(service_settings, service)
        await broker.connect()
        try:
            # Equal arguments: no PRECONDITION_FAILED; enough permissions: no ACCESS_REFUSED.
            await declare_service_topology(broker, service, [q for q in queues if q.service == service])
            await broker.publish(b"{}", exchange="qti.events", routing_key=f"{service}.probe", mandatory=True)
        finally:
            await broker.stop()


async def _services_are_fenced(imported: dict[str, str]) -> None:
    connection = await aio_pika.connect(imported["notification"])
    async with connection:
        channel = await connection.channel()
        with pytest.raises(aiormq.exceptions.ChannelAccessRefused):
            queue = await channel.get_queue("registration.requests", ensure=False)
            await queue.get(fail=False)


async def _kpi_consumer_reads_only_reporting(imported: dict[str, str], amqp_url: str) -> None:
    connection = await aio_pika.connect(imported["kpi-consumer"])
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue("kpi-consumer.dashboard", durable=True)
        await queue.bind("qti.reporting", routing_key="reporting.#")
        refused = await connection.channel()
        with pytest.raises(aiormq.exceptions.ChannelAccessRefused):
            other = await refused.declare_queue("kpi-consumer.sneaky", durable=True)
            await other.bind("qti.events", routing_key="registration.#")

        admin = await aio_pika.connect(amqp_url)
        async with admin:
            publisher = await admin.channel(publisher_confirms=True)
            events = await publisher.get_exchange("qti.events")
            await events.publish(aio_pika.Message(b'{"k": 1}'), routing_key="reporting.kpi.updated")
            await events.publish(aio_pika.Message(b'{"pii": 1}'), routing_key="registration.confirmed")
        received = []
        for _ in range(50):
            message = await queue.get(fail=False, no_ack=True)
            if message is not None:
                received.append(message.routing_key)
            elif received:
                break
            else:
                await asyncio.sleep(0.1)
        assert received == ["reporting.kpi.updated"]


async def test_definitions_work_on_the_real_broker(
    imported: dict[str, str], settings: Settings, amqp_url: str
) -> None:
    # One import for all checks: creating and removing broker users is slow.
    await _services_declare_their_topology(imported, settings)
    await _services_are_fenced(imported)
    await _kpi_consumer_reads_only_reporting(imported, amqp_url)
