"""OpenTelemetry tracing; the W3C trace context travels in AMQP message headers.

Off by default (`QTI_OTEL_EXPORTER=none`): no SDK provider is installed and the API's no-op tracer is
used, which still passes an incoming trace context on to the messages a handler emits. `console` prints
spans to stdout; `otlp` sends them over OTLP/HTTP to `OTEL_EXPORTER_OTLP_ENDPOINT` (standard OTel
variables apply). Each consumed message is a CONSUMER span whose parent is the span that emitted it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

EXPORTERS = ("none", "console", "otlp")

_tracer: trace.Tracer = trace.get_tracer(__name__)  # a proxy: follows the global provider once set
_configured = False
# Whether spans are recorded (an SDK provider is installed). Without one, a message that arrives without
# a trace context has nothing to pass on, and the no-op span machinery is skipped: per message it cost
# more than the rest of the consumer's own bookkeeping.
_recording = False


def configure_tracing(service: str, exporter: str) -> None:
    """Install the SDK provider for `exporter` once per process; `none` installs nothing."""
    global _configured, _recording
    if exporter not in EXPORTERS:
        raise ValueError(f"QTI_OTEL_EXPORTER must be one of {', '.join(EXPORTERS)}, not {exporter!r}")
    if _configured or exporter == "none":
        return
    span_exporter: SpanExporter
    if exporter == "console":
        span_exporter = ConsoleSpanExporter()
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        span_exporter = OTLPSpanExporter()  # endpoint and headers from the standard OTEL_* variables
    provider = TracerProvider(resource=Resource.create({"service.name": f"qti-{service}"}))
    provider.add_span_processor(BatchSpanProcessor(span_exporter))
    trace.set_tracer_provider(provider)  # flushed and shut down at exit by the SDK
    _configured = _recording = True


def use_tracer_provider(provider: trace.TracerProvider | None) -> None:
    """Test hook: trace with `provider` (None: back to the global one) without touching the global."""
    global _tracer, _recording
    _tracer = provider.get_tracer(__name__) if provider is not None else trace.get_tracer(__name__)
    _recording = provider is not None or _configured


def inject_trace_headers() -> dict[str, str]:
    """`traceparent`/`tracestate` of the current context, for the headers of an outgoing message."""
    carrier: dict[str, str] = {}
    if _recording or trace.get_current_span().get_span_context().is_valid:
        propagate.inject(carrier)
    return carrier


@contextmanager
def consume_span(
    headers: Mapping[str, Any], *, event_type: str, event_id: str, queue: str, correlation_id: str | None
) -> Iterator[Span]:
    """A CONSUMER span for handling one message, child of the context in the message's headers."""
    if not _recording and "traceparent" not in headers:
        yield trace.INVALID_SPAN  # nothing to record and no context to pass on
        return
    carrier = {
        key: value.decode() if isinstance(value, bytes) else value
        for key, value in headers.items()
        if isinstance(value, str | bytes)
    }
    attributes = {
        "messaging.system": "rabbitmq",
        "messaging.operation.type": "process",
        "messaging.destination.name": queue,
        "messaging.message.id": event_id,
        "cloudevents.event_id": event_id,
        "cloudevents.event_type": event_type,
    }
    if correlation_id:
        attributes["messaging.message.conversation_id"] = correlation_id
    with _tracer.start_as_current_span(
        f"process {queue}", context=propagate.extract(carrier), kind=SpanKind.CONSUMER, attributes=attributes
    ) as span:
        yield span


def mark_error(span: Span, description: str, exc: BaseException | None = None) -> None:
    if exc is not None:
        span.record_exception(exc)
    span.set_status(Status(StatusCode.ERROR, description))
