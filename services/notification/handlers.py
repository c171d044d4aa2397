"""Event in → replicas updated and delivery-log rows written, in one transaction per event (requests and
outcomes: per micro-batch of events).

No mail is sent here: handlers only insert `pending` rows (reminders: rows due later) and wake the
sender (`sender.py`). So a redelivered event, a second replica or a crash never sends anything twice:
the inbox claim and the deterministic notification ids absorb duplicates.

Rejections: `registration.rejected` carries no address. The service therefore also consumes
`registration.requested` and keeps the requester's name and address (only until the outcome arrives;
older unanswered requests are purged). A rejection whose request was never seen (e.g. the request
arrived before this service existed, or the participant's address was invalid) cannot be mailed and is
kept without address and mailed as soon as the request arrives (events may overtake each other).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final, Literal, NamedTuple, TypeVar

from pydantic import BaseModel, TypeAdapter, ValidationError

from qti_contracts import (
    NodePublished,
    OfferingCancelled,
    OfferingState,
    RegistrationCancelled,
    RegistrationConfirmed,
    RegistrationRejected,
    RegistrationWaitlisted,
    RoutingKey,
    readable_errors,
)
from qti_contracts.envelope import RawEvent
from qti_contracts.events import Email
from qti_runtime.consumer import DeadLetter, Delivery, Handler
from qti_runtime.db import Database
from qti_runtime.logging import get_logger
from qti_runtime.unit_of_work import UnitOfWork, advisory_locks, unit_of_work
from services.notification import domain, store
from services.notification.render import clean_line
from services.notification.settings import NotificationSettings
from services.notification.store import NewDelivery, Person, RecipientRow

log = get_logger(__name__)

CONSUMER: Final = "notification.events"
ModelT = TypeVar("ModelT", bound=BaseModel)
_EMAIL: Final = TypeAdapter(Email)
_GENDERS: Final = frozenset({"female", "male", "diverse", "unspecified"})


def _parse(event: RawEvent, model: type[ModelT]) -> ModelT:
    try:
        return model.model_validate(event.data)
    except ValidationError as exc:
        raise DeadLetter(f"invalid {event.type} payload: {readable_errors(exc)}", "invalid_data") from exc


class Outcome(NamedTuple):
    data: RegistrationConfirmed | RegistrationWaitlisted
    incoming: Literal["confirmed", "waitlisted"]
    template: str
    params: dict[str, Any]


_OUTCOMES: Final = frozenset({RoutingKey.REGISTRATION_CONFIRMED, RoutingKey.REGISTRATION_WAITLISTED})


def _outcome_of(event: RawEvent) -> Outcome:
    """The outcome an event reports and the mail it calls for; invalid data is dead-lettered."""
    if event.type == RoutingKey.REGISTRATION_CONFIRMED:
        confirmed = _parse(event, RegistrationConfirmed)
        return Outcome(confirmed, "confirmed", "promoted" if confirmed.from_waitlist else "confirmation", {})
    waitlisted = _parse(event, RegistrationWaitlisted)
    return Outcome(waitlisted, "waitlisted", "waitlisted", {"position": waitlisted.position})


def _requester(event: RawEvent) -> Person | None:
    """Whom to tell about the request's rejection; None if it names no usable address."""
    participant = event.data.get("participant")
    if not isinstance(participant, dict):
        return None
    try:
        email = str(_EMAIL.validate_python(participant.get("email")))
    except ValidationError:
        return None  # nobody to write to
    gender = participant.get("gender")
    return _person(
        clean_line(participant.get("given_name") or "", 100),
        clean_line(participant.get("family_name") or "", 100),
        email,
        gender if gender in _GENDERS else "unspecified",
    )


def _offering_of(event: RawEvent) -> str | None:
    offering_id = event.data.get("offering_id")
    return clean_line(offering_id, 100) if isinstance(offering_id, str) else None


def _person(given_name: str, family_name: str, email: str, gender: str) -> Person:
    return Person(email=email, given_name=given_name, family_name=family_name, gender=gender)


class NotificationHandlers:
    """One method per consumed event type (see `consumers.py`)."""

    def __init__(self, db: Database, settings: NotificationSettings) -> None:
        self.db = db
        self.settings = settings
        self._key = settings.pseudonym_key.get_secret_value()

    # ----------------------------------------------------------------------------------- helpers

    def _delivery(
        self,
        *,
        template: str,
        trigger: str,
        event: RawEvent,
        key: str,
        person: Person,
        registration_id: str | None,
        offering_id: str | None,
        request_id: str | None = None,
        params: Mapping[str, Any] | None = None,
        due_at: datetime | None = None,
    ) -> NewDelivery:
        nid = domain.notification_id(trigger, template, key)
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
            message_id=domain.message_id(nid, self.settings.message_id_domain),
            params=params or {},
            due_at=due_at,
        )

    async def _schedule_reminder(
        self, uow: UnitOfWork, event: RawEvent, registration_id: str, offering_id: str, person: Person
    ) -> None:
        """A reminder row due `reminder_lead_days` before the first session; one per first-session date."""
        offering = await store.get_offering(uow.conn, offering_id)
        first = offering.first_starts_at if offering is not None and not offering.cancelled else None
        reminder = self._reminder(event, registration_id, offering_id, person, first)
        if reminder is None:
            return  # no dates yet (scheduled when the offering arrives, see on_offering) or too late
        await store.skip_pending_reminders(
            uow.conn, registration_id=registration_id, keep=reminder.notification_id, why="Termin verschoben"
        )
        await store.add_deliveries(uow.conn, [reminder])

    def _reminder(
        self, event: RawEvent, registration_id: str, offering_id: str, person: Person, first: datetime | None
    ) -> NewDelivery | None:
        if first is None:
            return None
        due = domain.reminder_due(first, self.settings.reminder_lead_days, datetime.now(UTC))
        if due is None:
            return None
        key = domain.first_session_key(first)
        return self._delivery(
            template="reminder",
            trigger=f"first-session:{key}",
            event=event,
            key=registration_id,
            person=person,
            registration_id=registration_id,
            offering_id=offering_id,
            params={"first_starts_at": key},
            due_at=due,
        )

    def _cancellation_mail(
        self,
        *,
        event: RawEvent,
        trigger: str,
        registration_id: str,
        offering_id: str,
        person: Person,
        cause: str,
        reason: str | None,
    ) -> NewDelivery:
        if cause == "offering_cancelled":
            # The same mail as for catalogue.offering.cancelled: whichever event comes first sends it.
            return self._delivery(
                template="offering_cancelled",
                trigger=f"offering-cancelled:{offering_id}",
                event=event,
                key=registration_id,
                person=person,
                registration_id=registration_id,
                offering_id=offering_id,
                params={"reason": reason} if reason else {},
            )
        return self._delivery(
            template="cancelled",
            trigger=trigger,
            event=event,
            key=registration_id,
            person=person,
            registration_id=registration_id,
            offering_id=offering_id,
            params={"cause": cause, "reason": reason},
        )

    # --------------------------------------------------------------------- registration events

    async def on_one(self, event: RawEvent, delivery: Delivery) -> None:
        """A request or an outcome on its own (the fallback when its batch failed): a batch of one."""
        await self.on_batch([(event, delivery)])

    async def on_batch(self, items: Sequence[tuple[RawEvent, Delivery]]) -> None:
        """Requests and outcomes (confirmed, waitlisted) in one transaction for many: one commit, one inbox
        claim and one lock statement instead of one each per event. Outcomes are applied in registration
        order and, for one registration, in delivery order, so a registration waitlisted and promoted
        within one batch ends up as it would one by one."""
        outcomes = [(event, _outcome_of(event)) for event, _ in items if event.type in _OUTCOMES]
        people = {
            event.id: (event, person)
            for event, _ in items
            if event.type == RoutingKey.REGISTRATION_REQUESTED and (person := _requester(event))
        }
        async with unit_of_work(self.db) as uow:
            fresh = await uow.claim_many(CONSUMER, [*people, *(event.id for event, _ in outcomes)])
            if not fresh:
                return
            # The same locks as the one-event handlers take: of the request (the rejection handler's)
            # and of the registration (every handler of its events).
            await advisory_locks(
                uow.conn,
                [store.lock_key("request", request_id) for request_id in fresh if request_id in people]
                + [
                    store.lock_key("registration", o.data.registration_id)
                    for e, o in outcomes
                    if e.id in fresh
                ],
            )
            await self._remember_requests(uow, {key: people[key] for key in people if key in fresh})
            unapplied = set(fresh)  # a copy redelivered into the same batch takes effect once
            # Recipient rows in id order, as the offering handlers lock them (no deadlock with them); the
            # sort is stable, so one registration's outcomes keep their delivery order.
            for event, outcome in sorted(outcomes, key=lambda item: item[1].data.registration_id):
                if event.id in unapplied:
                    unapplied.discard(event.id)
                    await self._apply_outcome(uow, event, outcome)

    async def _remember_requests(
        self, uow: UnitOfWork, people: Mapping[str, tuple[RawEvent, Person]]
    ) -> None:
        """Remember who asked, for a possible rejection. Lenient: even an invalid request that has a
        usable address can be told why it was rejected. The caller holds the requests' locks."""
        requests = [
            store.NewRequest(request_id, _offering_of(people[request_id][0]), people[request_id][1])
            for request_id in sorted(people)
        ]
        for request_id in await store.save_requests(uow.conn, requests):
            event, person = people[request_id]
            await self._rejection_came_first(uow, event, person)

    async def _rejection_came_first(self, uow: UnitOfWork, event: RawEvent, person: Person) -> None:
        """The request's row existed already: if it is a rejection waiting for an address, mail it now,
        attributed to the rejection event."""
        early = await store.get_request(uow.conn, event.id)
        if early is None or early.person is not None or early.rejection_event_id is None:
            return
        await store.forget_request(uow.conn, event.id)
        rejection = RawEvent(
            id=early.rejection_event_id,
            source="/registration",
            type=RoutingKey.REGISTRATION_REJECTED,
            correlationid=early.correlation_id,
            data={},
        )
        await self._add_rejection(
            uow,
            rejection,
            event.id,
            early.offering_id,
            person,
            early.rejection_reason or "",
            early.rejection_detail,
        )

    async def _add_rejection(
        self,
        uow: UnitOfWork,
        event: RawEvent,
        request_id: str,
        offering_id: str | None,
        person: Person,
        reason: str,
        detail: str | None,
    ) -> None:
        mail = self._delivery(
            template="rejected",
            trigger=event.id,
            event=event,
            key=request_id,
            person=person,
            registration_id=None,
            request_id=request_id,
            offering_id=offering_id,
            params={"reason": reason, "detail": detail},
        )
        await store.add_deliveries(uow.conn, [mail])
        await store.wake_senders(uow.conn)

    async def _apply_outcome(self, uow: UnitOfWork, event: RawEvent, outcome: Outcome) -> None:
        """The caller claimed the event and holds the registration's lock."""
        data, incoming, template, params = outcome
        p = data.participant
        person = _person(p.given_name, p.family_name, str(p.email), p.gender.value)
        current, first_session = await store.recipient_and_first_session(
            uow.conn, data.registration_id, data.offering_id
        )
        transition = domain.on_registration_outcome(
            current.status if current else None,  # type: ignore[arg-type]
            current is not None and current.person is not None,
            incoming,
        )
        mails: list[NewDelivery] = []
        if transition.send:
            mails.append(
                self._delivery(
                    template=template,
                    trigger=event.id,
                    event=event,
                    key=data.registration_id,
                    person=person,
                    registration_id=data.registration_id,
                    offering_id=data.offering_id,
                    params=params,
                )
            )
        if transition.send_deferred_cancellation and current is not None:
            mails.append(self._deferred_cancellation(event, current, person))
        reminder = None
        if transition.send and transition.status == "confirmed":
            reminder = self._reminder(event, data.registration_id, data.offering_id, person, first_session)
        recipient = store.RecipientUpdate(
            registration_id=data.registration_id,
            offering_id=data.offering_id,
            request_id=data.request_id,
            person=person,
            status=transition.status,
            correlation_id=event.correlationid,
        )
        await store.record_outcome(
            uow.conn,
            recipient,
            [*mails, *([reminder] if reminder else [])],
            keep_reminder=reminder.notification_id if reminder else None,
        )

    def _deferred_cancellation(self, event: RawEvent, tombstone: RecipientRow, person: Person) -> NewDelivery:
        trigger = tombstone.cancel_event_id or event.id
        mail = self._cancellation_mail(
            event=event,
            trigger=trigger,
            registration_id=tombstone.registration_id,
            offering_id=tombstone.offering_id,
            person=person,
            cause=tombstone.cancel_cause or "organiser",
            reason=tombstone.cancel_reason,
        )
        # Reported as caused by the cancellation, not by the late registration event.
        return dataclasses.replace(
            mail,
            trigger_event_id=trigger,
            trigger_type=tombstone.cancel_event_type or RoutingKey.REGISTRATION_CANCELLED,
            correlation_id=tombstone.correlation_id or event.correlationid,
        )

    async def on_rejected(self, event: RawEvent, delivery: Delivery) -> None:
        data = _parse(event, RegistrationRejected)
        async with unit_of_work(self.db) as uow:
            if not await uow.claim(CONSUMER, event.id):
                return
            await store.lock(uow.conn, "request", data.request_id)
            request = await store.get_request(uow.conn, data.request_id)
            if request is None or request.person is None:
                if request is None:
                    await store.save_early_rejection(
                        uow.conn,
                        request_id=data.request_id,
                        offering_id=data.offering_id,
                        event_id=event.id,
                        reason=data.reason.value,
                        detail=data.detail,
                        correlation_id=event.correlationid,
                    )
                log.info("rejection.waits_for_request", request_id=data.request_id)
                return
            await store.forget_request(uow.conn, data.request_id)
            await self._add_rejection(
                uow,
                event,
                data.request_id,
                data.offering_id or request.offering_id,
                request.person,
                data.reason.value,
                data.detail,
            )

    async def on_cancelled(self, event: RawEvent, delivery: Delivery) -> None:
        data = _parse(event, RegistrationCancelled)
        async with unit_of_work(self.db) as uow:
            if not await uow.claim(CONSUMER, event.id):
                return
            await store.lock(uow.conn, "registration", data.registration_id)
            current = await store.get_recipient(uow.conn, data.registration_id)
            if current is not None and current.status == "cancelled":
                return  # already cancelled (e.g. by the offering's cancellation)
            await store.cancel_recipient(
                uow.conn,
                registration_id=data.registration_id,
                offering_id=data.offering_id,
                event_id=event.id,
                event_type=event.type,
                cause=data.cause.value,
                reason=data.reason,
                correlation_id=event.correlationid,
            )
            await store.skip_pending_reminders(
                uow.conn, registration_id=data.registration_id, why="Anmeldung storniert"
            )
            if current is None or current.person is None:
                return  # tombstone: mailed when the registration arrives
            mail = self._cancellation_mail(
                event=event,
                trigger=event.id,
                registration_id=data.registration_id,
                offering_id=data.offering_id,
                person=current.person,
                cause=data.cause.value,
                reason=data.reason,
            )
            await store.add_deliveries(uow.conn, [mail])
            await store.wake_senders(uow.conn)

    # ------------------------------------------------------------------------- catalogue events

    async def on_node(self, event: RawEvent, delivery: Delivery) -> None:
        data = _parse(event, NodePublished)
        async with unit_of_work(self.db) as uow:
            if not await uow.claim(CONSUMER, event.id):
                return
            await store.save_node(uow.conn, data)

    async def on_offering(self, event: RawEvent, delivery: Delivery) -> None:
        """published / updated: keep the newest revision; mail live registrations if dates or places
        changed (updated .ics, same UIDs, SEQUENCE = revision) and move their reminders."""
        state = _parse(event, OfferingState)
        async with unit_of_work(self.db) as uow:
            if not await uow.claim(CONSUMER, event.id):
                return
            await store.lock(uow.conn, "offering", state.offering_id)
            previous = await store.get_offering(uow.conn, state.offering_id)
            if previous is not None and previous.revision >= state.revision:
                log.info("offering.stale_revision", offering_id=state.offering_id, revision=state.revision)
                return
            await store.save_offering(uow.conn, state)
            if previous is not None and previous.cancelled:
                return
            before = previous.state if previous is not None else None
            changed = before is not None and domain.sessions_changed(before.sessions, state.sessions)
            if before is not None and not changed:
                return
            mails: list[NewDelivery] = []
            for recipient in await store.live_recipients(uow.conn, state.offering_id):
                assert recipient.person is not None
                if changed and before is not None:
                    previous_sessions = [s.model_dump(mode="json") for s in before.sessions]
                    mails.append(
                        self._delivery(
                            template="offering_changed",
                            trigger=event.id,
                            event=event,
                            key=recipient.registration_id,
                            person=recipient.person,
                            registration_id=recipient.registration_id,
                            offering_id=state.offering_id,
                            params={"previous_sessions": previous_sessions, "revision": state.revision},
                        )
                    )
                if recipient.status == "confirmed":
                    await self._schedule_reminder(
                        uow, event, recipient.registration_id, state.offering_id, recipient.person
                    )
            await store.add_deliveries(uow.conn, mails)
            await store.wake_senders(uow.conn)

    async def on_offering_cancelled(self, event: RawEvent, delivery: Delivery) -> None:
        data = _parse(event, OfferingCancelled)
        async with unit_of_work(self.db) as uow:
            if not await uow.claim(CONSUMER, event.id):
                return
            await store.lock(uow.conn, "offering", data.offering_id)
            previous = await store.get_offering(uow.conn, data.offering_id)
            if previous is not None and previous.cancelled:
                return
            await store.mark_offering_cancelled(uow.conn, data.offering_id, data.reason, data.revision)
            await store.skip_pending_reminders(uow.conn, offering_id=data.offering_id, why="Angebot abgesagt")
            mails: list[NewDelivery] = []
            for recipient in await store.live_recipients(uow.conn, data.offering_id):
                assert recipient.person is not None
                mails.append(
                    self._cancellation_mail(
                        event=event,
                        trigger=event.id,
                        registration_id=recipient.registration_id,
                        offering_id=data.offering_id,
                        person=recipient.person,
                        cause="offering_cancelled",
                        reason=data.reason,
                    )
                )
                await store.cancel_recipient(
                    uow.conn,
                    registration_id=recipient.registration_id,
                    offering_id=data.offering_id,
                    event_id=event.id,
                    event_type=event.type,
                    cause="offering_cancelled",
                    reason=data.reason,
                    correlation_id=event.correlationid,
                )
            await store.add_deliveries(uow.conn, mails)
            await store.wake_senders(uow.conn)

    def handlers(self) -> dict[str, Handler]:
        return {
            RoutingKey.REGISTRATION_REQUESTED: self.on_one,
            RoutingKey.REGISTRATION_CONFIRMED: self.on_one,
            RoutingKey.REGISTRATION_WAITLISTED: self.on_one,
            RoutingKey.REGISTRATION_REJECTED: self.on_rejected,
            RoutingKey.REGISTRATION_CANCELLED: self.on_cancelled,
            RoutingKey.OFFERING_PUBLISHED: self.on_offering,
            RoutingKey.OFFERING_UPDATED: self.on_offering,
            RoutingKey.OFFERING_CANCELLED: self.on_offering_cancelled,
            RoutingKey.NODE_PUBLISHED: self.on_node,
        }
