"""Registration rules, free of I/O: who gets a seat, who waits, who is turned away and why."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from qti_contracts import OfferingKind, OfferingStatus, RejectionReason

COMPLETION_THRESHOLD = 0.8  # share of teaching units a participant must attend to complete


class Status(StrEnum):
    CONFIRMED = "confirmed"
    WAITLISTED = "waitlisted"
    CANCELLED = "cancelled"


LIVE = (Status.CONFIRMED, Status.WAITLISTED)


@dataclass(frozen=True)
class Offering:
    """What registration knows of an offering from catalogue: the facts its seat decisions rest on."""

    offering_id: str
    status: OfferingStatus
    kind: OfferingKind
    capacity: int
    registration_deadline: datetime
    first_session_start: datetime | None
    max_per_company: int | None
    waitlist_limit: int

    def has_begun(self, now: datetime) -> bool:
        """Whether the first session has started (or the offering took place): no participant
        cancellation and no promotion from the waiting list any more."""
        start = self.first_session_start
        return self.status == OfferingStatus.COMPLETED or (start is not None and now >= start)


@dataclass
class LiveHolders:
    """Who holds live registrations, for the offerings, people and companies of one transaction's requests.

    Loaded once with the offerings locked, then kept up to date by every decision of the transaction, so
    that later requests see earlier ones without asking the database again. Keys are (offering, e-mail)
    and (offering, company key); `knows` tells whether a request's keys were loaded.
    """

    emails: set[tuple[str, str]] = field(default_factory=set)
    companies: dict[tuple[str, str], int] = field(default_factory=dict)
    loaded_emails: set[tuple[str, str]] = field(default_factory=set)
    loaded_companies: set[tuple[str, str]] = field(default_factory=set)

    def knows(self, offering_id: str, email: str, company: str) -> bool:
        return (offering_id, email) in self.loaded_emails and (offering_id, company) in self.loaded_companies

    def merge(self, loaded: LiveHolders) -> None:
        """Take what was loaded for keys not known yet; a known key already counts this transaction's
        decisions, which the database does not show yet."""
        for key in loaded.loaded_emails - self.loaded_emails:
            self.loaded_emails.add(key)
            if key in loaded.emails:
                self.emails.add(key)
        for key in loaded.loaded_companies - self.loaded_companies:
            self.loaded_companies.add(key)
            self.companies[key] = loaded.companies.get(key, 0)

    def of(self, offering_id: str, email: str, company: str) -> tuple[bool, int]:
        """Whether the e-mail holds a live registration, and how many the company holds."""
        return (offering_id, email) in self.emails, self.companies.get((offering_id, company), 0)

    def add(self, offering_id: str, email: str, company: str) -> None:
        self.emails.add((offering_id, email))
        self.companies[(offering_id, company)] = self.companies.get((offering_id, company), 0) + 1

    def remove(self, offering_id: str, email: str, company: str) -> None:
        """A live registration ended; keys never loaded stay unknown (the database will tell)."""
        self.emails.discard((offering_id, email))
        if (offering_id, company) in self.companies:
            self.companies[(offering_id, company)] = max(0, self.companies[(offering_id, company)] - 1)


@dataclass(frozen=True)
class Confirm:
    pass


@dataclass(frozen=True)
class Waitlist:
    position: int


@dataclass(frozen=True)
class Reject:
    reason: RejectionReason
    detail: str


Decision = Confirm | Waitlist | Reject


def decide(
    offering: Offering,
    confirmed: int,
    waitlisted: int,
    *,
    consent: bool,
    now: datetime,
    already_registered: bool,
    company_live_registrations: int,
) -> Decision:
    """The outcome of one registration request, given the seats taken (`confirmed`, `waitlisted`)."""
    if not consent:
        return Reject(
            RejectionReason.CONSENT_MISSING,
            "Ohne Einwilligung in die Datenverarbeitung können wir die Anmeldung nicht annehmen. "
            "Bitte senden Sie die Anmeldung erneut und bestätigen Sie die Datenschutzhinweise.",
        )
    if offering.status != OfferingStatus.PUBLISHED:
        return Reject(RejectionReason.OFFERING_NOT_OPEN, not_open_detail(offering.status))
    if now >= offering.registration_deadline or (
        offering.first_session_start is not None and now >= offering.first_session_start
    ):
        return Reject(
            RejectionReason.REGISTRATION_CLOSED,
            "Die Anmeldefrist für dieses Angebot ist abgelaufen. Bitte wählen Sie einen späteren Termin "
            "oder wenden Sie sich direkt an den QTI-Knoten.",
        )
    if already_registered:
        return Reject(
            RejectionReason.DUPLICATE_REGISTRATION,
            "Unter dieser E-Mail-Adresse besteht bereits eine Anmeldung für dieses Angebot. "
            "Eine zweite Anmeldung ist nicht nötig.",
        )
    if offering.max_per_company is not None and company_live_registrations >= offering.max_per_company:
        return Reject(
            RejectionReason.COMPANY_LIMIT_REACHED,
            f"Aus Ihrem Unternehmen sind bereits {company_live_registrations} Personen angemeldet; "
            f"je Unternehmen sind höchstens {offering.max_per_company} Plätze möglich. Bitte sprechen "
            "Sie uns an, wenn weitere Beschäftigte teilnehmen sollen.",
        )
    if confirmed < offering.capacity:
        return Confirm()
    if waitlisted < offering.waitlist_limit:
        return Waitlist(position=waitlisted + 1)
    return Reject(
        RejectionReason.WAITLIST_FULL,
        "Das Angebot ist ausgebucht und die Warteliste ist voll. Bitte wählen Sie einen anderen Termin "
        "oder melden Sie sich für ein vergleichbares Angebot an.",
    )


def not_open_detail(status: OfferingStatus) -> str:
    if status == OfferingStatus.CANCELLED:
        return "Dieses Angebot wurde abgesagt. Anmeldungen sind nicht mehr möglich."
    if status == OfferingStatus.COMPLETED:
        return "Dieses Angebot hat bereits stattgefunden. Anmeldungen sind nicht mehr möglich."
    return "Für dieses Angebot sind Anmeldungen noch nicht freigeschaltet."


def offering_not_found_detail(offering_id: str) -> str:
    return (
        f"Das Angebot „{offering_id}“ ist uns nicht bekannt. Bitte prüfen Sie den Link oder wählen Sie "
        "das Angebot erneut im Veranstaltungskalender aus."
    )


def invalid_request_detail(problems: str) -> str:
    return f"Die Anmeldung ist unvollständig oder fehlerhaft ({problems}). Bitte korrigieren Sie die Angaben."


def normalise_email(email: str) -> str:
    return email.strip().lower()


_SPACES = re.compile(r"\s+")


def company_key(name: str, postal_code: str) -> str:
    """Identifies a company for the per-company limit, tolerant of case, spacing and accents."""
    folded = unicodedata.normalize("NFKC", name).casefold()
    return f"{_SPACES.sub(' ', folded).strip()}|{postal_code.strip()}"


@dataclass(frozen=True)
class Completion:
    attended_units: int
    total_units: int
    ratio: float
    completed: bool
    certificate_eligible: bool


def completion(kind: OfferingKind, units_by_session: dict[str, int], attended: dict[str, bool]) -> Completion:
    """Attendance over every session; ≥ 80 % of the teaching units completes the offering."""
    total = sum(units_by_session.values())
    got = sum(units for session, units in units_by_session.items() if attended.get(session))
    ratio = got / total if total else 0.0
    done = total > 0 and ratio >= COMPLETION_THRESHOLD
    return Completion(got, total, round(ratio, 4), done, done and kind == OfferingKind.CERTIFICATE_COURSE)
