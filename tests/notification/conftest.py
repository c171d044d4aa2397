"""Fixtures of the notification tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import pytest

from support import Isolation


@pytest.fixture
async def amqp_url(isolation: Isolation) -> AsyncIterator[str]:
    """As the shared fixture, but forgets the vhost once deleted, so that the session's final cleanup
    does not call `rabbitmqctl delete_vhost` a second time for it (about two seconds per call)."""
    url = await isolation.create_vhost()
    yield url
    await isolation.delete_vhost(url)
    name = urlsplit(url).path.lstrip("/")
    if name in isolation.vhosts:
        isolation.vhosts.remove(name)
