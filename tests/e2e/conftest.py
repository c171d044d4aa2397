"""Fixtures of the end-to-end tests: a real SMTP server (the mail sink) and the whole system as processes.

A test module may override `system_env` to give every service extra `QTI_*` settings.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from e2e.system_kit import System, start_system

from devtools.mail_sink import MailSink
from support import free_port


@pytest.fixture
def mail_sink(tmp_path: Path) -> Iterator[MailSink]:
    sink = MailSink(tmp_path / "mail", smtp_port=free_port(), http_port=free_port())
    with sink:
        yield sink


@pytest.fixture
def system_env() -> dict[str, str]:
    return {}


@pytest.fixture
async def system(
    database_url: str, amqp_url: str, mail_sink: MailSink, system_env: dict[str, str]
) -> AsyncIterator[System]:
    async with start_system(database_url, amqp_url, mail_sink, system_env) as started:
        yield started
