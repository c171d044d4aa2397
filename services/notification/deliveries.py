"""The mails an event calls for, as delivery-log rows (`store.NewDelivery`); pure, no I/O.

Every row gets a deterministic id (`domain.notification_id`: trigger, template, registration or
request), so an event handled twice finds its rows instead of adding new ones. The first mail to an
address carries the DSGVO Art. 14 notice (`with_privacy_notice`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence, Set
from datetime import UTC, datetime
from typing import Any, Final

from qti_contracts import Participant, RegistrationRejected, RoutingKey
from qti_contracts.envelope import RawEvent
from services.notification import domain
from services.notification.settings import NotificationSettings
from services.notification.store import NewDelivery, Person, RecipientRow

# A delivery parameter: this mail is the first to its address and says what is done with the data.
PRIVACY_NOTICE: Final = "privacy_notice"


def person_of(participant: Participant) -> Person:
    return Person(
        email=str(participant.email),
        given_name=participant.given_name,
        family_name=participant.family_name,
        gender=participant.gender.value,
    )


def address_key(email: str) -> str:
    """An address as the log matches it (the index `deliveries_email`): trimmed, lower case."""
    return email.strip().lower()


def with_privacy_notice(mails: Sequence[NewDelivery], known: Set[str]) -> list[NewDelivery]:
    """`mails` with the notice on the first mail to each address not in `known` (mails due now before
    reminders due later)."""
    first: dict[str, int] = {}
    for index, mail in sorted(enumerate(mails), key=lambda item: item[1].due_at is not None):
        first.setdefault(address_key(mail.person.email), index)
    return [
        dataclasses.replace(mail, params={**mail.params, PRIVACY_NOTICE: True})
        if first.get(address_key(mail.person.email)) == index and address_key(mail.person.email) not in known
        else mail
        for index, mail in enumerate(mails)
    ]


class DeliveryFactory:
    """Builds the rows; holds the pseudonym key and the Message-ID domain."""

    def __init__(self, settings: NotificationSettings) -> None:
        self._key = settings.pseudonym_key.get_secret_value()
        self._message_id_domain = settings.message_id_domain
        self._reminder_lead_days = settings.reminder_lead_days

    def mail(
        self,
        *,
        template: str,
        trigger: str,
        event: RawEvent,
        person: Person,
        registration_id: str | None,
        offering_id: str | None,
        request_id: str | None = None,
        params: Mapping[str, Any] | None = None,
        due_at: datetime | None = None,
    ) -> NewDelivery:
        nid = domain.notification_id(trigger, template, registration_id or request_id or "")
        return NewDelivery(
            notification_id=nid,
            template=template,
            trigger_event_id=event.id,
            trigger_type=event.type,
            correlation_id=event.correlationid,
            registration_id=registration_id,
            request_id=request_id,
            offering_id=offering_id,
            person=person,
            recipient_ref=domain.pseudonym(person.email, self._key),
            message_id=domain.message_id(nid, self._message_id_domain),
            params=params or {},
            due_at=due_at,
        )

    def rejection(self, event: RawEvent, data: RegistrationRejected, person: Person) -> NewDelivery:
        return self.mail(
            template="rejected",
            trigger=event.id,
            event=event,
            person=person,
            registration_id=None,
            request_id=data.request_id,
            offering_id=data.offering_id,
            params={"reason": data.reason.value, "detail": data.detail},
        )

    def reminder(
        self, event: RawEvent, registration_id: str, offering_id: str, person: Person, first: datetime | None
    ) -> NewDelivery | None:
        """Due `reminder_lead_days` before the first session, one per first-session date; None without
        dates or when that moment has passed."""
        if first is None:
            return None
        due = domain.reminder_due(first, self._reminder_lead_days, datetime.now(UTC))
        if due is None:
            return None
        key = domain.first_session_key(first)
        return self.mail(
            template="reminder",
            trigger=f"first-session:{key}",
            event=event,
            person=person,
            registration_id=registration_id,
            offering_id=offering_id,
            params={"first_starts_at": key},
            due_at=due,
        )

    def cancellation(
        self,
        *,
        event: RawEvent,
        trigger: str,
        recipient: tuple[str, str, Person],
        cause: str,
        reason: str | None,
    ) -> NewDelivery:
        """`recipient`: registration id, offering id, person."""
        registration_id, offering_id, person = recipient
        if cause == "offering_cancelled":
            # The same mail as for catalogue.offering.cancelled: whichever event comes first sends it.
            return self.mail(
                template="offering_cancelled",
                trigger=f"offering-cancelled:{offering_id}",
                event=event,
                person=person,
                registration_id=registration_id,
                offering_id=offering_id,
                params={"reason": reason} if reason else {},
            )
        return self.mail(
            template="cancelled",
            trigger=trigger,
            event=event,
            person=person,
            registration_id=registration_id,
            offering_id=offering_id,
            params={"cause": cause, "reason": reason},
        )

    def deferred_cancellation(self, event: RawEvent, tombstone: RecipientRow, person: Person) -> NewDelivery:
        """The cancellation seen before its registration, mailed now that the address is known; reported
        as caused by the cancellation, not by the late registration event."""
        trigger = tombstone.cancel_event_id or event.id
        mail = self.cancellation(
            event=event,
            trigger=trigger,
            recipient=(tombstone.registration_id, tombstone.offering_id, person),
            cause=tombstone.cancel_cause or "organiser",
            reason=tombstone.cancel_reason,
        )
        return dataclasses.replace(
            mail,
            trigger_event_id=trigger,
            trigger_type=tombstone.cancel_event_type or RoutingKey.REGISTRATION_CANCELLED,
            correlation_id=tombstone.correlation_id or event.correlationid,
        )

    def offering_changed(
        self,
        event: RawEvent,
        recipient: RecipientRow,
        person: Person,
        previous: list[dict[str, Any]],
        revision: int,
    ) -> NewDelivery:
        return self.mail(
            template="offering_changed",
            trigger=event.id,
            event=event,
            person=person,
            registration_id=recipient.registration_id,
            offering_id=recipient.offering_id,
            params={"previous_sessions": previous, "revision": revision},
        )
