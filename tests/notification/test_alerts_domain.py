"""The pure rules of offer alerts: the matching rule (and that the SQL statement agrees with it), the
subscription's states, tokens, and the unsubscribe headers of the mail builder."""

from __future__ import annotations

import email
import email.policy
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from hypothesis import given
from hypothesis import strategies as st
from notification.test_service import SmtpServer, notification_settings, smtp, start_harness, stop_harness
from pydantic import SecretStr

from qti_contracts import AlertEndCause, AlertFrequency, AlertKind, County, OfferingKind, Topic
from qti_runtime.settings import Settings
from services.notification import alert_store, alerts
from services.notification.alerts import Gone, Interests, Subscription, matches
from services.notification.mail import MailAddress, OutgoingMail, build_outgoing
from services.notification.render import RenderedMail

__all__ = ["smtp"]

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
NODES = ("node-a", "node-b", "node-c")
interests = st.builds(
    Interests,
    topics=st.lists(st.sampled_from(list(Topic)), max_size=3, unique=True).map(tuple),
    kinds=st.lists(st.sampled_from(list(OfferingKind)), max_size=2, unique=True).map(tuple),
    counties=st.lists(st.sampled_from(list(County)[:4]), max_size=2, unique=True).map(tuple),
    nodes=st.lists(st.sampled_from(NODES), max_size=2, unique=True).map(tuple),
)
offerings = st.fixed_dictionaries(
    {
        "topic": st.sampled_from([t.value for t in Topic]),
        "kind": st.sampled_from([k.value for k in OfferingKind]),
        "county": st.one_of(st.none(), st.sampled_from([c.value for c in list(County)[:4]])),
        "node_id": st.sampled_from(NODES),
    }
)


def subscription(kind: AlertKind = AlertKind.ALERT) -> Subscription:
    return Subscription.sign_up(
        kind=kind,
        recipient_ref="rcpt-x",
        interests=Interests((Topic.WASSERSTOFF,), (), (County.ERFURT,)),
        frequency=AlertFrequency.WEEKLY,
        consent_text_version="v1",
        now=NOW,
        expiry=timedelta(hours=72),
    )


@given(interests, offerings)
def test_an_empty_choice_means_any(want: Interests, offering: dict[str, Any]) -> None:
    everything = Interests()
    assert matches(everything, **offering)
    if matches(want, **offering):  # naming more never widens what matches
        assert matches(Interests(want.topics, want.kinds), **offering)


def test_states_record_events_once_and_refuse_late_confirmation() -> None:
    sub = subscription()
    assert [t for t, _ in sub.events] == ["notification.alert.subscribed"]
    assert sub.confirm(NOW) and not sub.confirm(NOW)
    assert sub.end(AlertEndCause.UNSUBSCRIBED) and not sub.end(AlertEndCause.UNSUBSCRIBED)
    assert [t for t, _ in sub.events][1:] == ["notification.alert.confirmed", "notification.alert.ended"]
    with pytest.raises(Gone):
        sub.confirm(NOW)
    late = subscription()
    with pytest.raises(Gone):
        late.confirm(NOW + timedelta(hours=72))
    assert subscription(AlertKind.INTEREST).frequency is AlertFrequency.IMMEDIATE  # told once, at once


def test_tokens_differ_per_purpose_subscription_and_key() -> None:
    key, other = SecretStr("k" * 40), SecretStr("o" * 40)
    tokens = {
        alerts.token(key, "confirm", "alr-1"),
        alerts.token(key, "unsubscribe", "alr-1"),
        alerts.token(key, "confirm", "alr-2"),
        alerts.token(other, "confirm", "alr-1"),
    }
    assert len(tokens) == 4 and all(len(t) == 43 for t in tokens)
    assert alerts.token_hash("abc") != "abc" and len(alerts.token_hash("abc")) == 64


def test_unsubscribe_headers_are_written_and_injection_refused() -> None:
    rendered = RenderedMail("Angebotsalarm", "Text\n", "<p>Text</p>\n")
    headers = (("List-Unsubscribe", "<https://portal.example/angebotsalarm/abmelden/abc>"),
               ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"))  # fmt: skip
    mail = build_outgoing(
        rendered=rendered, sender=MailAddress("noreply@example.de"), recipient=MailAddress("a@example.de"),
        message_id="<x@example>", extra_headers=headers,
    )  # fmt: skip
    assert isinstance(mail, OutgoingMail)
    parsed = email.message_from_bytes(mail.data, policy=email.policy.default)
    assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert parsed["List-Unsubscribe"] == headers[0][1]
    for bad in (("List-Unsubscribe", "<x>\r\nBcc: b@example.de"), ("To", "c@example.de"), ("X Y", "z")):
        with pytest.raises(ValueError):
            build_outgoing(
                rendered=rendered, sender=MailAddress("noreply@example.de"),
                recipient=MailAddress("a@example.de"), message_id="<x@example>", extra_headers=[bad],
            )  # fmt: skip


async def test_the_matching_statement_agrees_with_the_rule(settings: Settings, smtp: SmtpServer) -> None:
    """Random subscriptions and offerings: the SQL selects exactly those `alerts.matches` selects."""
    h = await start_harness(notification_settings(settings, smtp), smtp)
    try:
        rng = random.Random(7)
        want = [random_interests(rng) for _ in range(60)]
        async with h.runtime.db.pool.acquire() as conn:
            for index, interest in enumerate(want):
                sub = Subscription.sign_up(
                    kind=AlertKind.ALERT, recipient_ref=f"rcpt-{index}", interests=interest,
                    frequency=AlertFrequency.IMMEDIATE, consent_text_version="v1", now=NOW,
                    expiry=timedelta(days=1),
                )  # fmt: skip
                await alert_store.insert(conn, sub, f"p{index}@example.de", (f"c{index}", f"u{index}"), NOW)
                await conn.execute(
                    "UPDATE alert_subscriptions SET status = 'confirmed', subscription_id = $1"
                    " WHERE subscription_id = $2", f"alr-{index:03d}", sub.subscription_id,
                )  # fmt: skip
            for round_ in range(25):
                offering = random_offering(rng)
                expected = {f"alr-{i:03d}" for i, w in enumerate(want) if matches(w, **offering)}
                got = await _matched(conn, offering, round_)
                assert got == expected, offering
    finally:
        await stop_harness(h)


def random_interests(rng: random.Random) -> Interests:
    def some(values: list[Any], most: int) -> tuple[Any, ...]:
        return tuple(rng.sample(values, rng.randint(0, most)))

    return Interests(
        some(list(Topic), 3), some(list(OfferingKind), 2), some(list(County)[:4], 2), some(list(NODES), 2)
    )


def random_offering(rng: random.Random) -> dict[str, Any]:
    return {
        "topic": rng.choice(list(Topic)).value,
        "kind": rng.choice(list(OfferingKind)).value,
        "county": rng.choice([None, *(c.value for c in list(County)[:4])]),
        "node_id": rng.choice(NODES),
    }


async def _matched(conn: asyncpg.Connection, offering: dict[str, Any], round_: int) -> set[str]:
    transaction = conn.transaction()
    await transaction.start()
    try:
        facts = alert_store.OfferingFacts(offering_id=f"off-{round_}", **offering)
        rows = await alert_store.match(conn, facts, alert_store.MailIdentity("e", "t", None, "d"))
        return {r["subscription_id"] for r in rows}
    finally:
        await transaction.rollback()
