"""KPI events for a read-only consumer (RabbitMQ permissions), debouncing, and the dashboard in Chromium."""

from __future__ import annotations

import asyncio
import itertools
import json
import shutil
import socket
import subprocess
import uuid
from datetime import datetime
from typing import Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import aio_pika
import pytest
import uvicorn
from aiormq.exceptions import ChannelAccessRefused
from reporting.history import NAMES, scripted_history

from qti_contracts import KpiUpdated, make_event

CHROMIUM = "/usr/bin/chromium"


def _ctl(*args: str) -> None:
    ctl = shutil.which("rabbitmqctl")
    assert ctl, "rabbitmqctl is needed to create the read-only KPI consumer"
    subprocess.run([ctl, "-q", *args], check=True, capture_output=True, timeout=60)


async def test_read_only_consumer_gets_debounced_kpi_events_only(reporting: Any) -> None:  # noqa: PLR0915
    parts = urlsplit(reporting.settings.amqp_url)
    vhost = unquote(parts.path.lstrip("/"))
    user, password = f"kpi-reader-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    await asyncio.to_thread(_ctl, "add_user", user, password)
    try:
        await asyncio.to_thread(
            _ctl,
            "set_permissions",
            "-p",
            vhost,
            user,
            r"^kpi-consumer\..*",
            r"^kpi-consumer\..*",
            r"^(kpi-consumer\..*|qti\.reporting)$",
        )
        netloc = f"{quote(user)}:{password}@{parts.hostname}:{parts.port or 5672}"
        url = urlunsplit(parts._replace(netloc=netloc))
        connection = await aio_pika.connect(url)
        try:
            channel = await connection.channel()
            queue = await channel.declare_queue("kpi-consumer.figures", durable=False, exclusive=True)
            await queue.bind("qti.reporting", routing_key="reporting.#")
            # Binding to the exchange that carries personal data is refused.
            other = await connection.channel()
            sneaky = await other.declare_queue("kpi-consumer.sneaky", exclusive=True)
            with pytest.raises(ChannelAccessRefused):
                await sneaky.bind("qti.events", routing_key="registration.#")

            # Load: the scripted history in bursts over ~3 seconds.
            published, distinct = scripted_history()
            for start in range(0, len(published), 20):
                await reporting.publish(published[start : start + 20])
                await asyncio.sleep(0.3)
            await reporting.wait_ingested(len(distinct))
            live = (await reporting.http.get("/kpis")).json()["total"]

            received: list[KpiUpdated] = []
            bodies: list[bytes] = []
            deadline = asyncio.get_running_loop().time() + 15
            while asyncio.get_running_loop().time() < deadline:
                message = await queue.get(fail=False, no_ack=True)
                if message is None:
                    if received and _matches(received[-1], live):
                        break
                    await asyncio.sleep(0.1)
                    continue
                assert message.routing_key == "reporting.kpi.updated"
                bodies.append(message.body)
                envelope = json.loads(message.body)
                received.append(KpiUpdated.model_validate(envelope["data"]))
            assert received, "no KPI event arrived"
            assert _matches(received[-1], live)
            times = [k.generated_at for k in received]
            gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(times)]
            assert all(gap >= 0.9 for gap in gaps), gaps  # debounce 1 s (set in the fixture)
            assert len(received) <= 8
            for body in bodies:
                text = body.decode()
                assert "@" not in text
                assert not [name for name in NAMES if name.lower() in text.lower()]
        finally:
            await connection.close()
    finally:
        await asyncio.to_thread(_ctl, "delete_user", user)


def _matches(event: KpiUpdated, live: dict[str, Any]) -> bool:
    totals = {f.indicator: f for f in event.figures if f.dimension is None}
    for key, value in live.items():
        if value is None:
            continue
        figure = totals[key]
        if (figure.suppressed and value not in ("<5", "gesperrt")) or (
            not figure.suppressed and figure.value != value
        ):
            return False
    return True


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_dashboard_renders_charts_in_chromium(reporting: Any) -> None:
    from playwright.async_api import async_playwright

    published, distinct = scripted_history()
    # A few more months so that the time chart has several bars.
    extra = [
        make_event(
            "catalogue.offering.published",
            {**e.data, "offering_id": f"off-x{i}", "sessions": _shift(e.data["sessions"], i)},
            source="/tests",
        )
        for i, e in enumerate(x for x in distinct if x.type == "catalogue.offering.published")
    ]
    await reporting.publish([*published, *extra])
    await reporting.wait_ingested(len(distinct) + len(extra))

    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(reporting.app, host="127.0.0.1", port=port, lifespan="off", log_config=None)
    )
    serving = asyncio.create_task(server.serve())
    try:
        while not server.started:  # noqa: ASYNC110 (uvicorn offers no event)
            await asyncio.sleep(0.05)
        errors: list[str] = []
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
            try:
                page = await browser.new_page()
                page.on(
                    "console", lambda m: errors.append(m.text) if m.type in ("error", "warning") else None
                )
                page.on("pageerror", lambda exc: errors.append(str(exc)))
                response = await page.goto(f"http://127.0.0.1:{port}/dashboard", wait_until="load")
                assert response is not None and response.status == 200
                assert await page.get_attribute("html", "lang") == "de"
                assert "Kennzahlen" in await page.title()
                charts = page.locator("svg.chart")
                assert await charts.count() == 5
                for index in range(await charts.count()):
                    chart = charts.nth(index)
                    assert await chart.is_visible()
                    assert await chart.locator("rect.bar").count() >= 1
                    box = await chart.bounding_box()
                    assert box is not None and box["width"] > 200 and box["height"] > 50
                month_bars = page.locator("#chart-offerings-month rect.bar")
                assert await month_bars.count() >= 3
                tiles = await page.locator(".tile").all_inner_texts()
                assert any("Teilnehmende" in t and "12" in t for t in tiles)
            finally:
                await browser.close()
        assert errors == []
    finally:
        server.should_exit = True
        await serving


def _shift(sessions: list[dict[str, Any]], months: int) -> list[dict[str, Any]]:
    shifted = []
    for session in sessions:
        start = datetime.fromisoformat(session["starts_at"])
        end = datetime.fromisoformat(session["ends_at"])
        month = (start.month - 1 + 2 * (months + 1)) % 12 + 1
        shifted.append(
            {
                **session,
                "starts_at": start.replace(month=month).isoformat(),
                "ends_at": end.replace(month=month).isoformat(),
            }
        )
    return shifted
