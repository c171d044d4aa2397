"""Anonymous feedback in registration: who is invited, the one-time link, German 422s, the answer event.

Real broker and database: attendance recorded over HTTP invites attendees once; the link's token opens
the questionnaire once; the published answer names the offering only.
"""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from typing import Any

import pytest
from registration_kit import STAFF, Harness, harness, offering_data, request_data

from qti_runtime import links

__all__ = ["harness"]  # fixture

REQ = "registration.requested"


async def feedback_queue(h: Harness) -> Any:
    exchange = await h.channel.get_exchange("qti.events")
    queue = await h.channel.declare_queue("test.feedback", durable=False)
    await queue.bind(exchange, "registration.feedback.#")
    return queue


async def drain(queue: Any, expect: int, settle: float = 0.5) -> list[dict[str, Any]]:
    """`expect` messages, then none more for `settle` seconds."""
    received: list[dict[str, Any]] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 15
    quiet_until: float | None = None
    while loop.time() < deadline:
        message = await queue.get(fail=False, no_ack=True)
        if message is not None:
            received.append({"body": message.body, **json.loads(message.body)})
            quiet_until = None
            continue
        if len(received) >= expect:
            quiet_until = quiet_until or loop.time() + settle
            if loop.time() >= quiet_until:
                break
        await asyncio.sleep(0.05)
    return received


async def attended(h: Harness, n: int, presence: dict[str, list[bool]]) -> tuple[str, list[str]]:
    """An offering with `n` confirmed registrations and the given attendance per session."""
    offering = offering_data(capacity=n)
    oid = offering["offering_id"]
    await h.publish_offering(offering)
    await h.wait_offering(oid)
    for i in range(n):
        await h.publish(REQ, request_data(oid, i))
    regs = [e["data"]["registration_id"] for e in await h.events(n)]
    for session, present in presence.items():
        records = [{"registration_id": r, "attended": p} for r, p in zip(regs, present, strict=True)]
        url = f"/offerings/{oid}/sessions/{session}/attendance"
        answer = await h.client.put(url, json={"records": records}, headers=STAFF)
        assert answer.status_code == 200, answer.text
    return oid, regs


def header(token: str) -> dict[str, str]:
    return {"X-Feedback-Token": token}


GOOD = {"rating": 4, "usefulness": 5, "would_recommend": True, "comment": "Praxisnah.\nGern mehr Übungen."}


async def test_attendees_are_invited_once_and_answer_once_anonymously(harness: Harness) -> None:
    queue = await feedback_queue(harness)
    presence = {"s0": [True, False, True], "s1": [True, False, False], "s2": [True, False, True]}
    oid, regs = await attended(harness, 3, presence)
    invited = await drain(queue, 2)
    assert sorted(e["data"]["registration_id"] for e in invited) == sorted([regs[0], regs[2]])
    assert {e["type"] for e in invited} == {"registration.feedback.invited"}
    assert all(links.feedback_token(harness.settings.link_secret, r).encode() not in e["body"]
               for e in invited for r in regs)  # fmt: skip
    # a corrected record later invites nobody a second time
    fix = {"records": [{"registration_id": regs[2], "attended": True}]}
    assert (
        await harness.client.put(f"/offerings/{oid}/sessions/s1/attendance", json=fix, headers=STAFF)
    ).is_success
    assert await drain(queue, 0) == []

    token = links.feedback_token(harness.settings.link_secret, regs[0])
    opened = await harness.client.get("/feedback", headers=header(token))
    assert opened.status_code == 200 and opened.json() == {"offering_id": oid, "status": "open"}
    answer = await harness.client.post("/feedback", headers=header(token), json=GOOD)
    assert answer.status_code == 202, answer.text

    [submitted] = await drain(queue, 1)
    assert submitted["type"] == "registration.feedback.submitted"
    assert submitted["data"] == {"offering_id": oid, **GOOD}
    assert submitted["subject"] == oid and submitted.get("correlationid") is None
    assert datetime.fromisoformat(submitted["time"]).time().isoformat() == "00:00:00"  # the day only
    for secret in (*regs, token, links.token_hash(token), "anna", "Schmidt"):
        assert secret.encode() not in submitted["body"]

    again = await harness.client.post("/feedback", headers=header(token), json=GOOD)
    assert again.status_code == 410 and "bereits verwendet" in again.json()["detail"]
    assert (await harness.client.get("/feedback", headers=header(token))).status_code == 410
    assert await drain(queue, 0) == []

    # who did not attend has no ticket
    absent = links.feedback_token(harness.settings.link_secret, regs[1])
    refused = await harness.client.post("/feedback", headers=header(absent), json=GOOD)
    assert (
        refused.status_code == 404 and refused.json()["detail"] == "Dieser Link zur Rückmeldung ist ungültig."
    )

    async with harness.runtime.db.pool.acquire() as conn:
        columns = await conn.fetch(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = 'registration'"
            " AND table_name = 'feedback_tickets' ORDER BY ordinal_position"
        )
        spent = await conn.fetch("SELECT offering_id, spent FROM feedback_tickets ORDER BY spent")
    assert [c["column_name"] for c in columns] == ["token_hash", "offering_id", "spent"]
    assert [tuple(r) for r in spent] == [(oid, False), (oid, True)]


@pytest.mark.parametrize(
    ("body", "field", "text"),
    [
        ({**GOOD, "rating": 6}, "rating", "Gesamteindruck"),
        ({**GOOD, "rating": True}, "rating", "Gesamteindruck"),
        ({**GOOD, "usefulness": 0}, "usefulness", "Nutzen für die Arbeit"),
        ({**GOOD, "usefulness": 2.5}, "usefulness", "Nutzen für die Arbeit"),
        ({**GOOD, "would_recommend": "vielleicht"}, "would_recommend", "weiterempfehlen"),
        ({**GOOD, "comment": "x" * 2001}, "comment", "höchstens 2000 Zeichen"),
        ({**GOOD, "comment": "ok\x00\x1b[31m"}, "comment", "Steuerzeichen"),
        ({**GOOD, "comment": {"nested": ["x"]}}, "comment", "Text"),
        (["rating", 5], "(root)", "JSON-Objekt"),
    ],
)
async def test_bad_answers_get_german_422_and_leave_the_ticket_unspent(
    harness: Harness, body: Any, field: str, text: str
) -> None:
    _, regs = await attended(harness, 1, {"s0": [True], "s1": [True], "s2": [True]})
    token = links.feedback_token(harness.settings.link_secret, regs[0])
    answer = await harness.client.post("/feedback", headers=header(token), json=body)
    assert answer.status_code == 422
    problem = answer.json()
    assert text in problem["detail"] and [e["field"] for e in problem["errors"]] == [field]
    assert (await harness.client.get("/feedback", headers=header(token))).status_code == 200


async def test_forged_malformed_or_hostile_requests_are_refused_plainly(harness: Harness) -> None:
    _, regs = await attended(harness, 1, {"s0": [True], "s1": [True], "s2": [True]})
    token = links.feedback_token(harness.settings.link_secret, regs[0])
    multibyte = {"X-Feedback-Token": ("ä" * 43).encode()}
    assert (await harness.client.post("/feedback", headers=multibyte, json=GOOD)).status_code == 404
    for forged in ("A" * 43, token[:-1], token + "A", "' OR 1=1 --", ""):
        assert (await harness.client.post("/feedback", headers=header(forged), json=GOOD)).status_code == 404
    assert (await harness.client.post("/feedback", json=GOOD)).status_code == 404
    for raw in (b"{", b"\xff\xfe", b"[" * 5000 + b"]" * 5000):
        bad = await harness.client.post("/feedback", headers=header(token), content=raw)
        assert bad.status_code in (413, 422) and bad.headers["content-type"] == "application/problem+json"
    unicode = {**GOOD, "comment": 'Sehr gut 👍🏽 – =HYPERLINK("http://x") <script>alert(1)</script>'}
    assert (await harness.client.post("/feedback", headers=header(token), json=unicode)).status_code == 202
