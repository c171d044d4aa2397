"""Which payload model belongs to which CloudEvents `type`, and helpers to validate by type."""

from __future__ import annotations

from functools import cache
from typing import Any, Final, cast

from pydantic import BaseModel, ValidationError

from .envelope import CloudEvent
from .events import (
    AlertEnded,
    AlertSubscription,
    FeedbackInvited,
    FeedbackSubmitted,
    KpiUpdated,
    NodePublished,
    NodeUpdated,
    NotificationFailed,
    NotificationSent,
    OfferingCancelled,
    OfferingState,
    RegistrationAttendanceRecorded,
    RegistrationCancellationRequested,
    RegistrationCancelled,
    RegistrationCompleted,
    RegistrationConfirmed,
    RegistrationRejected,
    RegistrationRequested,
    RegistrationWaitlisted,
)
from .topology import RoutingKey

EVENT_TYPES: Final[dict[str, type[BaseModel]]] = {
    RoutingKey.REGISTRATION_REQUESTED: RegistrationRequested,
    RoutingKey.REGISTRATION_CANCELLATION_REQUESTED: RegistrationCancellationRequested,
    RoutingKey.REGISTRATION_CONFIRMED: RegistrationConfirmed,
    RoutingKey.REGISTRATION_WAITLISTED: RegistrationWaitlisted,
    RoutingKey.REGISTRATION_REJECTED: RegistrationRejected,
    RoutingKey.REGISTRATION_CANCELLED: RegistrationCancelled,
    RoutingKey.REGISTRATION_ATTENDANCE_RECORDED: RegistrationAttendanceRecorded,
    RoutingKey.REGISTRATION_COMPLETED: RegistrationCompleted,
    RoutingKey.FEEDBACK_INVITED: FeedbackInvited,
    RoutingKey.FEEDBACK_SUBMITTED: FeedbackSubmitted,
    RoutingKey.OFFERING_PUBLISHED: OfferingState,
    RoutingKey.OFFERING_UPDATED: OfferingState,
    RoutingKey.OFFERING_CANCELLED: OfferingCancelled,
    RoutingKey.NODE_PUBLISHED: NodePublished,
    RoutingKey.NODE_UPDATED: NodeUpdated,
    RoutingKey.NOTIFICATION_SENT: NotificationSent,
    RoutingKey.NOTIFICATION_FAILED: NotificationFailed,
    RoutingKey.KPI_UPDATED: KpiUpdated,
    RoutingKey.ALERT_SUBSCRIBED: AlertSubscription,
    RoutingKey.ALERT_CONFIRMED: AlertSubscription,
    RoutingKey.ALERT_ENDED: AlertEnded,
}
"""CloudEvents `type` (= routing key) → model of its `data`."""

PERSONAL_DATA_TYPES: Final[frozenset[str]] = frozenset(
    {
        RoutingKey.REGISTRATION_REQUESTED,
        RoutingKey.REGISTRATION_CONFIRMED,
        RoutingKey.REGISTRATION_WAITLISTED,
    }
)
"""Types whose payload carries personal data (names, e-mail addresses). Other registration and
notification events carry only pseudonymous ids; `reporting.*` events carry aggregates only."""


class UnknownEventTypeError(LookupError):
    """Raised for a CloudEvents `type` that this version of the contract does not know."""

    def __init__(self, type_: str) -> None:
        self.type = type_
        super().__init__(f"unknown event type {type_!r}; known types: {', '.join(sorted(EVENT_TYPES))}")


def model_for(type_: str) -> type[BaseModel]:
    """The payload model of `type_`; raises UnknownEventTypeError."""
    try:
        return EVENT_TYPES[type_]
    except KeyError:
        raise UnknownEventTypeError(type_) from None


def parse_data(type_: str, data: Any) -> BaseModel:
    """Validate the `data` of an event of `type_`. Raises UnknownEventTypeError or ValidationError."""
    return model_for(type_).model_validate(data)


@cache
def envelope_model(type_: str) -> type[CloudEvent[Any]]:
    """The envelope model `CloudEvent[<payload model>]` of `type_`; raises UnknownEventTypeError."""
    generic: Any = CloudEvent
    return cast("type[CloudEvent[Any]]", generic[model_for(type_)])


def parse_event(envelope: dict[str, Any] | str | bytes) -> CloudEvent[Any]:
    """Validate a whole envelope (dict or JSON) against the model of its own `type`."""
    if isinstance(envelope, str | bytes):
        model = envelope_model(CloudEvent[dict[str, Any]].model_validate_json(envelope).type)
        return model.model_validate_json(envelope)
    model = envelope_model(CloudEvent[dict[str, Any]].model_validate(envelope).type)
    return model.model_validate(envelope)


# Pydantic names the member of a union that failed inside `loc`; those tags are no field names.
_UNION_TAGS: Final = frozenset({"int", "float", "str", "bool", "decimal", "date", "datetime", "none"})


def _path(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, str) and (part in _UNION_TAGS or "[" in part):
            continue
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else part
    return path or "(root)"


def readable_errors(exc: ValidationError) -> str:
    """A short description naming each field path and its problem, e.g.
    `participant.email: value is not a valid email address: …; company.postal_code: …`.
    Input values are deliberately left out: they may be personal data."""
    parts: list[str] = []
    for error in exc.errors(include_url=False, include_input=False):
        message = error["msg"]
        for prefix in ("Value error, ", "Assertion failed, "):
            message = message.removeprefix(prefix)
        item = f"{_path(error['loc'])}: {message}"
        if item not in parts:
            parts.append(item)
    return "; ".join(parts)
