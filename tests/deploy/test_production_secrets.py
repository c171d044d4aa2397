"""`QTI_ENV=production` refuses default secrets and the guest broker user (INTERFACE.md v2), and a
service with proper secrets starts as its own least-privilege broker user over the imported definitions."""

from __future__ import annotations

import asyncio
import secrets

import pytest
from definitions_kit import Imported
from pydantic import SecretStr

from qti_runtime.settings import DEV_LINK_SECRET, DEV_PSEUDONYM_KEY, DEV_STAFF_TOKEN, Settings
from support import ServiceProcess, free_port

SECRET_VARIABLES = ("QTI_STAFF_TOKEN", "QTI_PSEUDONYM_KEY", "QTI_LINK_SECRET")


def _proper_secrets() -> dict[str, str]:
    return {variable: secrets.token_urlsafe(32) for variable in SECRET_VARIABLES}


def test_development_accepts_the_defaults() -> None:
    assert Settings(env="development").production_problems() == []


def test_production_names_every_default_secret_and_guest() -> None:
    problems = Settings(env="production").production_problems()
    for variable in SECRET_VARIABLES:
        assert any(p.startswith(variable) for p in problems), (variable, problems)
    assert any("guest" in p for p in problems)
    for default in (DEV_STAFF_TOKEN, DEV_LINK_SECRET, DEV_PSEUDONYM_KEY):
        assert not any(default in p for p in problems), "a problem must never echo a secret"


def test_production_refuses_short_secrets_and_accepts_proper_ones() -> None:
    short = Settings(
        env="production",
        staff_token="x" * 31,
        pseudonym_key=secrets.token_urlsafe(32),
        link_secret=secrets.token_urlsafe(32),
        amqp_url="amqp://registration:pw@rabbitmq:5672/qti",
    )
    assert [p.split()[0] for p in short.production_problems()] == ["QTI_STAFF_TOKEN"]
    proper = short.model_copy(update={"staff_token": SecretStr("y" * 32)})
    assert proper.production_problems() == []
    proper.check_production()


@pytest.mark.parametrize("service", ["catalogue", "notification"])
async def test_a_service_with_defaults_exits_naming_what_is_missing(service: str, settings: Settings) -> None:
    process = ServiceProcess(
        service,
        {
            "QTI_ENV": "production",
            "QTI_AMQP_URL": settings.amqp_url,
            "QTI_DATABASE_URL": settings.database_url,
        },
        free_port(),
    )
    process.start()
    assert process.process is not None
    code = await asyncio.to_thread(process.process.wait, 60)
    log = process.log_text()
    assert code != 0, log
    for variable in SECRET_VARIABLES:
        assert variable in log, (variable, log[-3000:])
    assert "guest" in log
    assert "refusing to start" in log


async def test_a_service_with_proper_secrets_starts_as_its_own_broker_user(
    imported: Imported, settings: Settings
) -> None:
    env = {
        "QTI_ENV": "production",
        "QTI_AMQP_URL": imported["catalogue"],
        "QTI_DATABASE_URL": settings.database_url,
        **_proper_secrets(),
    }
    process = ServiceProcess("catalogue", env, free_port())
    process.start()
    try:
        await process.wait_ready(timeout=60)
    finally:
        assert process.terminate() == 0, process.log_text()[-3000:]
