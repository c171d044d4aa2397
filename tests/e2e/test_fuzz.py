"""Fuzzing every entry point of the running system (issue: security, item 12).

Hypothesis makes a fixed, derandomised set of hostile inputs: contract examples with values replaced by
random JSON, hostile strings (formulas, scripts, multibyte text over the byte limits, huge numbers, deep
nesting), missing fields, and raw bodies that are no JSON at all. They go to every consumer through the
broker (every routing key of the contract and unknown ones, odd headers) and to the HTTP endpoints of
every service. Afterwards every delivery is settled (no queue holds a ready or unacknowledged message;
what was refused lies in a dead-letter queue), no HTTP answer was a 5xx, every service is ready, and a
valid request is still answered.

The number of cases is `QTI_FUZZ_CASES` (default 160 broker messages and as many HTTP requests), so the
run stays bounded in CI; a longer hunt is `QTI_FUZZ_CASES=5000 pytest tests/e2e/test_fuzz.py`.
"""

from __future__ import annotations

import asyncio
import copy
import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import aio_pika
import httpx
import pytest
from e2e.system_kit import System
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from registration_kit import STAFF, request_data

from qti_contracts import make_event
from support import eventually

pytestmark = pytest.mark.slow

CASES = int(os.environ.get("QTI_FUZZ_CASES", "160"))
EXAMPLE_DIR = Path(__file__).resolve().parents[2] / "contracts" / "qti_contracts" / "examples"
EXAMPLES: dict[str, dict[str, Any]] = {
    path.stem: json.loads(path.read_text(encoding="utf-8")) for path in sorted(EXAMPLE_DIR.glob("*.json"))
}
SETTLE_TIMEOUT = 90.0

HOSTILE_TEXT = st.sampled_from(
    [
        '=HYPERLINK("http://example.invalid","klick")',
        "+1+1",
        "-2+3",
        "@SUM(A1:A9)",
        "\t=1",
        "\r=1",
        "<script>alert(1)</script>",
        "{{ 7*7 }}",
        "'; DROP TABLE offerings; --",
        "€" * 200,
        "ä" * 300,
        "\x00",
        "\ud800",
        "x" * 20_000,
        "../../etc/passwd",
        "Sömmerda",
        "anna.schmidt@example.de",
    ]
)
JSON_LEAF = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40)
    | HOSTILE_TEXT
)
JSON_VALUE = st.recursive(
    JSON_LEAF,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=10,
)
RAW_BODIES = st.sampled_from(
    [
        b"[" * 100_000,
        b'{"a":' * 50_000,
        b"1" * 100_000,
        b'{"specversion":"1.0","id":"x","source":"/f","type":"registration.requested","data":{"n":'
        + b"9" * 10_000
        + b"}}",
        b"\xff\xfe\x00",
        b"null",
        b"[]",
        b'"text"',
        b"{}",
        b"",
    ]
) | st.binary(max_size=300)
ODD_HEADERS = st.sampled_from(
    [
        {},
        {"x-delivery-count": "abc"},
        {"x-delivery-count": 10**15},
        {"x-qti-attempt": "viele"},
        {"x-qti-attempt": -5},
        {"traceparent": "00-zzzz-yyyy-01"},
        {"x-qti-error": "x" * 5000},
    ]
)


def _paths(document: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every place in a JSON document (the root excluded)."""
    if isinstance(document, dict):
        for key, value in document.items():
            yield (*prefix, key)
            yield from _paths(value, (*prefix, key))
    elif isinstance(document, list):
        for index, value in enumerate(document):
            yield (*prefix, index)
            yield from _paths(value, (*prefix, index))


def _set(document: Any, path: tuple[Any, ...], value: Any, *, delete: bool = False) -> None:
    for part in path[:-1]:
        document = document[part]
    if delete:
        del document[path[-1]]
    else:
        document[path[-1]] = value


@st.composite
def mutated(draw: st.DrawFn, original: dict[str, Any]) -> dict[str, Any]:
    """The document with one to three places replaced by hostile or random values, or removed."""
    document = copy.deepcopy(original)
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        places = list(_paths(document))
        if not places:
            break
        path = draw(st.sampled_from(places))
        if draw(st.integers(min_value=0, max_value=4)) == 0:
            _set(document, path, None, delete=True)
        else:
            _set(document, path, draw(HOSTILE_TEXT | JSON_VALUE))
    return document


@st.composite
def broker_cases(draw: st.DrawFn) -> tuple[str, bytes, dict[str, Any]]:
    """(routing key, body, headers) of one message to `qti.events`."""
    routing_key = draw(st.sampled_from([*EXAMPLES, "unknown.type", "registration.requested.v9"]))
    if draw(st.integers(min_value=0, max_value=3)) == 0:
        body = draw(RAW_BODIES)
    else:
        example = copy.deepcopy(EXAMPLES[draw(st.sampled_from(sorted(EXAMPLES)))])
        example["id"] = f"fuzz-{draw(st.uuids())}"
        body = json.dumps(draw(mutated(example)), ensure_ascii=draw(st.booleans())).encode(
            "utf-8", "surrogatepass"
        )
    return routing_key, body, draw(ODD_HEADERS)


HttpCase = tuple[str, str, str, dict[str, Any]]


@st.composite
def http_cases(draw: st.DrawFn, offering_id: str) -> HttpCase:
    """(method, service, path, request options) of one HTTP request."""
    hostile = draw(HOSTILE_TEXT | st.text(max_size=30))
    segment = quote(hostile.encode("utf-8", "surrogatepass"), safe="") or "x"
    choice = draw(st.integers(min_value=0, max_value=9))
    if choice <= 2:
        body = draw(mutated({**request_data(offering_id, draw(st.integers(0, 10**6))), "request_id": "1"}))
        headers = {"X-Correlation-ID": _header_value(hostile, 8000)}
        return ("POST", "registration", "/registrations", {"json": body, "headers": headers})
    if choice == 3:
        raw = draw(RAW_BODIES)
        return (
            "POST",
            "registration",
            "/registrations",
            {"content": raw, "headers": {"content-type": "application/json"}},
        )
    if choice == 4:
        return ("GET", "registration", f"/registrations/requests/{segment}", {})
    if choice == 5:
        options = {"headers": {"X-Personal-Token": _header_value(hostile, 500)}}
        return (
            draw(st.sampled_from(["GET", "POST"])),
            "registration",
            f"/registrations/{segment}" + draw(st.sampled_from(["", "/cancel"])),
            options,
        )
    if choice == 6:
        offering = EXAMPLES["catalogue.offering.published"]["data"]
        body = draw(mutated({k: v for k, v in offering.items() if k != "offering_id"}))
        return ("POST", "catalogue", "/offerings", {"json": body, "headers": STAFF})
    if choice == 7:
        key = draw(st.sampled_from(["q", "county", "node", "topic", "kind", "from", "to", "available"]))
        return ("GET", "catalogue", "/offerings", {"params": {key: hostile}})
    path = draw(st.sampled_from(["/kpis", "/exports/kpis.csv", "/exports/kpis.xlsx", "/dashboard"]))
    key = draw(st.sampled_from(["from", "to", "node", "county", "topic", "kind", "group_by"]))
    return ("GET", "reporting", path, {"params": {key: hostile}, "headers": STAFF})


def _header_value(text: str, limit: int) -> bytes:
    """The text's UTF-8 bytes as a header value (HTTP forbids control bytes there, so they are left out)."""
    raw = text.encode("utf-8", "surrogatepass")[:limit]
    return bytes(byte for byte in raw if byte >= 0x20 and byte != 0x7F) or b"x"


def generate(strategy: st.SearchStrategy[Any], count: int) -> list[Any]:
    """A fixed set of `count` cases (derandomised: the same in every run, so a failure reproduces)."""
    cases: list[Any] = []

    @settings(
        max_examples=count,
        database=None,
        derandomize=True,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
        deadline=None,
    )
    @given(strategy)
    def collect(case: Any) -> None:
        cases.append(case)

    collect()
    return cases


def _queue_counts(amqp_url: str) -> dict[str, tuple[int, int]]:
    """Ready and unacknowledged messages of every queue in the test's vhost (rabbitmqctl)."""
    ctl = shutil.which("rabbitmqctl")
    assert ctl is not None, "rabbitmqctl is needed to read unacknowledged counts"
    vhost = urlsplit(amqp_url).path.lstrip("/") or "/"
    output = subprocess.run(
        [
            ctl,
            "-q",
            "list_queues",
            "-p",
            unquote(vhost),
            "name",
            "messages_ready",
            "messages_unacknowledged",
            "--formatter",
            "json",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    return {
        q["name"]: (int(q["messages_ready"]), int(q["messages_unacknowledged"])) for q in json.loads(output)
    }


def _unsettled(amqp_url: str) -> dict[str, tuple[int, int]]:
    """Queues (other than dead letters and unrouted) that still hold ready or unacknowledged messages."""
    return {
        name: counts
        for name, counts in _queue_counts(amqp_url).items()
        if counts != (0, 0) and not name.endswith(".dead-letter") and name != "qti.unrouted"
    }


async def test_hostile_inputs_leave_every_delivery_settled_and_the_system_answering(system: System) -> None:
    urls = system.urls
    async with httpx.AsyncClient(timeout=30) as client:
        offering_id = await _open_offering(client, urls["catalogue"])
        broker = generate(broker_cases(), CASES)
        http = generate(http_cases(offering_id), CASES)

        connection = await aio_pika.connect(system.amqp_url)
        async with connection:
            channel = await connection.channel(publisher_confirms=True)
            exchange = await channel.get_exchange("qti.events")
            for routing_key, body, headers in broker:
                await exchange.publish(
                    aio_pika.Message(
                        body,
                        headers=headers,
                        content_type="application/cloudevents+json",
                        message_id=str(uuid.uuid4()),
                        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                    ),
                    routing_key=routing_key,
                )

            server_errors: list[str] = []
            for method, service, path, options in http:
                response = await client.request(method, urls[service] + path, **options)
                if response.status_code >= 500:
                    server_errors.append(f"{method} {service}{path[:80]} → {response.status_code}")
            assert server_errors == [], server_errors

            await _all_settled(system.amqp_url)
            dead = sum(
                ready
                for name, (ready, _) in _queue_counts(system.amqp_url).items()
                if name.endswith(".dead-letter")
            )
            assert dead > 0, "hostile messages are dead-lettered with their reason, not dropped silently"

            for service, url in urls.items():
                ready = await client.get(f"{url}/readyz")
                assert ready.status_code == 200, (service, ready.text)

            await _valid_request_is_answered(channel, exchange, offering_id)


async def _all_settled(amqp_url: str) -> None:
    async def settled() -> bool:
        return not await asyncio.to_thread(_unsettled, amqp_url)

    try:
        await eventually(settled, timeout=SETTLE_TIMEOUT, interval=1.0)
    except AssertionError:
        raise AssertionError(f"deliveries left unsettled (ready, unacked): {_unsettled(amqp_url)}") from None


async def _open_offering(client: httpx.AsyncClient, catalogue: str) -> str:
    async def first_open() -> str | None:
        response = await client.get(f"{catalogue}/offerings", params={"available": "true"})
        items = response.json().get("items", []) if response.status_code == 200 else []
        return str(items[0]["offering_id"]) if items else None

    return str(await eventually(first_open, timeout=60))


async def _valid_request_is_answered(
    channel: aio_pika.abc.AbstractChannel, exchange: aio_pika.abc.AbstractExchange, offering_id: str
) -> None:
    replies = await channel.declare_queue(f"frontend.reply.fuzz-{uuid.uuid4().hex[:8]}", exclusive=True)
    event = make_event("registration.requested", request_data(offering_id, 424242), source="/tests/fuzz")
    await exchange.publish(
        aio_pika.Message(
            event.model_dump_json().encode(),
            message_id=event.id,
            reply_to=replies.name,
            correlation_id=event.id,
            content_type="application/cloudevents+json",
        ),
        routing_key="registration.requested",
    )

    async def answered() -> dict[str, Any] | None:
        message = await replies.get(fail=False, no_ack=True)
        return json.loads(message.body) if message is not None else None

    reply = await eventually(answered, timeout=30, interval=0.2)
    assert reply["data"]["request_id"] == event.id
    assert reply["type"] in ("registration.confirmed", "registration.waitlisted", "registration.rejected")


def test_cases_are_hostile_and_reproducible() -> None:
    """The generator really produces the nasty inputs, and the same ones every run."""
    first = generate(broker_cases(), 60)
    assert first == generate(broker_cases(), 60)
    bodies = [body for _, body, _ in first]
    assert any(not body.startswith(b"{") for body in bodies)
    assert len({key for key, _, _ in first}) > 5
