"""Offer alerts and interest: sign-up, confirmation, unsubscribe, matching on publication, weekly
digests and the purge of unconfirmed sign-ups. Each in one unit of work: state, delivery-log rows and
the events (outbox) commit together; the sender job (`sender.py`) mails the rows.
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

import asyncpg

from qti_contracts import (
    COUNTY_LABELS,
    AlertEndCause,
    AlertFrequency,
    AlertKind,
    OfferingState,
    make_event,
)
from qti_contracts.envelope import RawEvent
from qti_runtime.db import Database
from qti_runtime.logging import get_logger
from qti_runtime.unit_of_work import UnitOfWork, unit_of_work
from services.notification import alert_store, alerts, domain, store
from services.notification.alerts import Gone, Interests, Subscription
from services.notification.settings import NotificationSettings
from services.notification.store import NewDelivery, Person

log = get_logger(__name__)

SOURCE: Final = "/notification"
BATCH: Final = 500  # digests or purged sign-ups per transaction
_COUNTY_CODES: Final = {label.casefold(): county.value for county, label in COUNTY_LABELS.items()}


@dataclass(frozen=True, slots=True)
class SignUp:
    """A validated sign-up (alert_api.SignUpRequest)."""

    email: str
    kind: AlertKind
    interests: Interests
    frequency: AlertFrequency
    consent_text_version: str


class NotFound(Exception):
    """No subscription has this token."""


def county_code(label: str | None) -> str | None:
    """The county code of a node's German county label (the node replica keeps the label)."""
    if label is None:
        return None
    return _COUNTY_CODES.get(label.strip().casefold(), label.strip().casefold())


def _emit(uow: UnitOfWork, sub: Subscription) -> None:
    for type_, payload in sub.events:
        uow.emit(make_event(type_, payload, source=SOURCE, subject=sub.subscription_id))
    sub.events.clear()


class AlertService:
    def __init__(self, db: Database, settings: NotificationSettings) -> None:
        self.db = db
        self.settings = settings
        self._key = settings.pseudonym_key.get_secret_value()
        self._secret = settings.link_secret

    # --------------------------------------------------------------------------- links in mails

    def _hashes(self, subscription_id: str) -> tuple[str, str]:
        return (
            alerts.token_hash(alerts.token(self._secret, "confirm", subscription_id)),
            alerts.token_hash(alerts.token(self._secret, "unsubscribe", subscription_id)),
        )

    def _confirmation_mail(self, sub: Subscription, email: str) -> NewDelivery:
        nid = domain.notification_id(f"alert-signup:{sub.subscription_id}", alerts.CONFIRM_TEMPLATE, "")
        want = sub.interests
        return NewDelivery(
            notification_id=nid,
            template=alerts.CONFIRM_TEMPLATE,
            trigger_event_id=f"alert-signup:{sub.subscription_id}",
            trigger_type="notification.alert.subscribed",
            correlation_id=None,
            registration_id=None,
            request_id=None,
            offering_id=None,
            person=Person(email=email),
            recipient_ref=sub.recipient_ref,
            message_id=domain.message_id(nid, self.settings.message_id_domain),
            params={
                "subscription_id": sub.subscription_id,
                "kind": sub.kind.value,
                "topics": [t.value for t in want.topics],
                "counties": [c.value for c in want.counties],
                "nodes": list(want.nodes),
            },
        )

    # ------------------------------------------------------------------------------ the HTTP side

    async def subscribe(self, signup: SignUp) -> str:
        """A pending subscription and its confirmation mail; nothing else is sent before it is confirmed."""
        now = datetime.now(UTC)
        sub = Subscription.sign_up(
            kind=signup.kind,
            recipient_ref=domain.pseudonym(signup.email, self._key),
            interests=signup.interests,
            frequency=signup.frequency,
            consent_text_version=signup.consent_text_version,
            now=now,
            expiry=timedelta(hours=self.settings.alert_confirm_hours),
        )
        async with unit_of_work(self.db) as uow:
            await alert_store.insert(uow.conn, sub, signup.email, self._hashes(sub.subscription_id), now)
            await store.add_deliveries(uow.conn, [self._confirmation_mail(sub, signup.email)])
            await store.wake_senders(uow.conn)
            _emit(uow, sub)
        log.info("alert.subscribed", subscription_id=sub.subscription_id, kind=sub.kind.value)
        return sub.subscription_id

    async def confirm(self, token: str) -> Subscription:
        """Raises NotFound (unknown token) or Gone (ended, expired); confirming twice is fine."""
        async with unit_of_work(self.db) as uow:
            found = await alert_store.by_token_hash(uow.conn, "confirm_hash", alerts.token_hash(token))
            if found is None:
                raise NotFound
            sub, _email = found
            now = datetime.now(UTC)
            if sub.confirm(now):
                await alert_store.mark_confirmed(uow.conn, sub.subscription_id, now)
                _emit(uow, sub)
            return sub

    async def unsubscribe(self, token: str) -> Subscription:
        """Ends the subscription at once (queued mails are skipped); raises NotFound; idempotent."""
        async with unit_of_work(self.db) as uow:
            found = await alert_store.by_token_hash(uow.conn, "unsubscribe_hash", alerts.token_hash(token))
            if found is None:
                raise NotFound
            sub, _email = found
            if sub.end(AlertEndCause.UNSUBSCRIBED):
                await alert_store.mark_ended(
                    uow.conn, [sub.subscription_id], AlertEndCause.UNSUBSCRIBED, datetime.now(UTC)
                )
                _emit(uow, sub)
            return sub

    # ---------------------------------------------------------------------------- on publication

    async def on_published(self, uow: UnitOfWork, event: RawEvent, state: OfferingState) -> int:
        """Queue the alert and interest mails for a newly published offering (once per offering); the
        caller claimed the event. Returns how many mails were queued now (digest items not counted)."""
        if not await alert_store.first_match(uow.conn, state.offering_id):
            return 0
        facts = alert_store.OfferingFacts(
            offering_id=state.offering_id,
            topic=state.topic.value,
            kind=state.kind.value,
            node_id=state.node_id,
            county=county_code(await alert_store.county_of_node(uow.conn, state.node_id)),
        )
        ident = alert_store.MailIdentity(
            event.id, event.type, event.correlationid, self.settings.message_id_domain
        )
        queued = await alert_store.match(uow.conn, facts, ident)
        fulfilled = sorted(r["subscription_id"] for r in queued if r["template"] == alerts.INTEREST_TEMPLATE)
        if fulfilled:
            await self._end(uow, fulfilled, AlertEndCause.FULFILLED)
        if queued:
            await store.wake_senders(uow.conn)
        log.info("alert.matched", offering_id=state.offering_id, mails=len(queued))
        return len(queued)

    async def _end(self, uow: UnitOfWork, subscription_ids: list[str], cause: AlertEndCause) -> None:
        subs = await alert_store.get_many(uow.conn, subscription_ids)
        for sub in subs:
            sub.end(cause)
            _emit(uow, sub)
        await alert_store.mark_ended(uow.conn, subscription_ids, cause, datetime.now(UTC))

    # ------------------------------------------------------------------------------ periodic work

    async def send_digests(self) -> int:
        """One digest mail per weekly subscriber whose period has passed; returns how many."""
        total = 0
        while True:
            async with unit_of_work(self.db) as uow:
                due = await alert_store.due_digests(
                    uow.conn, self.settings.alert_digest_period_seconds, BATCH
                )
                if not due:
                    return total
                await store.add_deliveries(uow.conn, [self._digest_mail(r) for r in due])
                await alert_store.digest_done(
                    uow.conn, [r["subscription_id"] for r in due], datetime.now(UTC)
                )
                await store.wake_senders(uow.conn)
            total += len(due)

    def _digest_mail(self, record: asyncpg.Record) -> NewDelivery:
        offering_ids = list(record["offering_ids"])
        key = hashlib.sha256("\x1f".join(offering_ids).encode()).hexdigest()[:16]
        trigger = f"alert-digest:{record['subscription_id']}:{key}"
        nid = domain.notification_id(trigger, alerts.DIGEST_TEMPLATE, "")
        return NewDelivery(
            notification_id=nid,
            template=alerts.DIGEST_TEMPLATE,
            trigger_event_id=trigger,
            trigger_type="notification.alert.digest",
            correlation_id=None,
            registration_id=None,
            request_id=None,
            offering_id=None,
            person=Person(email=record["email"]),
            recipient_ref=record["recipient_ref"],
            message_id=domain.message_id(nid, self.settings.message_id_domain),
            params={"subscription_id": record["subscription_id"], "offering_ids": offering_ids},
        )

    async def purge_expired(self) -> int:
        """Delete unconfirmed sign-ups past their expiry (address and all); returns how many."""
        total = 0
        while True:
            async with unit_of_work(self.db) as uow:
                gone = await alert_store.purge_expired(uow.conn, datetime.now(UTC), BATCH)
                for sub in gone:
                    sub.end(AlertEndCause.EXPIRED)
                    _emit(uow, sub)
            total += len(gone)
            if len(gone) < BATCH:
                return total

    async def maintain(self) -> tuple[int, int]:
        return await self.send_digests(), await self.purge_expired()

    async def run(self) -> None:
        """The periodic job: digests and the purge every `alert_maintenance_seconds`."""
        while True:
            try:
                digests, purged = await self.maintain()
                if digests or purged:
                    log.info("alert.maintenance", digests=digests, purged=purged)
            except (asyncpg.PostgresError, OSError) as exc:
                log.warning("alert.maintenance_failed", error=repr(exc))
            await asyncio.sleep(self.settings.alert_maintenance_seconds)


__all__ = ["AlertService", "Gone", "NotFound", "SignUp", "county_code"]
