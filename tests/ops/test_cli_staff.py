"""`qti staff`: operators manage the console's accounts in the catalogue's schema (real Postgres)."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from uuid import uuid4

import pytest
import pytest_asyncio
from catalogue.harness import GOTHA, STAFF, Service, isolated_service

from support import Isolation

pytestmark = pytest.mark.asyncio(loop_scope="session")

PASSWORD = "betreiber-passwort-1"


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def service(isolation: Isolation) -> AsyncIterator[Service]:
    async with isolated_service(isolation) as running:
        yield running


async def qti_staff(database_url: str, *args: str, stdin: str = "") -> tuple[int, str]:
    """The real command line in a subprocess, with `stdin` as its standard input."""
    env = {**os.environ, "QTI_DATABASE_URL": database_url, "QTI_LOG_LEVEL": "WARNING"}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "qti_host.cli",
        "staff",
        *args,
        env=env,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(stdin.encode()), timeout=60)
    assert process.returncode is not None
    return process.returncode, output.decode()


async def signs_in(service: Service, email: str, password: str) -> int:
    response = await service.client.post(
        "/staff/sign-in", json={"email": email, "password": password}, headers=STAFF
    )
    return response.status_code


async def test_add_list_disable_and_reset(service: Service) -> None:
    url = service.settings.database_url
    lead, staff = f"leitung-{uuid4().hex[:6]}@example.de", f"gotha-{uuid4().hex[:6]}@example.de"
    code, output = await qti_staff(url, "add", lead, "--all", "--password-stdin", stdin=PASSWORD + "\n")
    assert code == 0 and "created" in output and "project lead" in output, output
    code, output = await qti_staff(url, "add", staff, "--node", str(GOTHA), stdin=f"{PASSWORD}\n{PASSWORD}\n")
    assert code == 0 and str(GOTHA) in output, output  # the hidden prompt, answered twice
    assert await signs_in(service, lead, PASSWORD) == 200
    assert await signs_in(service, staff.upper(), PASSWORD) == 200

    code, output = await qti_staff(url, "list")
    assert code == 0 and lead in output and staff in output and "active" in output, output
    assert "argon2" not in output and PASSWORD not in output

    code, output = await qti_staff(url, "disable", staff)
    assert code == 0 and "disabled" in output
    assert await signs_in(service, staff, PASSWORD) == 401
    assert "disabled" in (await qti_staff(url, "list"))[1]

    new = "ein-anderes-passwort"
    code, output = await qti_staff(url, "reset-password", lead, "--password-stdin", stdin=new + "\n")
    assert code == 0, output
    assert await signs_in(service, lead, PASSWORD) == 401
    assert await signs_in(service, lead, new) == 200


async def test_refusals_exit_non_zero_with_a_clear_message(service: Service) -> None:
    url = service.settings.database_url
    taken = f"doppelt-{uuid4().hex[:6]}@example.de"
    assert (await qti_staff(url, "add", taken, "--all", "--password-stdin", stdin=PASSWORD))[0] == 0
    cases = [
        (("add", taken.upper(), "--all", "--password-stdin"), PASSWORD, "gibt es bereits"),
        (("add", "neu@example.de", "--node", str(uuid4()), "--password-stdin"), PASSWORD, "Knoten"),
        (("add", "neu@example.de", "--node", "gotha", "--password-stdin"), PASSWORD, "UUID"),
        (("add", "neu@example.de", "--all", "--password-stdin"), "kurz", "mindestens 12"),
        (("add", "neu@example.de", "--all", "--password-stdin"), "a" * 20, "einzigen"),
        (("add", "keine-adresse", "--all", "--password-stdin"), PASSWORD, "E-Mail-Adresse"),
        (("add", "neu@example.de", "--password-stdin"), PASSWORD, "--node NODE_ID or --all"),
        (("add", "neu@example.de", "--all", "--node", str(GOTHA)), PASSWORD, "--node NODE_ID or --all"),
        (("add", "neu@example.de", "--all", "--password-stdin"), "", "standard input is empty"),
        (("disable", "niemand@example.de"), "", "gibt es nicht"),
        (("reset-password", "niemand@example.de", "--password-stdin"), PASSWORD, "gibt es nicht"),
    ]
    for args, stdin, message in cases:
        code, output = await qti_staff(url, *args, stdin=stdin)
        assert code == 1 and message in output, (args, output)
        assert "Traceback" not in output


async def test_a_database_without_the_catalogue_schema(isolation: Isolation) -> None:
    url = await isolation.create_database()
    try:
        code, output = await qti_staff(url, "list")
    finally:
        await isolation.drop_database(url)
    assert code == 1 and "start the catalogue once" in output, output
