"""What a service declares about itself, once: `ServiceDefinition`.

Each service package states in its `app.py` one definition: its name, its settings, the one constructor
that gives it the database and the settings (`CatalogueService(db, settings)`), its subscriptions, the
event types it publishes, its HTTP routers, background jobs, privacy hook, maintenance commands and
migrations. The runtime composes a process from it (`build`, `create_app`, `main`); the host layer
(`qti_host`: the `qti` command, `make run`, AsyncAPI and OpenAPI documents) reads the same definitions.
Nothing here knows any particular service.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

from fastapi import APIRouter, FastAPI

from qti_runtime.bodylimit import LargeBodyRoute
from qti_runtime.consumer import Subscription
from qti_runtime.db import Database
from qti_runtime.service import BackgroundJob, ServiceRuntime, serve
from qti_runtime.settings import Settings

SettingsT = TypeVar("SettingsT", bound=Settings)
ServiceT = TypeVar("ServiceT")

Job = tuple[str, BackgroundJob]
# `qti forget-person`: rows removed or anonymised; the result is awaited when it is awaitable.
ForgetPerson = Callable[[Database, str], Awaitable[int] | int]
# A maintenance command run by an operator against the service's schema (e.g. reporting's rebuild).
Maintenance = Callable[[Database], Awaitable[int]]


def _nothing(_service: Any, _settings: Any) -> Sequence[Any]:
    return ()


@dataclass(frozen=True)
class Built(Generic[SettingsT, ServiceT]):
    """One composed replica: the runtime (connections, consumers, relay, jobs) and the service it drives."""

    runtime: ServiceRuntime
    service: ServiceT
    settings: SettingsT


@dataclass(frozen=True)
class ServiceDefinition(Generic[SettingsT, ServiceT]):
    """One service, declared once; `build` wires it the same way for all of them."""

    name: str
    title: str  # of its HTTP API (OpenAPI)
    settings: Callable[[], SettingsT]  # reads the QTI_* environment
    service: Callable[[Database, SettingsT], ServiceT]  # the one constructor: database and settings
    subscriptions: Callable[[ServiceT, SettingsT], Sequence[Subscription]] = _nothing
    publishes: Sequence[str] = ()  # event types it emits through its outbox (AsyncAPI)
    routers: Callable[[ServiceT, SettingsT], Sequence[APIRouter]] = _nothing
    jobs: Callable[[ServiceT, SettingsT], Sequence[Job]] = _nothing
    migrations: Path | None = None
    forget_person: ForgetPerson | None = None
    maintenance: Mapping[str, Maintenance] = field(default_factory=dict)
    large_body_routes: Sequence[LargeBodyRoute] = ()
    version: str = "1.0.0"
    # Last touches on the app that routers cannot make (e.g. a service's own validation messages).
    finish_app: Callable[[FastAPI], None] | None = None

    def build(self, settings: SettingsT | None = None) -> Built[SettingsT, ServiceT]:
        """Runtime and service, wired; nothing is connected before `runtime.start()`."""
        settings = settings if settings is not None else self.settings()
        runtime = ServiceRuntime(self.name, settings, migrations=self.migrations)
        service = self.service(runtime.db, settings)
        for subscription in self.subscriptions(service, settings):
            runtime.add_subscription(subscription)
        for name, job in self.jobs(service, settings):
            runtime.add_job(name, job)
        return Built(runtime, service, settings)

    def build_runtime(self, settings: SettingsT | None = None) -> ServiceRuntime:
        """`build(settings).runtime`, for tests and benchmarks that drive the runtime themselves."""
        return self.build(settings).runtime

    def create_app(self, settings: SettingsT | None = None) -> FastAPI:
        """The service's HTTP app; its lifespan starts and stops the runtime."""
        built = self.build(settings)
        app = built.runtime.create_app(
            self.routers(built.service, built.settings),
            title=self.title,
            version=self.version,
            large_body_routes=self.large_body_routes,
        )
        if self.finish_app is not None:
            self.finish_app(app)
        return app

    def main(self) -> None:
        """`python -m services.<name>`: serve on `QTI_<NAME>_PORT` until SIGTERM."""
        settings = self.settings()
        serve(
            self.create_app(settings),
            settings.http_host,
            settings.port_of(self.name),
            grace_seconds=settings.shutdown_grace_seconds,
            nice=settings.cpu_nice,
        )
