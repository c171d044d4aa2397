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
    # Request bodies: every endpoint answers 413 beyond the first; the staff routes a service names as
    # needing more (an offering with 500 sessions, 1,000 attendance records) beyond the second.
    http_max_body_bytes: int = Field(
        default=64 * 1024, ge=1024, description="request-body limit of every HTTP endpoint (413 beyond)"
    )
    http_max_staff_body_bytes: int = Field(
        default=1024 * 1024, ge=1024, description="request-body limit of the large staff routes"
    )

    # Consumers: unacknowledged messages per channel, and redeliveries before a message is dead-lettered.
    prefetch: int = Field(default=100, ge=1, le=10_000)
    delivery_limit: int = Field(default=5, ge=1, le=100)
    # How long a handler retries a transient infrastructure error in place before giving the message back.
    transient_retry_seconds: float = Field(default=20.0, ge=0)

    outbox_batch_size: int = Field(default=200, ge=1, le=5_000)
    outbox_poll_seconds: float = Field(default=1.0, gt=0)
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
