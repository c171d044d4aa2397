"""Cost of building one outgoing mail: `email.message.EmailMessage` (`build_message`, flattened as
aiosmtplib's `send_message` does) against the hand-written serializer (`build_outgoing`), in one sitting.

    .venv/bin/python -m bench.mail_build [--mails 2000] [--rounds 7]

Both get the same rendered German confirmation mail (text + HTML) and the same `.ics` bytes (built once,
as the sender's cache does), and both end in the bytes handed to the SMTP client. Rendering (Jinja2),
which both paths share, is measured too, so the difference can be read against the whole CPU cost of
preparing a mail. The rounds of the variants alternate, so a machine shared with other work slows all of
them alike; the median round of each is printed, and the ratio.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime

from aiosmtplib.email import flatten_message

from services.notification.calendar import build_ics
from services.notification.mail import MailAddress, OutgoingMail, build_message, build_outgoing
from services.notification.render import (
    MailContext,
    NodeInfo,
    OfferingInfo,
    Recipient,
    RenderedMail,
    SessionInfo,
    render_mail,
)

SENDER = MailAddress("noreply@qti-net.example", "QTI-Netzwerk Thüringen")
SESSIONS = (
    SessionInfo("s-1", datetime(2030, 3, 12, 8, tzinfo=UTC), datetime(2030, 3, 12, 15, tzinfo=UTC), "Raum 2"),
    SessionInfo("s-2", datetime(2030, 7, 2, 7, tzinfo=UTC), datetime(2030, 7, 2, 14, tzinfo=UTC), "Halle"),
)


def sample_context(n: int) -> MailContext:
    return MailContext(
        recipient=Recipient("Jürgen", f"Müller-Lüdenscheidt {n}", f"p{n}@example.de", "male"),
        offering=OfferingInfo(
            "off-1",
            "Hochvolt-Sicherheit für Elektrofahrzeuge",
            "certificate_course",
            "Grundlagen.",
            0,
            SESSIONS,
        ),
        node=NodeInfo("QTI-Knoten Erfurt", "Juri-Gagarin-Ring 1, 99084 Erfurt", "Bildungswerk Thüringen"),
        registration_id=f"reg-{n}",
        personal_link=f"http://127.0.0.1:8000/meine-anmeldung/{'x' * 43}",
        privacy_notice=n == 0,
    )


def one_round(build: Callable[[int], object], mails: int) -> float:
    """Mean microseconds per call over `mails` calls."""
    start = time.perf_counter()
    for n in range(mails):
        build(n)
    return (time.perf_counter() - start) / mails * 1e6


def measure(variants: dict[str, Callable[[int], object]], mails: int, rounds: int) -> dict[str, float]:
    """Median round per variant; the variants' rounds alternate."""
    times: dict[str, list[float]] = {name: [] for name in variants}
    for build in variants.values():
        build(0)  # warm caches (templates, header machinery)
    for _ in range(rounds):
        for name, build in variants.items():
            times[name].append(one_round(build, mails))
    return {name: statistics.median(values) for name, values in times.items()}


def variants(mails: int) -> dict[str, Callable[[int], object]]:
    contexts = [sample_context(n) for n in range(mails)]
    rendered: list[RenderedMail] = [render_mail("confirmation", c) for c in contexts]
    recipients = [
        MailAddress(c.recipient.email, f"{c.recipient.given_name} {c.recipient.family_name}")
        for c in contexts
    ]
    ics = build_ics(
        offering_id="off-1",
        title="Hochvolt-Sicherheit für Elektrofahrzeuge",
        sessions=SESSIONS,
        sequence=1,
        organizer_email=SENDER.email,
        organizer_name="QTI-Knoten Erfurt",
    )

    def email_message(n: int) -> bytes:
        message = build_message(
            rendered=rendered[n],
            sender=SENDER,
            recipient=recipients[n],
            message_id=f"<ntf-{n}@bench>",
            ics=ics,
        )
        return flatten_message(message)

    def hand_written(n: int) -> bytes:
        mail = build_outgoing(
            rendered=rendered[n],
            sender=SENDER,
            recipient=recipients[n],
            message_id=f"<ntf-{n}@bench>",
            ics=ics,
        )
        assert isinstance(mail, OutgoingMail), "ASCII addresses take the hand-written path"
        return mail.data

    return {
        "render (Jinja2, both paths)": lambda n: render_mail("confirmation", contexts[n]),
        "EmailMessage + flatten_message": email_message,
        "hand-written build_outgoing": hand_written,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--mails", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args(argv)
    figures = measure(variants(args.mails), args.mails, args.rounds)
    print(
        f"{args.mails} confirmation mails with .ics per round, {args.rounds} rounds,"
        f" Python {sys.version.split()[0]}"
    )
    for name, micros in figures.items():
        print(f"  {name:<32} {micros:8.1f} µs/mail  ({1e6 / micros:7.0f} mails/s on one core)")
    ratio = figures["EmailMessage + flatten_message"] / figures["hand-written build_outgoing"]
    print(f"  EmailMessage / hand-written: {ratio:.1f}x")


if __name__ == "__main__":
    main()
