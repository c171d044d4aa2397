"""Event in → replicas updated and delivery-log rows written, in one transaction per event (outcomes:
per micro-batch of events).

No mail is sent here: handlers only insert `pending` rows (reminders: rows due later) and wake the
sender (`sender.py`). So a redelivered event, a second replica or a crash never sends anything twice:
the inbox claim and the deterministic notification ids absorb duplicates.

Rejections carry whom to tell (`RegistrationRejected.recipient`); a rejection without one (the request
named no valid participant) mails nobody.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Final

from qti_contracts import (
    NodePublished,
    OfferingCancelled,
    OfferingState,
    RegistrationCancelled,
    RegistrationRejected,
    RejectionReason,
    RoutingKey,
)
from qti_contracts.envelope import RawEvent
from qti_runtime.consumer import Delivery, Handler, parse_payload
from qti_runtime.db import Database
from qti_runtime.logging import get_logger
from qti_runtime.unit_of_work import UnitOfWork, advisory_locks, unit_of_work
from services.notification import domain, store
from services.notification.alert_handlers import AlertService
from services.notification.alternatives import PARAM as ALTERNATIVES
from services.notification.alternatives import alternatives_param, save_seats
from services.notification.certificate_handlers import CertificateHandlers
from services.notification.deliveries import (
    DeliveryFactory,
    address_key,
    person_of,
    with_privacy_notice,
)
from services.notification.outcomes import Outcome, outcome_of, plan_outcomes
from services.notification.settings import NotificationSettings
from services.notification.store import NewDelivery, RecipientRow

log = get_logger(__name__)

CONSUMER: Final = "notification.events"


class NotificationHandlers:
    """One method per consumed event type (see `consumers.py`)."""

    def __init__(self, db: Database, settings: NotificationSettings) -> None:
        self.db = db
        self.settings = settings
        self.mails = DeliveryFactory(settings)
        self.certificates = CertificateHandlers(db, self.mails, self._add)
        self.alerts = AlertService(db, settings)

    async def _add(self, uow: UnitOfWork, mails: Sequence[NewDelivery]) -> None:
        """Insert the mails' rows (the first to a new address with the privacy notice); wake the senders."""
        if not mails:
            return
        addresses = sorted({address_key(mail.person.email) for mail in mails})
        known = await store.known_addresses(uow.conn, addresses)
        await store.add_deliveries(uow.conn, with_privacy_notice(mails, known))
        await store.wake_senders(uow.conn)

    # --------------------------------------------------------------------- registration events

    async def on_one(self, event: RawEvent, delivery: Delivery) -> None:
        """An outcome on its own (the fallback when its batch failed): a batch of one."""
        await self.on_batch([(event, delivery)])

    async def on_batch(self, items: Sequence[tuple[RawEvent, Delivery]]) -> None:
        """Outcomes (confirmed, waitlisted) in one transaction for many: one commit, one inbox claim, one
        lock statement, one read of the recipients and one write of each kind for the whole batch."""
        outcomes = [(event, outcome_of(event)) for event, _ in items]
        async with unit_of_work(self.db) as uow:
            fresh = await uow.claim_many(CONSUMER, [event.id for event, _ in outcomes])
            if not fresh:
                return
            # The lock every handler of a registration's events takes.
            await advisory_locks(
                uow.conn,
                [
                    store.lock_key("registration", o.data.registration_id)
                    for e, o in outcomes
                    if e.id in fresh
                ],
            )
            await self._apply_outcomes(uow, _first_copies(outcomes, fresh))

    async def _apply_outcomes(self, uow: UnitOfWork, outcomes: list[tuple[RawEvent, Outcome]]) -> None:
        """The caller claimed the events and holds the registrations' locks."""
        await save_seats(uow.conn, [(o.data.offering_id, o.data.occupancy) for _, o in outcomes])
        found: dict[tuple[str, str | None], list[dict[str, Any]]] = {}  # one lookup per offering and district
        outcomes = [
            (event, await self._with_alternatives(uow, outcome, found)) for event, outcome in outcomes
        ]
        registrations = sorted({outcome.data.registration_id for _, outcome in outcomes})
        offerings = sorted({outcome.data.offering_id for _, outcome in outcomes})
        writes = plan_outcomes(
            outcomes,
            await store.get_recipients(uow.conn, registrations),
            await store.first_sessions(uow.conn, offerings),
            self.mails,
        )
        # Recipients first: the offering handlers lock a recipient before touching its mails.
        await store.save_recipients(uow.conn, list(writes.recipients.values()))
        await self._add(uow, writes.mails)
        await store.skip_replaced_reminders(uow.conn, writes.kept_reminders)

    async def _with_alternatives(
        self, uow: UnitOfWork, outcome: Outcome, found: dict[tuple[str, str | None], list[dict[str, Any]]]
    ) -> Outcome:
        """A waiting-list outcome with up to three offerings on the same topic that have free seats."""
        if outcome.incoming != "waitlisted":
            return outcome
        data = outcome.data
        county = data.company.county.value if data.company.county is not None else None
        key = (data.offering_id, county)
        if key not in found:
            found[key] = await alternatives_param(uow.conn, data.offering_id, county, datetime.now(UTC))
        return outcome._replace(params={**outcome.params, ALTERNATIVES: found[key]})

    async def on_rejected(self, event: RawEvent, delivery: Delivery) -> None:
        data = parse_payload(RegistrationRejected, event)
        if data.recipient is None:
            log.info("rejection.no_recipient", request_id=data.request_id)
            return  # nobody to tell (nothing is stored, so nothing to claim)
        mail = self.mails.rejection(event, data, person_of(data.recipient))
        async with unit_of_work(self.db) as uow:
            if await uow.claim(CONSUMER, event.id):
                if data.reason is RejectionReason.WAITLIST_FULL and data.offering_id:
                    # The request's company is not on the rejection: ranked from the full offering's node.
                    found = await alternatives_param(uow.conn, data.offering_id, None, datetime.now(UTC))
                    mail = dataclasses.replace(mail, params={**mail.params, ALTERNATIVES: found})
                await self._add(uow, [mail])

    async def on_cancelled(self, event: RawEvent, delivery: Delivery) -> None:
        data = parse_payload(RegistrationCancelled, event)
        async with unit_of_work(self.db) as uow:
            if not await uow.claim(CONSUMER, event.id):
                return
            await store.lock(uow.conn, "registration", data.registration_id)
            # After the registration's lock, as in a batch of outcomes: one lock order, no deadlock.
            await save_seats(uow.conn, [(data.offering_id, data.occupancy)])
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
            recipient = (data.registration_id, data.offering_id, current.person)
            mail = self.mails.cancellation(
                event=event, trigger=event.id, recipient=recipient, cause=data.cause.value, reason=data.reason
            )
            await self._add(uow, [mail])

    # ------------------------------------------------------------------------- catalogue events

    async def on_node(self, event: RawEvent, delivery: Delivery) -> None:
        data = parse_payload(NodePublished, event)
        async with unit_of_work(self.db) as uow:
            if not await uow.claim(CONSUMER, event.id):
                return
            await store.save_node(uow.conn, data)

    async def on_offering(self, event: RawEvent, delivery: Delivery) -> None:
        """published / updated: keep the newest revision; mail live registrations if dates or places
        changed (updated .ics, same UIDs, SEQUENCE = revision) and move their reminders."""
        state = parse_payload(OfferingState, event)
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
            if event.type == RoutingKey.OFFERING_PUBLISHED:
                await self.alerts.on_published(uow, event, state)  # offer alerts and interest
            before = previous.state if previous is not None else None
            if before is None:  # first sight: reminders of recipients that arrived before the offering
                await self._tell_live_recipients(uow, event, state, before=None)
            elif domain.sessions_changed(before.sessions, state.sessions):
                await self._tell_live_recipients(uow, event, state, before=before)

    async def _tell_live_recipients(
        self, uow: UnitOfWork, event: RawEvent, state: OfferingState, *, before: OfferingState | None
    ) -> None:
        """For each live recipient: the change mail (if there were dates `before`, and they or the places
        changed) and, if confirmed, a reminder for the first session, replacing its pending one."""
        mails: list[NewDelivery] = []
        kept: dict[str, str] = {}
        previous = [s.model_dump(mode="json") for s in before.sessions] if before is not None else []
        for recipient in await store.live_recipients(uow.conn, state.offering_id):
            person = recipient.person
            assert person is not None
            if before is not None:
                mails.append(self.mails.offering_changed(event, recipient, person, previous, state.revision))
            if recipient.status == "confirmed":
                reminder = self.mails.reminder(
                    event, recipient.registration_id, state.offering_id, person, state.starts_at
                )
                if reminder is not None:
                    mails.append(reminder)
                    kept[recipient.registration_id] = reminder.notification_id
        await store.skip_replaced_reminders(uow.conn, kept)
        await self._add(uow, mails)

    async def on_offering_cancelled(self, event: RawEvent, delivery: Delivery) -> None:
        data = parse_payload(OfferingCancelled, event)
        async with unit_of_work(self.db) as uow:
            if not await uow.claim(CONSUMER, event.id):
                return
            await store.lock(uow.conn, "offering", data.offering_id)
            previous = await store.get_offering(uow.conn, data.offering_id)
            if previous is not None and previous.cancelled:
                return
            await store.mark_offering_cancelled(uow.conn, data.offering_id, data.reason, data.revision)
            await store.skip_pending_reminders(uow.conn, offering_id=data.offering_id, why="Angebot abgesagt")
            recipients = await store.live_recipients(uow.conn, data.offering_id)
            await self._add(uow, [self._called_off(event, r, data) for r in recipients])
            for recipient in recipients:
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

    def _called_off(self, event: RawEvent, recipient: RecipientRow, data: OfferingCancelled) -> NewDelivery:
        assert recipient.person is not None  # live recipients have an address
        return self.mails.cancellation(
            event=event,
            trigger=event.id,
            recipient=(recipient.registration_id, data.offering_id, recipient.person),
            cause="offering_cancelled",
            reason=data.reason,
        )

    def handlers(self) -> dict[str, Handler]:
        return {
            RoutingKey.REGISTRATION_CONFIRMED: self.on_one,
            RoutingKey.REGISTRATION_WAITLISTED: self.on_one,
            RoutingKey.REGISTRATION_REJECTED: self.on_rejected,
            RoutingKey.REGISTRATION_CANCELLED: self.on_cancelled,
            RoutingKey.OFFERING_PUBLISHED: self.on_offering,
            RoutingKey.OFFERING_UPDATED: self.on_offering,
            RoutingKey.OFFERING_CANCELLED: self.on_offering_cancelled,
            RoutingKey.NODE_PUBLISHED: self.on_node,
            RoutingKey.NODE_UPDATED: self.on_node,
            RoutingKey.REGISTRATION_COMPLETED: self.certificates.on_completed,
            RoutingKey.FEEDBACK_INVITED: self.certificates.on_feedback_invited,
        }


def _first_copies(
    outcomes: list[tuple[RawEvent, Outcome]], fresh: set[str] | frozenset[str]
) -> list[tuple[RawEvent, Outcome]]:
    """The fresh outcomes, each once (a copy redelivered into the same batch takes effect once), sorted by
    registration (the order the offering handlers lock recipients in); the sort is stable, so one
    registration's outcomes keep their delivery order."""
    unapplied = set(fresh)
    first: list[tuple[RawEvent, Outcome]] = []
    for event, outcome in outcomes:
        if event.id in unapplied:
            unapplied.discard(event.id)
            first.append((event, outcome))
    return sorted(first, key=lambda item: item[1].data.registration_id)
