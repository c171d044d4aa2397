"""The AsyncAPI document of the whole system, generated from the services' definitions.

Each installed service is built from its definition (nothing connects), and its queues, bindings and
handled event types are copied onto one documentation broker together with the event types its
definition says it publishes (and those the frontends publish); FastStream renders that broker as
AsyncAPI 3.0. `python -m qti_host.asyncapi` writes `docs/asyncapi.json`; `--check` fails when the
committed document differs from the code.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Union

from faststream.rabbit import RabbitBroker
from faststream.rabbit.annotations import RabbitMessage
from faststream.specification import AsyncAPI
from pydantic import SkipValidation

from qti_contracts import EVENT_TYPES, CloudEvent, RoutingKey, model_for
from qti_host.services import AnyDefinition, definitions
from qti_runtime.broker import EVENTS, REPORTING
from qti_runtime.consumer import Subscription

DOCUMENT = Path(__file__).resolve().parent.parent / "docs" / "asyncapi.json"

# Commands from outside the services (the portal and other frontends); the services' own events come from
# their definitions (`ServiceDefinition.publishes`).
FRONTENDS = "frontends"
FRONTEND_COMMANDS: Sequence[str] = (
    RoutingKey.REGISTRATION_REQUESTED,
    RoutingKey.REGISTRATION_CANCELLATION_REQUESTED,
)

_envelopes: dict[str, type[CloudEvent[Any]]] = {}


_SHARED_PAYLOAD_NAMES = {
    RoutingKey.OFFERING_UPDATED: "OfferingUpdated",
    RoutingKey.OFFERING_PUBLISHED: "OfferingPublished",
}


def _envelope_name(type_: str, payload_name: str) -> str:
    """The payload's name, unless several types share a payload: then the type's own (schema names must
    be unique, or the document would depend on which type the generator met last)."""
    if type_ in _SHARED_PAYLOAD_NAMES:
        return _SHARED_PAYLOAD_NAMES[type_]
    if sum(model_for(other) is model_for(type_) for other in EVENT_TYPES) == 1:
        return payload_name
    return "".join(part.capitalize() for part in type_.replace("_", ".").split("."))


def envelope_class(type_: str) -> type[CloudEvent[Any]]:
    """A named subclass per type, so schema names are plain (`RegistrationConfirmedEvent`)."""
    if type_ not in _envelopes:
        payload = model_for(type_)
        base: Any = CloudEvent[payload]  # type: ignore[valid-type]
        name = _envelope_name(type_, payload.__name__)
        _envelopes[type_] = type(f"{name}Event", (base,), {"__doc__": f"CloudEvents envelope of `{type_}`."})
    return _envelopes[type_]


def _documenting_handler(types: Sequence[str]) -> Callable[..., Any]:
    payload: Any = (
        envelope_class(types[0]) if len(types) == 1 else Union[tuple(envelope_class(t) for t in types)]  # noqa: UP007 - built at run time
    )

    async def handler(body: Any, message: RabbitMessage) -> None:  # pragma: no cover
        raise NotImplementedError("documentation only")

    # Real objects, not strings: the payload type exists only in this scope. SkipValidation keeps
    # FastStream from validating, as the services validate themselves (and answer bad input).
    handler.__annotations__ = {"body": SkipValidation[payload], "message": RabbitMessage, "return": None}  # type: ignore[misc]
    return handler


def _add_subscription(broker: RabbitBroker, service: str, subscription: Subscription) -> None:
    spec = subscription.spec
    types = sorted(subscription.handlers)
    broker.subscriber(
        spec.rabbit_queue(),
        exchange=spec.exchange,
        title=f"{spec.name}",
        description=f"{service}: {subscription.description or ''} Bound to `{spec.exchange.name}` with "
        f"{', '.join(f'`{k}`' for k in spec.routing_keys)}; quorum queue, delivery limit "
        f"{spec.delivery_limit}, poison messages to `{service}.dead-letter` with `x-qti-error` headers.",
    )(_documenting_handler(types))


def publishers(installed: Sequence[AnyDefinition]) -> dict[str, Sequence[str]]:
    """Who publishes which event types: the frontends, then every installed service."""
    return {FRONTENDS: FRONTEND_COMMANDS, **{d.name: d.publishes for d in installed}}


def _add_publishers(broker: RabbitBroker, installed: Sequence[AnyDefinition]) -> None:
    for publisher, types in publishers(installed).items():
        for type_ in types:
            broker.publisher(
                exchange=EVENTS,
                routing_key=type_,
                schema=envelope_class(type_),
                persist=True,
                title=f"{type_}:{publisher}",
                description=f"`{type_}`, published by {publisher} on `qti.events` (routing key = type), "
                "persistent, content type application/cloudevents+json, message_id = envelope id.",
            )
    broker.publisher(
        exchange=REPORTING,
        routing_key=RoutingKey.KPI_UPDATED,
        schema=envelope_class(RoutingKey.KPI_UPDATED),
        persist=True,
        title="reporting.kpi.updated:qti.reporting",
        description="The same KPI events on `qti.reporting` (fed from `qti.events` with `reporting.#`): "
        "bind your own queue here with read access to this exchange only; no personal data.",
    )


def build_document() -> dict[str, Any]:
    broker = RabbitBroker(specification_url="amqp://rabbitmq:5672/", description="qti-net event bus")
    installed = definitions()
    for definition in installed:
        for subscription in definition.build().runtime.subscriptions:
            _add_subscription(broker, definition.name, subscription)
    _add_publishers(broker, installed)
    spec = AsyncAPI(
        broker,
        title="qti-net",
        version="1.0.0",
        description="Events and commands of the QTI-Knoten network backend "
        "(CloudEvents 1.0, structured JSON). See INTERFACE.md for the contract.",
        schema_version="3.0.0",
    ).to_specification()
    document: dict[str, Any] = spec.to_jsonable()
    return document


def render() -> str:
    return json.dumps(build_document(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if docs/asyncapi.json is out of date")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        if not DOCUMENT.exists() or DOCUMENT.read_text("utf-8") != text:
            print(f"{DOCUMENT} is out of date: run python -m qti_host.asyncapi", file=sys.stderr)
            return 1
        print(f"{DOCUMENT} is up to date")
        return 0
    DOCUMENT.parent.mkdir(parents=True, exist_ok=True)
    DOCUMENT.write_text(text, "utf-8")
    print(f"wrote {DOCUMENT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
