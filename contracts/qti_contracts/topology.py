"""Exchanges, routing keys and queue names of qti-net (see INTERFACE.md, "Broker topology")."""

from __future__ import annotations

from typing import Final

# Every event and command travels on this topic exchange; the routing key is the event's `type`.
EVENTS_EXCHANGE: Final = "qti.events"
# Receives only `reporting.#` from EVENTS_EXCHANGE (exchange-to-exchange binding), so that a consumer
# granted read access to this exchange alone can never bind to events carrying personal data.
REPORTING_EXCHANGE: Final = "qti.reporting"
# Direct exchange for poison and invalid messages; routing key = the dead-letter queue's name.
DEAD_LETTER_EXCHANGE: Final = "qti.dead-letter"

SERVICES: Final = ("catalogue", "registration", "notification", "reporting")

# Registration answers a request's `reply_to` only if it is RabbitMQ's direct reply-to or a queue named
# with this prefix, so that an outcome with personal data cannot be sent into any other service's queue.
FRONTEND_REPLY_PREFIX: Final = "frontend.reply."


class RoutingKey:
    """Routing keys, equal to the CloudEvents `type` of what they carry."""

    REGISTRATION_REQUESTED: Final = "registration.requested"
    REGISTRATION_CANCELLATION_REQUESTED: Final = "registration.cancellation_requested"
    REGISTRATION_CONFIRMED: Final = "registration.confirmed"
    REGISTRATION_WAITLISTED: Final = "registration.waitlisted"
    REGISTRATION_REJECTED: Final = "registration.rejected"
    REGISTRATION_CANCELLED: Final = "registration.cancelled"
    REGISTRATION_ATTENDANCE_RECORDED: Final = "registration.attendance_recorded"
    REGISTRATION_COMPLETED: Final = "registration.completed"
    FEEDBACK_INVITED: Final = "registration.feedback.invited"
    FEEDBACK_SUBMITTED: Final = "registration.feedback.submitted"
    OFFERING_PUBLISHED: Final = "catalogue.offering.published"
    OFFERING_UPDATED: Final = "catalogue.offering.updated"
    OFFERING_CANCELLED: Final = "catalogue.offering.cancelled"
    NODE_PUBLISHED: Final = "catalogue.node.published"
    NODE_UPDATED: Final = "catalogue.node.updated"
    NOTIFICATION_SENT: Final = "notification.sent"
    NOTIFICATION_FAILED: Final = "notification.failed"
    ALERT_SUBSCRIBED: Final = "notification.alert.subscribed"
    ALERT_CONFIRMED: Final = "notification.alert.confirmed"
    ALERT_ENDED: Final = "notification.alert.ended"
    KPI_UPDATED: Final = "reporting.kpi.updated"


def queue_name(service: str, purpose: str) -> str:
    """Durable queues are named `<service>.<purpose>`."""
    return f"{service}.{purpose}"


def dead_letter_queue(service: str) -> str:
    return f"{service}.dead-letter"
