"""KPI events for a read-only consumer (RabbitMQ permissions), debouncing, and the dashboard in Chromium."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import shutil
import socket
import subprocess
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
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
            deadline = asyncio.get_running_loop().time() + 60  # the job pauses 20× a computation
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


ARTIFACTS = Path(os.environ.get("QTI_TEST_ARTIFACTS", Path(__file__).parents[2] / "var" / "test-artifacts"))
VIEWPORTS = {"desktop": {"width": 1280, "height": 900}, "phone": {"width": 390, "height": 844}}
FILTERED = "/dashboard?from=2026-01-01&to=2026-12-31"


async def test_dashboard_with_filters_is_readable_and_axe_clean_at_desktop_and_phone(reporting: Any) -> None:
    """The page in Chromium at 1280 px and 390 px: filter form without JavaScript, charts with data tables,
    labels that fit, Berlin time, a `main` landmark, no serious or critical axe finding; screenshots kept."""
    from axe_playwright_python.async_playwright import Axe
    from playwright.async_api import async_playwright

    published, distinct = scripted_history()
    extra = _extra_months(distinct)
    await reporting.publish([*published, *extra])
    await reporting.wait_ingested(len(distinct) + len(extra))
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    async with _served(reporting.app) as base, async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            for name, viewport in VIEWPORTS.items():
                page = await browser.new_page(viewport=viewport, java_script_enabled=False)
                errors: list[str] = []
                page.on("console", lambda m, seen=errors: seen.append(m.text) if m.type == "error" else None)
                response = await page.goto(base + FILTERED, wait_until="load")
                assert response is not None and response.status == 200
                await _check_page(page, viewport["width"])
                await page.screenshot(path=str(ARTIFACTS / f"dashboard-{name}.png"), full_page=True)
                await _check_filter_form(page, base)
                assert errors == []
                await page.close()
                page = await browser.new_page(viewport=viewport)  # axe needs scripts
                await page.goto(base + FILTERED, wait_until="load")
                results = await Axe().run(page)
                bad = [
                    v["id"] for v in results.response["violations"] if v["impact"] in ("serious", "critical")
                ]
                assert bad == [], results.generate_report()
                await page.close()
        finally:
            await browser.close()


async def _check_page(page: Any, width: int) -> None:
    assert await page.get_attribute("html", "lang") == "de"
    assert "Kennzahlen" in await page.title()
    assert await page.locator("main").count() == 1
    text = await page.locator("body").inner_text()
    assert "UTC" not in text and "Uhr" in text  # Europe/Berlin, as German readers read time
    assert "01.01.2026 bis 31.12.2026" in text
    charts = page.locator(".chart-figure")
    assert await charts.count() == 5
    for index in range(5):
        figure = charts.nth(index)
        assert await figure.locator("table.data tbody tr").count() >= 1  # the data under each chart
        assert await figure.locator(".bar-row").count() == await figure.locator("table.data tbody tr").count()
    assert await page.locator("#chart-offerings-month .bar-row").count() >= 3
    # Nothing wider than the window, and no label cut off (each shows all its text).
    assert await page.evaluate("document.documentElement.scrollWidth") <= width
    clipped = await page.evaluate(
        "[...document.querySelectorAll('.bar-label, .bar-value, th, td')]"
        ".filter(e => e.scrollWidth > e.clientWidth + 1).map(e => e.textContent)"
    )
    assert clipped == []
    sizes = await page.evaluate(
        "[...document.querySelectorAll('.bar-label')].map(e => parseFloat(getComputedStyle(e).fontSize))"
    )
    assert sizes and min(sizes) >= 14  # readable on a phone: text is not scaled down with the chart
    node_label = page.locator("#chart-participants-node .bar-label", has_text="Sömmerda")
    assert await node_label.count() == 1 and "…" not in await node_label.inner_text()


async def _check_filter_form(page: Any, base: str) -> None:
    """A GET form: choosing a quarter and a topic puts them into the URL, and the exports keep them."""
    await page.select_option("#period", "2026-Q1")
    await page.select_option("#topic", "elektromobilitaet")
    await page.click("button[type=submit]")
    await page.wait_for_load_state("load")
    assert page.url.startswith(base + "/dashboard?")
    query = page.url.split("?", 1)[1]
    assert "from=2026-01-01" in query and "to=2026-03-31" in query and "topic=elektromobilitaet" in query
    assert await page.locator("#topic option[selected]").get_attribute("value") == "elektromobilitaet"
    for name in ("kpis.pdf", "kpis.xlsx", "kpis.csv"):
        href = await page.locator(f"a[href^='/exports/{name}']").get_attribute("href")
        assert href == f"/exports/{name}?{query}"
    assert "01.01.2026 bis 31.03.2026" in await page.locator("main").inner_text()
    assert "Thema: Elektromobilität" in await page.locator("main").inner_text()


@contextlib.asynccontextmanager
async def _served(app: Any) -> AsyncIterator[str]:
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="off", log_config=None))
    serving = asyncio.create_task(server.serve())
    try:
        while not server.started:  # noqa: ASYNC110 (uvicorn offers no event)
            await asyncio.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await serving


def _extra_months(distinct: list[Any]) -> list[Any]:
    """More offerings in later months, so that the time chart has several bars."""
    return [
        make_event(
            "catalogue.offering.published",
            {**e.data, "offering_id": f"off-x{i}", "sessions": _shift(e.data["sessions"], i)},
            source="/tests",
        )
        for i, e in enumerate(x for x in distinct if x.type == "catalogue.offering.published")
    ]


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
