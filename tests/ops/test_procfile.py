"""The local supervisor of `qti run`: output relayed with a prefix, SIGTERM first, SIGKILL after grace."""

from __future__ import annotations

import asyncio
import io
import sys
import time

from qti_host.procfile import ProcessSpec, Supervisor, procfile_text

POLITE = (
    "import signal, sys, time; signal.signal(signal.SIGTERM, lambda *a: sys.exit(0));"
    " print('up', flush=True); time.sleep(60)"
)
STUBBORN = (
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN);"
    " print('up', flush=True); time.sleep(60)"
)


async def test_stop_terminates_then_kills_after_grace() -> None:
    out = io.StringIO()
    supervisor = Supervisor(grace_seconds=1.0, output=out, colour=False)
    await supervisor.start(ProcessSpec("polite", [sys.executable, "-c", POLITE]))
    await supervisor.start(ProcessSpec("stubborn", [sys.executable, "-c", STUBBORN]))
    await asyncio.sleep(0.5)
    started = time.monotonic()
    codes = await supervisor.stop()
    assert time.monotonic() - started < 5
    assert codes == {"polite": 0, "stubborn": -9}
    text = out.getvalue()
    assert "polite     | up" in text and "stubborn   | up" in text
    assert "stubborn did not stop in time: SIGKILL" in text


async def test_wait_reports_the_first_process_that_exits() -> None:
    supervisor = Supervisor(grace_seconds=1.0, output=io.StringIO(), colour=False)
    await supervisor.start(ProcessSpec("short", [sys.executable, "-c", "raise SystemExit(3)"]))
    await supervisor.start(ProcessSpec("long", [sys.executable, "-c", POLITE]))
    assert await supervisor.wait() == "short"
    assert supervisor.returncode("short") == 3
    await supervisor.stop()


def test_procfile_text() -> None:
    specs = [ProcessSpec("web", ["python", "-m", "x y"]), ProcessSpec("once", ["true"], oneshot=True)]
    assert procfile_text(specs) == "web: python -m 'x y'\n"
