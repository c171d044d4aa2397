"""Reactions of notification to `registration.completed` (the certificate) and
`registration.feedback.invited` (the questionnaire link), and the staff actions on certificates.

Exactly once: the inbox claim absorbs a redelivered event, the unique registration id of `certificates`
a second completion (a corrected attendance record), and the deterministic notification ids a second
row for the same mail. No mail is sent here; the rows go to the sender like every other mail.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Final

from qti_contracts import FeedbackInvited, RegistrationCompleted, make_event
from qti_contracts.envelope import RawEvent
from qti_runtime.consumer import Delivery, parse_payload
from qti_runtime.db import Database
from qti_runtime.logging import get_logger
from qti_runtime.unit_of_work import UnitOfWork, unit_of_work
from services.notification import certificate_store, certificates, store
from services.notification.certificates import Certificate
from services.notification.deliveries import DeliveryFactory
from services.notification.store import NewDelivery, Person

log = get_logger(__name__)

CONSUMER: Final = "notification.events"

AddMails = Callable[[UnitOfWork, Sequence[NewDelivery]], Awaitable[None]]


class CertificateDataMissing(Exception):
    """The recipient, offering or node of a completion is not in the replicas yet: a retry may find it."""


class StaffActionRefused(Exception):
    """A staff action that cannot be done (revoked certificate, no address known); German text."""


class CertificateHandlers:
    def __init__(self, db: Database, mails: DeliveryFactory, add: AddMails) -> None:
        self.db = db
        self.mails = mails
        self.add = add

    async def on_completed(self, event: RawEvent, delivery: Delivery) -> None:
        """An eligible completion: issue the certificate (once per registration) and mail it."""
        data = parse_payload(RegistrationCompleted, event)
        async with unit_of_work(self.db) as uow:
            if not await uow.claim(CONSUMER, event.id) or not data.certificate_eligible:
                return
            await store.lock(uow.conn, "registration", data.registration_id)
            if await certificate_store.of_registration(uow.conn, data.registration_id) is not None:
                log.info("certificate.exists", registration_id=data.registration_id)
                return
            cert, person = await self._issue(uow, event, data)
            if person is None:
                log.info("certificate.no_address", registration_id=data.registration_id)
                return  # forgotten person: the certificate exists, nobody to mail it to
            await self.add(uow, [self._mail(event, cert, person, trigger=f"certificate:{cert.code}")])

    async def _issue(
        self, uow: UnitOfWork, event: RawEvent, data: RegistrationCompleted
    ) -> tuple[Certificate, Person | None]:
        recipient = await store.get_recipient(uow.conn, data.registration_id)
        offering = await store.get_offering(uow.conn, data.offering_id)
        state = offering.state if offering is not None else None
        node = (await store.get_nodes(uow.conn, [state.node_id])).get(state.node_id) if state else None
        if recipient is None or state is None or node is None:
            raise CertificateDataMissing(f"Anmeldung, Angebot oder Knoten zu {data.registration_id} fehlt")
        cert = certificates.issue(data, state, dict(node), datetime.now(UTC))
        await certificate_store.insert(uow.conn, cert, event.id)
        log.info("certificate.issued", registration_id=data.registration_id, offering_id=data.offering_id)
        return cert, recipient.person

    def _mail(
        self, event: RawEvent, cert: Certificate, person: Person, *, trigger: str, resent: bool = False
    ) -> NewDelivery:
        return self.mails.mail(
            template="certificate",
            trigger=trigger,
            event=event,
            person=person,
            registration_id=cert.registration_id,
            offering_id=cert.offering_id,
            params={"certificate": cert.snapshot(), "resent": resent},
        )

    async def on_feedback_invited(self, event: RawEvent, delivery: Delivery) -> None:
        """One invitation mail per registration; the link's token is derived when it is sent."""
        data = parse_payload(FeedbackInvited, event)
        async with unit_of_work(self.db) as uow:
            if not await uow.claim(CONSUMER, event.id):
                return
            await store.lock(uow.conn, "registration", data.registration_id)
            recipient = await store.get_recipient(uow.conn, data.registration_id)
            if recipient is None or recipient.person is None:
                log.info("feedback.no_address", registration_id=data.registration_id)
                return
            mail = self.mails.mail(
                template="feedback_invitation",
                trigger=f"feedback:{data.registration_id}",
                event=event,
                person=recipient.person,
                registration_id=data.registration_id,
                offering_id=data.offering_id,
            )
            await self.add(uow, [mail])

    # ------------------------------------------------------------------------------ staff actions

    async def resend(self, code: str, actor: str) -> Certificate | None:
        """Mail the certificate again (a new mail each time); None if the code is unknown."""
        async with unit_of_work(self.db) as uow:
            cert = await certificate_store.by_code(uow.conn, code, lock=True)
            if cert is None:
                return None
            if cert.revoked:
                raise StaffActionRefused(
                    "Die Bescheinigung ist widerrufen und kann nicht erneut versandt werden."
                )
            recipient = await store.get_recipient(uow.conn, cert.registration_id)
            if recipient is None or recipient.person is None:
                raise StaffActionRefused("Für diese Bescheinigung ist keine E-Mail-Adresse (mehr) bekannt.")
            event = _staff_event("certificate.resend", code)
            trigger = f"certificate-resend:{uuid.uuid4()}"
            await self.add(uow, [self._mail(event, cert, recipient.person, trigger=trigger, resent=True)])
            await certificate_store.record_action(uow.conn, code, "resend", actor)
            return cert

    async def revoke(self, code: str, actor: str, reason: str) -> Certificate | None:
        """Revoke (idempotent: a second revoke keeps the first date and reason); None if unknown."""
        async with unit_of_work(self.db) as uow:
            cert = await certificate_store.by_code(uow.conn, code, lock=True)
            if cert is None:
                return None
            if not cert.revoked:
                await certificate_store.revoke(uow.conn, code, reason)
                await certificate_store.record_action(uow.conn, code, "revoke", actor, reason)
            return await certificate_store.by_code(uow.conn, code)


def _staff_event(kind: str, code: str) -> RawEvent:
    """What a staff action's delivery row names as its trigger (no bus event caused it)."""
    event: RawEvent = make_event(kind, {}, source="/notification/staff", subject=code)
    return event
