"""The CloudEvents 1.0 envelope (structured JSON mode) that wraps every event and command on the wire."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from .limits import amqp_short

DataT = TypeVar("DataT")

CONTENT_TYPE = "application/cloudevents+json"

EventId = Annotated[str, Field(min_length=1, max_length=200), AfterValidator(amqp_short)]
"""Becomes the AMQP `message_id`: at most 200 characters and 255 bytes."""
ShortAmqpText = Annotated[str, Field(max_length=200), AfterValidator(amqp_short)]


class CloudEvent(BaseModel, Generic[DataT]):
    """A CloudEvents 1.0 envelope. `id` is the idempotency key; unknown attributes are ignored."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    specversion: Literal["1.0"] = "1.0"
    id: EventId
    source: Annotated[str, Field(min_length=1, max_length=500)]
    type: Annotated[str, Field(min_length=1, max_length=200), AfterValidator(amqp_short)]
    time: datetime | None = None
    datacontenttype: str = "application/json"
    subject: Annotated[str, Field(max_length=200)] | None = None
    correlationid: ShortAmqpText | None = None
    data: DataT

    @field_validator("time")
    @classmethod
    def _aware_time(cls, value: datetime | None) -> datetime | None:
        # A naive timestamp on the wire is read as UTC rather than rejected.
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


RawEvent = CloudEvent[dict[str, Any]]
"""An envelope whose `data` is not yet validated against its type's model."""


def new_event_id() -> str:
    return str(uuid.uuid4())


def make_event(
    type_: str,
    data: DataT,
    *,
    source: str,
    subject: str | None = None,
    correlationid: str | None = None,
    id_: str | None = None,
    time: datetime | None = None,
) -> CloudEvent[DataT]:
    """Build an envelope with a fresh id and the current time unless given."""
    return CloudEvent[DataT](
        id=id_ or new_event_id(),
        source=source,
        type=type_,
        time=time or datetime.now(UTC),
        subject=subject,
        correlationid=correlationid,
        data=data,
    )
