"""The pure parts of notification's handlers, without I/O: a batch of outcomes planned on the state before
it (outcomes.py), and the DSGVO Art. 14 notice on the first mail to each address (deliveries.py)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from qti_contracts import make_event
from qti_contracts.envelope import RawEvent
from services.notification.deliveries import PRIVACY_NOTICE, DeliveryFactory, with_privacy_notice
from services.notification.outcomes import Outcome, outcome_of, plan_outcomes
from services.notification.settings import NotificationSettings
from services.notification.store import NewDelivery, Person, RecipientRow

FACTORY = DeliveryFactory(NotificationSettings(reminder_lead_days=3.0))
ANNA = {"given_name": "Anna", "family_name": "Schmidt", "email": "anna@example.de", "gender": "female"}
COMPANY = {"name": "Muster GmbH", "postal_code": "99610", "county": "Sömmerda"}


def event(type_: str, registration_id: str = "reg-a", **extra: Any) -> tuple[RawEvent, Outcome]:
    data = {
        "registration_id": registration_id,
        "request_id": f"req-{registration_id}",
        "offering_id": "off-1",
        "participant": ANNA,
        "company": COMPANY,
        **extra,
    }
    raw = RawEvent.model_validate(
        json.loads(make_event(type_, data, source="/registration").model_dump_json())
    )
    return raw, outcome_of(raw)


def templates(mails: list[NewDelivery]) -> list[str]:
    return [mail.template for mail in mails]


def test_waitlisted_then_promoted_in_one_batch_gives_both_mails_and_a_reminder() -> None:
    first = datetime.now(UTC) + timedelta(days=30)
    writes = plan_outcomes(
        [event("registration.waitlisted", position=2), event("registration.confirmed", from_waitlist=True)],
        {},
        {"off-1": first},
        FACTORY,
    )
    assert templates(writes.mails) == ["waitlisted", "promoted", "reminder"]
    assert writes.recipients["reg-a"].status == "confirmed"
    [reminder] = [m for m in writes.mails if m.template == "reminder"]
    assert reminder.due_at == first - timedelta(days=3)
    assert writes.kept_reminders == {"reg-a": reminder.notification_id}


def test_a_stale_or_repeated_outcome_sends_nothing() -> None:
    confirmed = RecipientRow("reg-a", "off-1", "confirmed", Person("anna@example.de"), *[None] * 5)
    writes = plan_outcomes(
        [event("registration.waitlisted", position=1), event("registration.confirmed")],
        {"reg-a": confirmed},
        {},
        FACTORY,
    )
    assert writes.mails == []
    assert writes.recipients["reg-a"].status == "confirmed"


def test_a_cancellation_seen_first_is_mailed_when_the_registration_arrives() -> None:
    tombstone = RecipientRow(
        "reg-a", "off-1", "cancelled", None, "evt-cancel", None, "participant", "krank", None
    )
    writes = plan_outcomes([event("registration.confirmed")], {"reg-a": tombstone}, {}, FACTORY)
    [mail] = writes.mails
    assert (mail.template, mail.trigger_event_id, mail.person.email) == (
        "cancelled",
        "evt-cancel",
        ANNA["email"],
    )
    assert writes.recipients["reg-a"].status == "cancelled"


def test_only_the_first_mail_to_a_new_address_carries_the_privacy_notice() -> None:
    raw, _ = event("registration.confirmed")
    later = datetime.now(UTC) + timedelta(days=9)

    def mail(template: str, email: str, due_at: datetime | None = None) -> NewDelivery:
        return FACTORY.mail(
            template=template,
            trigger=raw.id,
            event=raw,
            person=Person(email),
            registration_id=f"reg-{email}",
            offering_id="off-1",
            due_at=due_at,
        )

    mails = [
        mail("reminder", "Neu@Example.de", later),  # due later: not the first the person reads
        mail("confirmation", "neu@example.de "),
        mail("waitlisted", "bekannt@example.de"),
        mail("promoted", "neu@example.de"),
    ]
    marked = with_privacy_notice(mails, known={"bekannt@example.de"})
    assert [bool(m.params.get(PRIVACY_NOTICE)) for m in marked] == [False, True, False, False]
    assert with_privacy_notice(mails, known={"neu@example.de", "bekannt@example.de"}) == mails
