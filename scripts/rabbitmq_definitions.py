"""Generate deploy/rabbitmq/definitions.json from the runtime's topology (qti_runtime.broker).

    python scripts/rabbitmq_definitions.py            # rewrite the file
    python scripts/rabbitmq_definitions.py --check    # exit 1 if the file is out of date

The exchanges and queue arguments come from `qti_runtime.broker`, so that a broker pre-loaded with these
definitions accepts the services' own declarations (RabbitMQ refuses a redeclaration with other
arguments). The passwords are development defaults for compose; production sets its own (docs/operations.md).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import importlib
import inspect
import json
import sys
import typing
from pathlib import Path
from typing import Any

from qti_contracts.topology import DEAD_LETTER_EXCHANGE, EVENTS_EXCHANGE, REPORTING_EXCHANGE, SERVICES
from qti_runtime.broker import (
    DEAD_LETTERS,
    EVENTS,
    REPORTING,
    UNROUTED,
    UNROUTED_EXCHANGE,
    UNROUTED_QUEUE,
    QueueSpec,
    dead_letter_rabbit_queue,
)
from qti_runtime.settings import Settings

VHOST = "qti"
TARGET = Path(__file__).resolve().parent.parent / "deploy" / "rabbitmq" / "definitions.json"
KPI_CONSUMER = "kpi-consumer"
ADMIN = "qti-admin"

# The service queues of docs/architecture.md ("Queues"), used for a service whose app is not installed;
# where `services.<svc>.app` exists, its runtime's own declarations are used instead (service_queues()).
QUEUES: tuple[QueueSpec, ...] = (
    QueueSpec(
        "catalogue",
        "registrations",
        ["registration.confirmed", "registration.waitlisted", "registration.cancelled"],
    ),
    QueueSpec("registration", "requests", ["registration.requested", "registration.cancellation_requested"]),
    QueueSpec(
        "registration",
        "catalogue",
        ["catalogue.offering.published", "catalogue.offering.updated", "catalogue.offering.cancelled"],
    ),
    QueueSpec(
        "notification",
        "events",
        [
            "registration.confirmed",
            "registration.waitlisted",
            "registration.rejected",
            "registration.cancelled",
            "catalogue.offering.*",
            "catalogue.node.published",
        ],
    ),
    QueueSpec("reporting", "events", ["catalogue.#", "registration.#", "notification.#"]),
)


def _settings_for(function: Any) -> Settings:
    """Default settings of the class a service's `build_runtime(settings)` expects."""
    hints = typing.get_type_hints(function)
    parameter = next(iter(inspect.signature(function).parameters))
    hint = hints.get(parameter, Settings)
    for candidate in typing.get_args(hint) or (hint,):
        if isinstance(candidate, type) and issubclass(candidate, Settings):
            return candidate()
    return Settings()


def service_queues() -> list[QueueSpec]:
    """Every service's queues: from its runtime when `services.<svc>.app` exists, else from QUEUES."""
    specs: list[QueueSpec] = []
    for service in SERVICES:
        module_name = f"services.{service}.app"
        try:
            app_module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if not (exc.name and module_name.startswith(exc.name)):
                raise
            specs += [spec for spec in QUEUES if spec.service == service]
            continue
        runtime = app_module.build_runtime(_settings_for(app_module.build_runtime))
        specs += [s.spec for s in runtime.subscriptions] + list(runtime.extra_queues)
    return specs


def password_hash(password: str, salt: bytes) -> str:
    """RabbitMQ's rabbit_password_hashing_sha256: base64(salt + sha256(salt + password))."""
    digest = hashlib.sha256(salt + password.encode()).digest()
    return base64.b64encode(salt + digest).decode()


def _user(name: str, tags: list[str]) -> dict[str, Any]:
    salt = hashlib.sha256(name.encode()).digest()[:4]  # deterministic, so the file is reproducible
    return {
        "name": name,
        "password_hash": password_hash(f"{name}-dev-password", salt),
        "hashing_algorithm": "rabbit_password_hashing_sha256",
        "tags": tags,
        "limits": {},
    }


def _exchange(exchange: Any) -> dict[str, Any]:
    return {
        "name": exchange.name,
        "vhost": VHOST,
        "type": exchange.type.value,
        "durable": exchange.durable,
        "auto_delete": exchange.auto_delete,
        "internal": False,
        "arguments": dict(exchange.arguments or {}),
    }


def _queue(queue: Any) -> dict[str, Any]:
    return {
        "name": queue.name,
        "vhost": VHOST,
        "durable": queue.durable,
        "auto_delete": queue.auto_delete,
        "arguments": dict(queue.arguments or {}),
    }


def _binding(source: str, destination: str, kind: str, key: str) -> dict[str, Any]:
    return {
        "source": source,
        "vhost": VHOST,
        "destination": destination,
        "destination_type": kind,
        "routing_key": key,
        "arguments": {},
    }


def _service_permissions(service: str) -> dict[str, Any]:
    # configure: the shared exchanges (every replica declares them) and its own queues;
    # write: publish to qti.events / qti.dead-letter, bind its queues, the qti.reporting e2e binding,
    #        replies to clients' reply queues through the default exchange (amq.default);
    # read:  consume its own queues; the source side of its bindings.
    own = rf"{service}\..*"
    shared = r"qti\.(events|reporting|dead-letter|unrouted)"
    return {
        "user": service,
        "vhost": VHOST,
        "configure": f"^({shared}|{own})$",
        "write": rf"^({shared}|{own}|amq\.default)$",
        "read": rf"^(qti\.(events|dead-letter|unrouted)|{own})$",
    }


def definitions() -> dict[str, Any]:
    exchanges = [_exchange(e) for e in (EVENTS, REPORTING, DEAD_LETTERS, UNROUTED_EXCHANGE)]
    queues = [_queue(UNROUTED_QUEUE)]
    bindings = [
        _binding(UNROUTED, UNROUTED, "queue", ""),
        _binding(EVENTS_EXCHANGE, REPORTING_EXCHANGE, "exchange", "reporting.#"),
    ]
    for service in SERVICES:
        dlq = dead_letter_rabbit_queue(service)
        queues.append(_queue(dlq))
        bindings.append(_binding(DEAD_LETTER_EXCHANGE, dlq.name, "queue", dlq.name))
    for spec in service_queues():
        queues.append(_queue(spec.rabbit_queue()))
        bindings.extend(_binding(spec.exchange.name, spec.name, "queue", key) for key in spec.routing_keys)
    users = [_user(ADMIN, ["administrator"])]
    users += [_user(service, []) for service in SERVICES]
    users.append(_user(KPI_CONSUMER, []))
    permissions = [{"user": ADMIN, "vhost": VHOST, "configure": ".*", "write": ".*", "read": ".*"}]
    permissions += [_service_permissions(service) for service in SERVICES]
    # Read-only reporting consumer: reads qti.reporting (aggregates only) into its own kpi-consumer.* queues.
    permissions.append(
        {
            "user": KPI_CONSUMER,
            "vhost": VHOST,
            "configure": r"^kpi-consumer\..*$",
            "write": r"^kpi-consumer\..*$",
            "read": r"^(qti\.reporting|kpi-consumer\..*)$",
        }
    )
    policies = [
        {
            "vhost": VHOST,
            "name": "kpi-consumer-bounded",
            "pattern": r"^kpi-consumer\.",
            "apply-to": "queues",
            "priority": 0,
            "definition": {"max-length": 100000, "overflow": "reject-publish"},
        }
    ]
    return {
        "rabbit_version": "3.13.0",
        "users": users,
        "vhosts": [{"name": VHOST}],
        "permissions": permissions,
        "topic_permissions": [],
        "parameters": [],
        "global_parameters": [],
        "policies": policies,
        "queues": queues,
        "exchanges": exchanges,
        "bindings": bindings,
    }


def render() -> str:
    return json.dumps(definitions(), indent=2, sort_keys=False) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--check", action="store_true", help="fail if the committed file is out of date")
    args = parser.parse_args()
    text = render()
    if args.check:
        current = TARGET.read_text() if TARGET.exists() else ""
        if current != text:
            print(f"{TARGET} is out of date: run python scripts/rabbitmq_definitions.py", file=sys.stderr)
            return 1
        return 0
    TARGET.write_text(text)
    print(f"wrote {TARGET}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
