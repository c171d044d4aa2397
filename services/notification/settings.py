"""Options of the notification service on top of the shared `QTI_*` settings."""

from __future__ import annotations

from pydantic import Field, SecretStr

from qti_runtime.settings import Settings


class NotificationSettings(Settings):
    """`QTI_SMTP_*`, sender tuning and reminder lead time (the pseudonym key is shared: `Settings`)."""

    # Full priority (issue 19): a confirmation mail is part of the answer, and at nice 10 the sender got
    # 2-7 % of a core on a saturated machine, 30 mails/s against 316 decisions/s (docs/performance.md).
    cpu_nice: int = Field(default=0, ge=0, le=19, description="CPU priority as a nice value")

    smtp_host: str = "127.0.0.1"
    smtp_port: int = Field(default=1025, ge=1, le=65535)
    smtp_starttls: bool = False
    smtp_use_tls: bool = Field(default=False, description="Implicit TLS (port 465 style).")
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_timeout: float = Field(default=30.0, gt=0)
    smtp_validate_certs: bool = True
    smtp_local_hostname: str = "notification.qti-net.local"

    mail_from_address: str = "noreply@qti-net.example"
    mail_from_name: str = "QTI-Netzwerk Thüringen"
    network_email: str = "kontakt@qti-net.example"
    message_id_domain: str = "notification.qti-net"

    # Reminder before the first session; a float so tests (and operators) can use fractions of a day.
    reminder_lead_days: float = Field(default=3.0, ge=0)

    # Sender: mails in flight per replica, rows claimed per query, lease of a claimed row.
    send_concurrency: int = Field(default=32, ge=1, le=500)
    send_batch: int = Field(default=64, ge=1, le=1000)
    send_lease_seconds: float = Field(default=120.0, gt=0)
    sender_poll_seconds: float = Field(default=1.0, gt=0)
    # Transient failures: next try after base * 2^(attempt-1) seconds (capped, with jitter) ...
    retry_base_seconds: float = Field(default=30.0, gt=0)
    retry_max_seconds: float = Field(default=3600.0, gt=0)
    # ... and give up (notification.failed, permanent=false) after this many attempts.
    max_attempts: int = Field(default=12, ge=1)
    # Rejection and waiting-list mails to an address without a confirmed registration, per address and
    # day (UTC); beyond, they are skipped (mailcap.py). 0: none at all.
    unsolicited_mails_per_day: int = Field(
        default=3, ge=0, description="rejection/waiting-list mails per day to a never-confirmed address"
    )

    # Public checks of a certificate code (`GET /certificates/{code}`) per client address and minute.
    certificate_lookups_per_minute: int = Field(
        default=120, ge=1, description="public certificate checks per client address and minute"
    )

    # Offer alerts and interest (alerts.py): unconfirmed sign-ups are purged after `alert_confirm_hours`;
    # weekly subscribers get at most one digest per `alert_digest_period_seconds`; the job that sends due
    # digests and purges runs every `alert_maintenance_seconds`.
    alert_confirm_hours: float = Field(default=72.0, gt=0, le=24 * 30)
    alert_digest_period_seconds: float = Field(default=7 * 86_400.0, ge=0)
    alert_maintenance_seconds: float = Field(default=300.0, gt=0)
    # POST /alerts per client address and per e-mail address (429 beyond); behind the portal the client
    # is the address the portal names in X-Forwarded-For, trusted only from `QTI_TRUSTED_PROXIES`.
    alert_rate_per_client: int = Field(default=30, ge=1)
    alert_rate_client_window_seconds: int = Field(default=60, ge=1, le=86_400)
    alert_rate_per_email: int = Field(default=5, ge=1)
    alert_rate_email_window_seconds: int = Field(default=3600, ge=1, le=86_400)
    trusted_proxies: str = Field(
        default="",
        description="comma-separated reverse proxies (the portal) whose X-Forwarded-For is used",
    )

    @property
    def send_timeout(self) -> float:
        """Upper bound of one SMTP delivery (connect + conversation); the lease must outlast it."""
        return min(self.smtp_timeout * 2, self.send_lease_seconds * 0.8)
