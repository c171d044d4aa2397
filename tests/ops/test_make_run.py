"""`make run` end to end: `python -m qti_host.cli run` (what `make run` calls after installing) reaches
ready on all four services, takes one registration over HTTP up to the confirmation mail, and stops every
process on Ctrl-C (SIGINT to its process group)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from support import free_port

SERVICES = ("catalogue", "registration", "notification", "reporting")
ROOT = Path(__file__).resolve().parents[2]


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture
def qti_run(
    database_url: str, amqp_url: str, tmp_path: Path
) -> Iterator[tuple[subprocess.Popen[bytes], dict[str, int]]]:
    ports = {name: free_port() for name in (*SERVICES, "sink_http", "smtp")}
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "contracts")]),
        "QTI_DATABASE_URL": database_url,
        "QTI_AMQP_URL": amqp_url,
        **{f"QTI_{name.upper()}_PORT": str(ports[name]) for name in SERVICES},
        "QTI_PORTAL_PORT": str(free_port()),  # the portal is part of the run; never the shared 8000
        "QTI_MAIL_SINK_HTTP_PORT": str(ports["sink_http"]),
        "QTI_SMTP_PORT": str(ports["smtp"]),
        "QTI_MAIL_SINK_FOLDER": str(tmp_path / "mail"),
        "QTI_SHUTDOWN_GRACE_SECONDS": "5",
        "QTI_LOG_LEVEL": "WARNING",
    }
    for name in SERVICES:
        env.pop(f"{name.upper()}_REPLICAS", None)
    log = (tmp_path / "run.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "qti_host.cli", "run"],
        cwd=tmp_path,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group, as a terminal's Ctrl-C would reach it
    )
    try:
        yield process, ports
    finally:
        if group_alive(process.pid):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
        log.close()


async def wait_ready(client: httpx.AsyncClient, url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = asyncio.get_running_loop().time() + 90
    while True:
        assert process.poll() is None, f"qti run exited with {process.returncode}"
        try:
            if (await client.get(url, timeout=2)).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        assert asyncio.get_running_loop().time() < deadline, f"{url} not ready"
        await asyncio.sleep(0.5)


async def poll(fetch: Any, *, timeout: float = 60) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        found = await fetch()
        if found:
            return found
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.5)


@pytest.mark.slow
async def test_make_run_serves_a_registration_end_to_end_and_stops_on_ctrl_c(
    qti_run: tuple[subprocess.Popen[bytes], dict[str, int]], tmp_path: Path
) -> None:
    process, ports = qti_run
    base = {name: f"http://127.0.0.1:{ports[name]}" for name in SERVICES}
    async with httpx.AsyncClient() as client:
        await asyncio.gather(*(wait_ready(client, f"{url}/readyz", process) for url in base.values()))

        async def offerings() -> list[dict[str, Any]]:  # demo data is loaded once catalogue is ready
            response = await client.get(f"{base['catalogue']}/offerings")
            return list(response.json()["items"]) if response.status_code == 200 else []

        offering = (await poll(offerings))[0]
        email = "anna.make-run@example.de"
        response = await client.post(
            f"{base['registration']}/registrations",
            json={
                "offering_id": offering["offering_id"],
                "privacy_consent": True,
                "participant": {"given_name": "Anna", "family_name": "Schmidt", "email": email},
                "company": {"name": "Muster Zulieferer GmbH", "postal_code": "99610", "county": "Sömmerda"},
            },
        )
        assert response.status_code == 202, response.text
        status_url = base["registration"] + response.json()["status_url"]

        async def decided() -> dict[str, Any] | None:
            status = (await client.get(status_url)).json()
            return status if status.get("status") != "pending" else None

        status = await poll(decided)
        assert status["status"] == "confirmed", status

        async def mail() -> list[dict[str, Any]]:
            listing = (await client.get(f"http://127.0.0.1:{ports['sink_http']}/api/mails")).json()
            return [m for m in listing if email in m["to"]]

        mails = await poll(mail)
        assert mails[0]["has_calendar"], mails

        async def banner() -> bool:  # development: the demo staff accounts, their passwords, the console
            text = (tmp_path / "run.log").read_text("utf-8", errors="replace")
            return "leitung@qti-demo.de / leitung-demo-2027" in text and "/verwaltung" in text

        assert await poll(banner)

    os.killpg(process.pid, signal.SIGINT)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while process.poll() is None or group_alive(process.pid):  # poll() reaps the leader (no zombie)
        assert loop.time() < deadline, (
            "processes still running 30 s after Ctrl-C:\n"
            + (tmp_path / "run.log").read_text(errors="replace")[-3000:]
        )
        await asyncio.sleep(0.2)
    assert process.wait(timeout=5) == 0
