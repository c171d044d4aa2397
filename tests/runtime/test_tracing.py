"""Tracing against the real broker and database: the trace context travels from handler to handler."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from qti_contracts.envelope import RawEvent, make_event
from qti_runtime.broker import QueueSpec, publish_event_bytes
from qti_runtime.consumer import DeadLetter, Delivery, Subscription
from qti_runtime.service import ServiceRuntime
from qti_runtime.settings import Settings
from qti_runtime.tracing import configure_tracing, use_tracer_provider
from qti_runtime.unit_of_work import unit_of_work
from support import eventually, get_messages

SERVICE = "probe"


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": f"qti-{SERVICE}"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    use_tracer_provider(provider)
    yield exporter
    use_tracer_provider(None)
    provider.shutdown()


def make_runtime(settings: Settings, tmp_path: Any, done: list[Delivery]) -> ServiceRuntime:
    migrations = tmp_path / "migrations"
    migrations.mkdir(exist_ok=True)
    holder: dict[str, ServiceRuntime] = {}

    async def handle_input(event: RawEvent, delivery: Delivery) -> None:
        if event.data.get("reject"):
            raise DeadLetter("payload says reject")
        async with unit_of_work(holder["rt"].db) as uow:
            uow.emit(make_event("probe.done", {"of": event.id}, source="/probe", correlationid=event.id))

    async def handle_done(event: RawEvent, delivery: Delivery) -> None:
        done.append(delivery)

    runtime = ServiceRuntime(
        SERVICE,
        settings,
        migrations=migrations,
        subscriptions=[
            Subscription(QueueSpec(SERVICE, "input", ["probe.input"]), {"probe.input": handle_input}),
            Subscription(QueueSpec(SERVICE, "done", ["probe.done"]), {"probe.done": handle_done}),
        ],
        extra_queues=[QueueSpec(SERVICE, "done-watch", ["probe.done"])],
    )
    holder["rt"] = runtime
    return runtime


def by_queue(exporter: InMemorySpanExporter, queue: str) -> list[ReadableSpan]:
    return [
        s
        for s in exporter.get_finished_spans()
        if s.attributes is not None and s.attributes.get("messaging.destination.name") == queue
    ]


async def test_trace_context_travels_in_message_headers(
    settings: Settings, tmp_path: Any, amqp_url: str, spans: InMemorySpanExporter
) -> None:
    done: list[Delivery] = []
    rt = make_runtime(settings, tmp_path, done)
    await rt.start()
    try:
        body = make_event("probe.input", {}, source="/test", id_="evt-trace").model_dump_json().encode()
        await publish_event_bytes(rt.broker, body, routing_key="probe.input", message_id="evt-trace")
        await eventually(lambda: by_queue(spans, "probe.done"))
        [emitted] = await get_messages(amqp_url, "probe.done-watch", expect=1)
    finally:
        await rt.stop()

    [first] = by_queue(spans, "probe.input")
    [second] = by_queue(spans, "probe.done")
    assert first.kind == second.kind == SpanKind.CONSUMER
    assert first.parent is None  # the test published without a trace context: a new trace starts
    assert first.context is not None and second.context is not None and second.parent is not None
    assert second.context.trace_id == first.context.trace_id
    assert second.parent.span_id == first.context.span_id
    assert second.parent.is_remote
    traceparent = (
        f"00-{first.context.trace_id:032x}-{first.context.span_id:016x}-{first.context.trace_flags:02x}"
    )
    assert emitted.headers["traceparent"] == traceparent
    assert done[0].headers["traceparent"] == traceparent
    assert first.attributes is not None
    assert first.attributes["messaging.system"] == "rabbitmq"
    assert first.attributes["cloudevents.event_type"] == "probe.input"
    assert first.attributes["messaging.message.id"] == "evt-trace"
    assert first.resource.attributes["service.name"] == "qti-probe"


async def test_without_tracing_an_incoming_trace_context_is_passed_on_and_none_is_made_up(
    settings: Settings, tmp_path: Any, amqp_url: str
) -> None:
    rt = make_runtime(settings, tmp_path, [])  # no provider: the API's no-op tracer
    traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    await rt.start()
    try:
        for event_id, headers in (("evt-traced", {"traceparent": traceparent}), ("evt-plain", None)):
            body = make_event("probe.input", {}, source="/test", id_=event_id).model_dump_json().encode()
            await publish_event_bytes(
                rt.broker, body, routing_key="probe.input", message_id=event_id, headers=headers
            )
        emitted = await get_messages(amqp_url, "probe.done-watch", expect=2)
    finally:
        await rt.stop()
    by_input = {json.loads(m.body)["data"]["of"]: m.headers for m in emitted}
    assert str(by_input["evt-traced"]["traceparent"]).split("-")[1] == "0af7651916cd43dd8448eb211c80319c"
    assert "traceparent" not in by_input["evt-plain"]


async def test_dead_lettered_message_span_has_error_status(
    settings: Settings, tmp_path: Any, amqp_url: str, spans: InMemorySpanExporter
) -> None:
    rt = make_runtime(settings, tmp_path, [])
    await rt.start()
    try:
        body = make_event("probe.input", {"reject": True}, source="/t", id_="evt-x").model_dump_json()
        await publish_event_bytes(rt.broker, body.encode(), routing_key="probe.input", message_id="evt-x")
        await get_messages(amqp_url, "probe.dead-letter", expect=1)
        [span] = await eventually(lambda: by_queue(spans, "probe.input"))
    finally:
        await rt.stop()
    assert span.status.status_code == StatusCode.ERROR
    assert [e.name for e in span.events] == ["exception"]


def test_configure_tracing_rejects_unknown_exporter() -> None:
    configure_tracing(SERVICE, "none")  # off: nothing installed, nothing fails
    with pytest.raises(ValueError, match="QTI_OTEL_EXPORTER"):
        configure_tracing(SERVICE, "jaeger")


def test_console_exporter_prints_spans_with_service_name() -> None:
    """In a child process: installing the global SDK provider here would leak into other tests."""
    script = (
        "from opentelemetry import trace\n"
        "from qti_runtime.tracing import configure_tracing, consume_span\n"
        "configure_tracing('probe', 'console')\n"
        "configure_tracing('probe', 'console')\n"
        "with consume_span({}, event_type='t', event_id='e', queue='q', correlation_id=None):\n"
        "    pass\n"
        "trace.get_tracer_provider().force_flush()\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    assert '"service.name": "qti-probe"' in out.stdout
    assert out.stdout.count('"name": "process q"') == 1
