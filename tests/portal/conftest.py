"""Fixtures of the portal tests: one running system with the portal per test module (starting five
processes takes a while on a small machine), each module with its own database, vhost and mail sink."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from portal.portal_kit import PortalSystem, start_portal_system

from devtools.mail_sink import MailSink
from support import Isolation, free_port

ARTEFACTS = Path(__file__).resolve().parents[2] / "build" / "test-artefacts" / "portal"


@pytest.fixture(scope="module")
def portal_env() -> dict[str, str]:
    return {}


@pytest.fixture(scope="module")
async def portal_system(
    isolation: Isolation,
    tmp_path_factory: pytest.TempPathFactory,
    portal_env: dict[str, str],
    request: pytest.FixtureRequest,
) -> AsyncIterator[PortalSystem]:
    database_url = await isolation.create_database()
    amqp_url = await isolation.create_vhost()
    sink = MailSink(tmp_path_factory.mktemp("mail"), smtp_port=free_port(), http_port=free_port())
    try:
        with sink:
            async with start_portal_system(database_url, amqp_url, sink, portal_env) as started:
                try:
                    yield started
                finally:
                    # The portal's own log, kept as an artefact (it holds no personal data).
                    ARTEFACTS.mkdir(parents=True, exist_ok=True)
                    log = ARTEFACTS / f"portal-{request.module.__name__.rsplit('.', 1)[-1]}.log"
                    log.write_text(started.log_text())
    finally:
        await isolation.drop_database(database_url)
        await isolation.delete_vhost(amqp_url)


@pytest.fixture(scope="session")
def artefacts() -> Path:
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    return ARTEFACTS
