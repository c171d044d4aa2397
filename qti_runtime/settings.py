"""Configuration from `QTI_*` environment variables (INTERFACE.md, "Running")."""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_STAFF_TOKEN = "dev-staff-token"
DEV_LINK_SECRET = "dev-link-secret-not-for-production"


class Settings(BaseSettings):
    """Settings shared by every service; a service may subclass to add its own."""

    model_config = SettingsConfigDict(env_prefix="QTI_", extra="ignore")

    # `production` refuses to start with a default secret (see `check_production`); `development` warns.
    env: str = Field(default="development", pattern="^(development|production)$")
    amqp_url: str = "amqp://guest:guest@127.0.0.1:5672/"
    database_url: str = "postgresql://root@127.0.0.1:5432/qti"
    staff_token: SecretStr = SecretStr(DEV_STAFF_TOKEN)
    # Key of the personal links in mails (`qti_runtime.links`): registration checks them, notification
    # writes them. Whoever holds it can open every registration, so it is a secret like the staff token.
    link_secret: SecretStr = SecretStr(DEV_LINK_SECRET)
    # Public base URL of the portal: every link in every mail starts with it.
    portal_url: str = "http://127.0.0.1:8000"

    catalogue_port: int = 8001
    registration_port: int = 8002
    notification_port: int = 8003
    reporting_port: int = 8004
    http_host: str = "127.0.0.1"

    # Consumers: unacknowledged messages per channel, and redeliveries before a message is dead-lettered.
    prefetch: int = Field(default=100, ge=1, le=10_000)
    delivery_limit: int = Field(default=5, ge=1, le=100)
    # How long a handler retries a transient infrastructure error in place before giving the message back.
    transient_retry_seconds: float = Field(default=20.0, ge=0)

    outbox_batch_size: int = Field(default=200, ge=1, le=5_000)
    outbox_poll_seconds: float = Field(default=1.0, gt=0)
    # Refusals by the broker (nack, return, no confirm in time) before an outbox row is parked; with the
    # back-off (1 s, 2 s, 4 s, ... 256 s) ten tries take about 17 minutes. Outages never count.
    outbox_park_after: int = Field(default=10, ge=1, le=1_000)
    # Bounds of every `<service>.dead-letter` queue (the oldest message is dropped when full).
    dead_letter_ttl_days: float = Field(default=14.0, gt=0, le=3_650)
    dead_letter_max_messages: int = Field(default=100_000, ge=1)
    # Bounds of `qti.unrouted` (events no queue was bound for).
    unrouted_ttl_days: float = Field(default=7.0, gt=0, le=3_650)
    unrouted_max_messages: int = Field(default=10_000, ge=1)
    db_pool_min: int = Field(default=2, ge=1)
    db_pool_max: int = Field(default=10, ge=1)

    shutdown_grace_seconds: float = Field(default=15.0, ge=0)
    # CPU priority of the process (a nice value: higher yields the CPU to others). On a machine that
    # several services share, work that may wait (mails, figures) yields to answers people wait for.
    cpu_nice: int = Field(
        default=0, ge=0, le=19, description="CPU priority as a nice value (higher yields to the others)"
    )
    log_level: str = "INFO"
    log_json: bool = True
    otel_exporter: str = Field(default="none", description="none, console or otlp (tracing exporter)")

    def port_of(self, service: str) -> int:
        return int(getattr(self, f"{service}_port"))
