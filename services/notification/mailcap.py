"""The cap on unsolicited mails: a rejection or waiting-list mail to an address that has never had a
confirmed registration goes out at most `QTI_UNSOLICITED_MAILS_PER_DAY` times per address and day.

Such mails are what a stranger can make the system send to anyone (a request in someone else's name is
rejected, or put on a waiting list, and the mail goes to that someone). An address that has had a
registration confirmed (its confirmation mail is in the log, or its recipient row is confirmed) belongs
to someone who uses the system and is never capped.

The sender checks a row once, on its first attempt, just before sending: one autocommit statement, no
locks held with the handlers. A row beyond the cap ends `skipped` with the reason in `last_error` (the
delivery log shows it) and sends nothing; it leaves no event, as for any other skipped mail. The count is
kept per keyed hash of the mailbox (`qti_runtime.ratelimit`, days in UTC), never the address.
"""

from __future__ import annotations

from typing import Final

import asyncpg

from qti_runtime.logging import get_logger
from qti_runtime.ratelimit import RateLimiter, Rule, mailbox
from services.notification.settings import NotificationSettings
from services.notification.store import DeliveryRow

log = get_logger(__name__)

# Sign-up confirmations (offer alerts, interest) count too, whoever the address belongs to: anyone can
# type anyone's address into the form, so repeated sign-ups must not become a mail cannon.
SIGNUP_TEMPLATES: Final = frozenset({"alert_confirm"})
UNSOLICITED_TEMPLATES: Final = frozenset({"rejected", "waitlisted"}) | SIGNUP_TEMPLATES
DAY: Final = 86_400

# Uses the expression indexes `recipients_email` (migrations/0002) and `deliveries_email` (0003).
_CONFIRMED = """
SELECT EXISTS (SELECT 1 FROM recipients WHERE lower(btrim(email)) = lower(btrim($1)) AND status = 'confirmed')
    OR EXISTS (SELECT 1 FROM deliveries WHERE lower(btrim(email)) = lower(btrim($1))
               AND template IN ('confirmation', 'promoted'))
"""


class MailCap:
    def __init__(self, settings: NotificationSettings) -> None:
        self._limiter = RateLimiter(settings.pseudonym_key.get_secret_value())
        self._rule = Rule("notification.unsolicited", settings.unsolicited_mails_per_day, DAY)

    async def suppression(self, conn: asyncpg.Connection, row: DeliveryRow) -> str | None:
        """Why the mail of `row` must not go out (the cap is reached), or None to send it."""
        if row.template not in UNSOLICITED_TEMPLATES or row.attempts != 1:
            return None  # a later attempt of a row was counted on its first
        if row.template not in SIGNUP_TEMPLATES and await conn.fetchval(_CONFIRMED, row.person.email):
            return None
        if self._rule.limit > 0:
            (verdict,) = await self._limiter.hit(conn, [(self._rule, mailbox(row.person.email))])
            if verdict.allowed:
                return None
        log.info(
            "delivery.suppressed",
            notification_id=row.notification_id,
            template=row.template,
            recipient_ref=row.recipient_ref,
        )
        return (
            f"unterdrückt: mehr als {self._rule.limit} unaufgeforderte Mails (Absage, Warteliste, "
            "Bestätigungsbitte) an diese Adresse an einem Tag"
        )
