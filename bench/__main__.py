"""`python -m bench` (what `make bench` runs): the end-to-end benchmark (bench.e2e), or one of the others.

python -m bench [--quick | --rate N --duration S | …]    end to end, see `python -m bench --help`
python -m bench limits [--seconds 5]                       the machine's broker and Postgres limits
python -m bench registration|catalogue|notification|reporting [their options]
"""

from __future__ import annotations

import asyncio
import runpy
import sys

# The per-service benchmarks keep their own command lines; they run as if started with `python -m`.
MODULES = {
    "registration": "bench.registration_load",
    "catalogue": "bench.catalogue_read",
    "notification": "bench.notification_throughput",
    "reporting": "bench.reporting_ingest",
}


def main(argv: list[str]) -> None:
    if argv and argv[0] in MODULES:
        sys.argv = [MODULES[argv[0]], *argv[1:]]
        runpy.run_module(MODULES[argv[0]], run_name="__main__", alter_sys=True)
    elif argv and argv[0] == "limits":
        from bench import limits

        asyncio.run(limits.main(argv[1:]))
    else:
        import uvloop

        from bench import e2e

        # The load generator runs on the services' event loop: what it costs is part of every figure,
        # so it should cost no more than a real frontend would.
        uvloop.run(e2e.main(argv))


if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    except KeyboardInterrupt:  # Ctrl-C, after the clean-up in the `finally` blocks
        sys.exit(130)
    except asyncio.CancelledError:  # SIGTERM (bench.e2e cancels itself), likewise after the clean-up
        sys.exit(143)
