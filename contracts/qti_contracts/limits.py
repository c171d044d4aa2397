"""Limits that values must meet to travel: AMQP encodes some of them as short strings of 255 bytes.

Envelope `id`, `type` and `correlationid` become the AMQP `message_id`, routing key and `correlation_id`.
A length check in characters is not enough: 200 characters of three bytes each are 600 bytes, which
the AMQP encoder refuses, so the outbox could never publish the event. Such values are refused where they
enter (`invalid_request`, HTTP 422) instead.
"""

from __future__ import annotations

from typing import Final

AMQP_SHORT_STRING_BYTES: Final = 255


def amqp_short(value: str) -> str:
    """The value if its UTF-8 encoding fits an AMQP short string (255 bytes)."""
    if len(value.encode("utf-8", "surrogatepass")) > AMQP_SHORT_STRING_BYTES:
        raise ValueError(f"must fit in {AMQP_SHORT_STRING_BYTES} bytes (UTF-8)")
    return value
