"""Configuration of the portal from `QTI_*` variables.

Deliberately not `qti_runtime.settings.Settings`: the portal has no database URL (it reaches only the
public contract), and its broker URL is the `frontend` user's.
"""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from qti_runtime.client_address import trusted_networks
from qti_runtime.settings import DEV_STAFF_TOKEN, KNOWN_DEFAULT_SECRETS, MIN_SECRET_LENGTH

DEV_FORM_SECRET = "dev-portal-form-secret-not-for-production"


class PortalSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="QTI_", extra="ignore")

    env: str = Field(default="development", pattern="^(development|production)$")
    amqp_url: str = "amqp://guest:guest@127.0.0.1:5672/"
    # The services' public HTTP APIs; by default on this host at their QTI_<SERVICE>_PORT.
    catalogue_url: str = ""
    registration_url: str = ""
    notification_url: str = ""
    reporting_url: str = ""
    catalogue_port: int = 8001
    registration_port: int = 8002
    notification_port: int = 8003
    reporting_port: int = 8004
    redis_url: str = "redis://127.0.0.1:6379/0"
    # Prefix of every Redis key, so that several portals (or test runs) can share one Redis.
    redis_prefix: str = "qti-portal"
    portal_port: int = 8000
    portal_url: str = "http://127.0.0.1:8000"
    http_host: str = "127.0.0.1"
    # Key of the CSRF tokens and of the browser's list of submitted requests (signed cookies).
    portal_form_secret: SecretStr = SecretStr(DEV_FORM_SECRET)
    # Form posts are small: 64 KiB is far beyond the largest legitimate coordinator form.
    portal_max_body_bytes: int = Field(default=64 * 1024, ge=1024)
    # Form posts per client address and per e-mail address (registrations) in each window.
    portal_posts_per_client: int = Field(default=60, ge=1)
    portal_posts_per_email: int = Field(default=10, ge=1)
    portal_rate_window_seconds: int = Field(default=600, ge=1)
    # Reverse proxies in front of the portal (gateway, ingress) whose X-Forwarded-For names the client
    # (qti_runtime.client_address); empty: the peer is the client.
    trusted_proxies: str = ""
    # How long the outcome page waits for a decision before it shows "wird bearbeitet".
    portal_outcome_wait_seconds: float = Field(default=4.0, ge=0, le=20)
    log_level: str = "INFO"
    # The staff console (/verwaltung): the services' staff token (accounts are the catalogue's staff
    # directory; console sessions live in Redis).
    staff_token: SecretStr = SecretStr(DEV_STAFF_TOKEN)
    console_idle_minutes: int = Field(default=30, ge=1, le=24 * 60)
    console_absolute_hours: int = Field(default=8, ge=1, le=24)

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: str) -> str:
        trusted_networks(value)  # a typo fails at start, not silently at the first request
        return value

    def model_post_init(self, _context: object) -> None:
        if not self.catalogue_url:
            self.catalogue_url = f"http://127.0.0.1:{self.catalogue_port}"
        if not self.registration_url:
            self.registration_url = f"http://127.0.0.1:{self.registration_port}"
        if not self.notification_url:
            self.notification_url = f"http://127.0.0.1:{self.notification_port}"
        if not self.reporting_url:
            self.reporting_url = f"http://127.0.0.1:{self.reporting_port}"

    def production_problems(self) -> list[str]:
        if self.env != "production":
            return []
        problems = []
        secret = self.portal_form_secret.get_secret_value()
        if secret in KNOWN_DEFAULT_SECRETS | {DEV_FORM_SECRET} or len(secret) < MIN_SECRET_LENGTH:
            problems.append("QTI_PORTAL_FORM_SECRET fehlt oder ist zu kurz / is missing or too short")
        token = self.staff_token.get_secret_value()
        if token in KNOWN_DEFAULT_SECRETS | {DEV_STAFF_TOKEN} or len(token) < MIN_SECRET_LENGTH:
            problems.append("QTI_STAFF_TOKEN fehlt oder ist zu kurz / is missing or too short")
        if unquote(urlsplit(self.amqp_url).username or "guest") == "guest":
            problems.append("QTI_AMQP_URL nutzt guest / uses guest (use the broker user `frontend`)")
        return problems
