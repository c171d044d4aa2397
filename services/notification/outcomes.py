"""Registration outcomes (confirmed, waitlisted) of one batch → recipient rows, mails and reminders to
write; pure, no I/O (the handler reads the state before and writes the result, `handlers.on_batch`).

Outcomes are applied in the order given, each on the state the ones before it left, so a registration
waitlisted and promoted within one batch gets both mails, and a copy of an outcome changes nothing.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, Literal, NamedTuple

from qti_contracts import RegistrationConfirmed, RegistrationWaitlisted, RoutingKey
from qti_contracts.envelope import RawEvent
from qti_runtime.consumer import parse_payload
from services.notification import domain
from services.notification.deliveries import DeliveryFactory, person_of
from services.notification.store import NewDelivery, RecipientRow, RecipientUpdate

OUTCOME_TYPES: Final = frozenset({RoutingKey.REGISTRATION_CONFIRMED, RoutingKey.REGISTRATION_WAITLISTED})


class Outcome(NamedTuple):
    data: RegistrationConfirmed | RegistrationWaitlisted
    incoming: Literal["confirmed", "waitlisted"]
    template: str
    params: dict[str, Any]


def outcome_of(event: RawEvent) -> Outcome:
    """The outcome an event reports and the mail it calls for; invalid data is dead-lettered."""
    if event.type == RoutingKey.REGISTRATION_CONFIRMED:
        confirmed = parse_payload(RegistrationConfirmed, event)
        return Outcome(confirmed, "confirmed", "promoted" if confirmed.from_waitlist else "confirmation", {})
    waitlisted = parse_payload(RegistrationWaitlisted, event)
    return Outcome(waitlisted, "waitlisted", "waitlisted", {"position": waitlisted.position})


@dataclass
class OutcomeWrites:
    """What a batch of outcomes changes: the last state of each recipient, the mails to add, and per
    registration the reminder that replaces its other pending ones."""

    recipients: dict[str, RecipientUpdate] = field(default_factory=dict)
    mails: list[NewDelivery] = field(default_factory=list)
    kept_reminders: dict[str, str] = field(default_factory=dict)


def plan_outcomes(
    outcomes: Sequence[tuple[RawEvent, Outcome]],
    recipients: Mapping[str, RecipientRow],
    first_sessions: Mapping[str, datetime],
    factory: DeliveryFactory,
) -> OutcomeWrites:
    """`recipients`: the stored rows of the batch's registrations; `first_sessions`: per offering."""
    state = dict(recipients)
    writes = OutcomeWrites()
    for event, outcome in outcomes:
        registration_id = outcome.data.registration_id
        state[registration_id] = _apply(
            writes, state.get(registration_id), event, outcome, first_sessions, factory
        )
    return writes


def _apply(
    writes: OutcomeWrites,
    current: RecipientRow | None,
    event: RawEvent,
    outcome: Outcome,
    first_sessions: Mapping[str, datetime],
    factory: DeliveryFactory,
) -> RecipientRow:
    """Apply one outcome to `current`, add its writes, and return the recipient's new state."""
    data, incoming, template, params = outcome
    person = person_of(data.participant)
    transition = domain.on_registration_outcome(
        current.status if current else None,  # type: ignore[arg-type]
        current is not None and current.person is not None,
        incoming,
    )
    registration_id, offering_id = data.registration_id, data.offering_id
    if transition.send:
        writes.mails.append(
            factory.mail(
                template=template,
                trigger=event.id,
                event=event,
                person=person,
                registration_id=registration_id,
                offering_id=offering_id,
                params=params,
            )
        )
        if transition.status == "confirmed":
            first = first_sessions.get(offering_id)
            reminder = factory.reminder(event, registration_id, offering_id, person, first)
            if reminder is not None:
                writes.mails.append(reminder)
                writes.kept_reminders[registration_id] = reminder.notification_id
    if transition.send_deferred_cancellation and current is not None:
        writes.mails.append(factory.deferred_cancellation(event, current, person))
    writes.recipients[registration_id] = RecipientUpdate(
        registration_id=registration_id,
        offering_id=offering_id,
        request_id=data.request_id,
        person=person,
        status=transition.status,
        correlation_id=event.correlationid,
    )
    if current is None:
        return RecipientRow(
            registration_id=registration_id,
            offering_id=offering_id,
            status=transition.status,
            person=person,
            cancel_event_id=None,
            cancel_event_type=None,
            cancel_cause=None,
            cancel_reason=None,
            correlation_id=event.correlationid,
        )
    return dataclasses.replace(current, status=transition.status, person=person)
