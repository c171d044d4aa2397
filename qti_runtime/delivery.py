"""What a handler is given besides the envelope: the message's delivery facts.

Its own module so that both the consumer and the micro-batcher can name it without importing each other.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from qti_contracts.envelope import RawEvent


@dataclass(frozen=True)
class Delivery:
    """What a handler may need to know about the message besides the envelope."""

    queue: str
    routing_key: str
    message_id: str | None
    correlation_id: str | None
    reply_to: str | None
    headers: Mapping[str, Any]
    # Earlier failed attempts: the larger of `x-qti-attempt` and the broker's `x-delivery-count`.
    delivery_count: int


Handler = Callable[[RawEvent, Delivery], Awaitable[None]]
