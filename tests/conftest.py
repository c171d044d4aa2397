"""Fixtures giving every test its own real Postgres database and RabbitMQ vhost."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from qti_runtime.settings import Settings
from support import Backends, Isolation, backends


@pytest.fixture(scope="session")
def test_backends() -> Iterator[Backends]:
    try:
        with backends() as found:
            yield found
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture(scope="session")
async def isolation(test_backends: Backends) -> AsyncIterator[Isolation]:
    iso = Isolation(test_backends)
    yield iso
    await iso.cleanup_all()


@pytest.fixture
async def database_url(isolation: Isolation) -> AsyncIterator[str]:
    url = await isolation.create_database()
    yield url
    await isolation.drop_database(url)


@pytest.fixture
async def amqp_url(isolation: Isolation) -> AsyncIterator[str]:
    url = await isolation.create_vhost()
    yield url
    await isolation.delete_vhost(url)


@pytest.fixture
def settings(database_url: str, amqp_url: str) -> Settings:
    return Settings(
        database_url=database_url,
        amqp_url=amqp_url,
        shutdown_grace_seconds=3,
        outbox_poll_seconds=0.2,
        transient_retry_seconds=1,
        log_json=False,
        log_level="WARNING",
    )
