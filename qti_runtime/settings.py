"""Configuration from `QTI_*` environment variables (INTERFACE.md, "Running")."""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_STAFF_TOKEN = "dev-staff-token"
DEV_LINK_SECRET = "dev-link-secret-not-for-production"
DEV_PSEUDONYM_KEY = "dev-pseudonym-key-not-for-production"
# Values that shipped as defaults at some point: none of them is a secret any more.
KNOWN_DEFAULT_SECRETS = frozenset(
    {DEV_STAFF_TOKEN, DEV_LINK_SECRET, DEV_PSEUDONYM_KEY, "dev-pseudonym-key", "change-me"}
)
# Shortest secret accepted in production: 32 characters of `secrets.token_urlsafe(32)` are ~190 bits.
MIN_SECRET_LENGTH = 32
SECRET_FIELDS = {
    "staff_token": "QTI_STAFF_TOKEN",
    "pseudonym_key": "QTI_PSEUDONYM_KEY",
    "link_secret": "QTI_LINK_SECRET",
}


class ProductionSecretsMissing(RuntimeError):
    """`QTI_ENV=production` with a default or too short secret; the message names every one."""


class Settings(BaseSettings):
    """Settings shared by every service; a service may subclass to add its own."""

    model_config = SettingsConfigDict(env_prefix="QTI_", extra="ignore")

    # `production` refuses to start with a default secret (see `check_production`); `development` uses them.
    env: str = Field(default="development", pattern="^(development|production)$")
    amqp_url: str = "amqp://guest:guest@127.0.0.1:5672/"
    database_url: str = "postgresql://root@127.0.0.1:5432/qti"
    staff_token: SecretStr = SecretStr(DEV_STAFF_TOKEN)
    # Key of the personal links in mails (`qti_runtime.links`): registration checks them, notification
    # writes them. Whoever holds it can open every registration, so it is a secret like the staff token.
    link_secret: SecretStr = SecretStr(DEV_LINK_SECRET)
    # Key of the keyed pseudonyms (HMAC) of persons and companies in notification's log and reporting's
    # figures: with it, the pseudonym of a known e-mail address can be recomputed.
    pseudonym_key: SecretStr = SecretStr(DEV_PSEUDONYM_KEY)
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

    def production_problems(self) -> list[str]:
        """What keeps this configuration from production, one German/English line per variable.

        Empty in development, and in production when every secret is set, not a shipped default, at
        least MIN_SECRET_LENGTH characters long, and the broker user is not `guest`.
        """
        if self.env != "production":
            return []
        problems = []
        for field, variable in SECRET_FIELDS.items():
            value = getattr(self, field).get_secret_value()
            if value in KNOWN_DEFAULT_SECRETS:
                problems.append(
                    f"{variable} fehlt (Entwicklungswert gesetzt) / is missing (development default set)"
                )
            elif len(value) < MIN_SECRET_LENGTH:
                problems.append(
                    f"{variable} ist kürzer als {MIN_SECRET_LENGTH} Zeichen / "
                    f"is shorter than {MIN_SECRET_LENGTH} characters"
                )
        user = unquote(urlsplit(self.amqp_url).username or "guest")
        if user == "guest":
            problems.append(
                "QTI_AMQP_URL nutzt den Broker-Benutzer guest / uses the broker user guest "
                "(use the service's own user, deploy/rabbitmq/definitions.json)"
            )
        return problems

    def check_production(self) -> None:
        """Raise `ProductionSecretsMissing` naming every problem (see `production_problems`)."""
        problems = self.production_problems()
        if problems:
            raise ProductionSecretsMissing(
                "QTI_ENV=production: Start verweigert / refusing to start (docs/operations.md, "
                '"Secrets"):\n  - ' + "\n  - ".join(problems)
            )
