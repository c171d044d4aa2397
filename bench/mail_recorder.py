"""A light SMTP server for the end-to-end benchmark, in its own process.

Accepts every mail and prints one line per recipient: the moment the message was accepted
(`time.monotonic()`, which on Linux is one clock for all processes, so the load generator can subtract
its publish times) and the address. Unlike the mail sink of `make run` (devtools/mail_sink.py)
it stores nothing: no file and no fsync per mail, which would measure the sink's disk instead of our
sender (the sink took ~40 % of a core in bench.notification_throughput).

    python -m bench.mail_recorder --port 2525     # prints "ready", then "<monotonic> <address>" lines
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import time
from typing import Any

from aiosmtpd.smtp import SMTP


class Recorder:
    """aiosmtpd handler: the time of acceptance per recipient to stdout, nothing kept."""

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        accepted = time.monotonic()
        sys.stdout.write("".join(f"{accepted:.6f} {rcpt}\n" for rcpt in envelope.rcpt_tos))
        sys.stdout.flush()
        return "250 Message accepted for delivery"


async def serve(host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    handler = Recorder()
    # A fixed hostname: aiosmtpd would otherwise resolve the machine's FQDN (slow on some hosts).
    server = await loop.create_server(
        lambda: SMTP(handler, hostname="bench-recorder", enable_SMTPUTF8=True), host, port
    )
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    print("ready", flush=True)
    async with server:
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    asyncio.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
