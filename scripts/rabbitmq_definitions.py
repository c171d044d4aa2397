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
import json
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from qti_contracts.topology import (
    DEAD_LETTER_EXCHANGE,
    EVENTS_EXCHANGE,
    REPORTING_EXCHANGE,
    SERVICES,
    RoutingKey,
)
from qti_host.services import definition_of
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

VHOST = "qti"
TARGET = Path(__file__).resolve().parent.parent / "deploy" / "rabbitmq" / "definitions.json"
KPI_CONSUMER = "kpi-consumer"
FRONTEND = "frontend"
ADMIN = "qti-admin"
# Frontends send only these commands, and read only their own reply queues (or direct reply-to).
FRONTEND_COMMANDS = (RoutingKey.REGISTRATION_REQUESTED, RoutingKey.REGISTRATION_CANCELLATION_REQUESTED)
FRONTEND_REPLY_PREFIX = "frontend.reply."
# Only registration answers frontends, through the default exchange (`amq.default` in permissions).
REPLYING_SERVICES = frozenset({"registration"})
# A KPI consumer's queue holds at most this many messages; beyond it the oldest is dropped (never a
# refused publish: reporting's outbox must not wedge because a consumer stopped reading).
KPI_QUEUE_MAX_LENGTH = 100_000

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


def service_queues() -> list[QueueSpec]:
    """Every service's queues: from its definition when the service is installed, else from QUEUES."""
    specs: list[QueueSpec] = []
    for service in SERVICES:
        definition = definition_of(service)
        if definition is None:
            specs += [spec for spec in QUEUES if spec.service == service]
            continue
        runtime = definition.build().runtime
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


def _exact(names: Sequence[str]) -> str:
    """A regex matching exactly these names (RabbitMQ permissions are regexes on names)."""
    if not names:
        return "^$"  # RabbitMQ's spelling of "nothing"
    return "^(" + "|".join(re.escape(name) for name in sorted(set(names))) + ")$"


def published_routing_keys(service: str) -> list[str]:
    """The event types a service publishes on qti.events: the contract's routing keys in its namespace.

    Registration's include the commands, which its HTTP entry (`POST /registrations`) forwards.
    """
    constants = [value for name, value in vars(RoutingKey).items() if name.isupper()]
    return sorted(key for key in constants if isinstance(key, str) and key.startswith(f"{service}."))


def _vhost_permissions(service: str) -> dict[str, Any]:
    # configure: its own queues only (`<service>.*`); the shared exchanges and qti.unrouted come from these
    #            definitions, and the runtime only checks them (passive declares) in production;
    # write:     publish to qti.events / qti.dead-letter (routing keys limited by topic permissions),
    #            bind its own queues; registration alone writes to `amq.default` (replies to frontends);
    # read:      consume its own queues; the source side of its bindings (keys limited by topic permissions).
    own = rf"{service}\..*"
    default = r"|amq\.default" if service in REPLYING_SERVICES else ""
    return {
        "user": service,
        "vhost": VHOST,
        "configure": f"^{own}$",
        "write": rf"^(qti\.events|qti\.dead-letter|{own}{default})$",
        "read": rf"^(qti\.events|qti\.dead-letter|{own})$",
    }


def _topic_permissions(service: str, queues: Sequence[QueueSpec]) -> list[dict[str, Any]]:
    """Routing keys per exchange: publish only its own events; bind only to the keys it consumes.

    RabbitMQ checks `write` on every publish to a topic exchange and `read` on every binding to one.
    On qti.dead-letter the keys are queue names: its dead-letter queue and its queues (retries).
    """
    own = [q for q in queues if q.service == service]
    bound = [key for q in own if q.exchange.name == EVENTS_EXCHANGE for key in q.routing_keys]
    own_names = rf"^{re.escape(service)}\..*$"
    return [
        {
            "user": service,
            "vhost": VHOST,
            "exchange": EVENTS_EXCHANGE,
            "write": _exact(published_routing_keys(service)),
            "read": _exact(bound),
        },
        {
            "user": service,
            "vhost": VHOST,
            "exchange": DEAD_LETTER_EXCHANGE,
            "write": own_names,
            "read": own_names,
        },
    ]


def _frontend_permissions() -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Frontends publish the two commands, and use direct reply-to or their own `frontend.reply.*` queues.

    No read on qti.events (no binding, so no event with personal data) nor on any service queue.
    """
    replies = "^" + re.escape(FRONTEND_REPLY_PREFIX) + ".*$"
    vhost = {
        "user": FRONTEND,
        "vhost": VHOST,
        "configure": replies,
        "write": r"^qti\.events$",
        "read": replies,
    }
    topic = [
        {
            "user": FRONTEND,
            "vhost": VHOST,
            "exchange": EVENTS_EXCHANGE,
            "write": _exact(FRONTEND_COMMANDS),
            "read": "^$",
        }
    ]
    return vhost, topic


def definitions() -> dict[str, Any]:
    exchanges = [_exchange(e) for e in (EVENTS, REPORTING, DEAD_LETTERS, UNROUTED_EXCHANGE)]
    queues = [_queue(UNROUTED_QUEUE)]
    bindings = [
        _binding(UNROUTED, UNROUTED, "queue", ""),
        _binding(EVENTS_EXCHANGE, REPORTING_EXCHANGE, "exchange", "reporting.#"),
    ]
    specs = service_queues()
    for service in SERVICES:
        dlq = dead_letter_rabbit_queue(service)
        queues.append(_queue(dlq))
        bindings.append(_binding(DEAD_LETTER_EXCHANGE, dlq.name, "queue", dlq.name))
    for spec in specs:
        queues.append(_queue(spec.rabbit_queue()))
        bindings.extend(_binding(spec.exchange.name, spec.name, "queue", key) for key in spec.routing_keys)
        # Retries: the consumer sends a failed message back to its own queue through qti.dead-letter.
        bindings.append(_binding(DEAD_LETTER_EXCHANGE, spec.name, "queue", spec.name))
    users = [_user(ADMIN, ["administrator"])]
    users += [_user(service, []) for service in SERVICES]
    users += [_user(FRONTEND, []), _user(KPI_CONSUMER, [])]
    permissions = [{"user": ADMIN, "vhost": VHOST, "configure": ".*", "write": ".*", "read": ".*"}]
    permissions += [_vhost_permissions(service) for service in SERVICES]
    topic_permissions = [entry for service in SERVICES for entry in _topic_permissions(service, specs)]
    frontend, frontend_topics = _frontend_permissions()
    permissions.append(frontend)
    topic_permissions += frontend_topics
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
            "definition": {"max-length": KPI_QUEUE_MAX_LENGTH, "overflow": "drop-head"},
        }
    ]
    return {
        "rabbit_version": "3.13.0",
        "users": users,
        "vhosts": [{"name": VHOST}],
        "permissions": permissions,
        "topic_permissions": topic_permissions,
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
