"""A small Procfile-style supervisor for `qti run` (what honcho does, plus a configurable grace period).

Every process gets its own process group, its output is printed line by line with a coloured name
prefix, and `stop()` sends SIGTERM to every group, waits up to the grace period, then SIGKILLs what is
left. When one long-running process exits on its own, `wait()` returns its name so that the caller can
shut the others down (the usual Procfile behaviour: one dies, all stop).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TextIO

_COLOURS = (36, 33, 32, 35, 34, 31, 96, 93, 92, 95, 94)


@dataclass(frozen=True)
class ProcessSpec:
    """One line of a Procfile: a name and a command (argv, no shell)."""

    name: str
    argv: Sequence[str]
    env: Mapping[str, str] = field(default_factory=dict)
    # One-shot processes (e.g. loading demo data) may exit without stopping the others.
    oneshot: bool = False


def procfile_text(specs: Sequence[ProcessSpec]) -> str:
    """The processes as a Procfile (for honcho/foreman users); environment is not included."""
    import shlex

    return "".join(f"{spec.name}: {shlex.join(spec.argv)}\n" for spec in specs if not spec.oneshot)


@dataclass
class _Running:
    spec: ProcessSpec
    process: asyncio.subprocess.Process
    pump: asyncio.Task[None]


class Supervisor:
    """Starts processes, relays their output, and stops them all cleanly."""

    def __init__(
        self,
        *,
        base_env: Mapping[str, str] | None = None,
        grace_seconds: float = 20.0,
        output: TextIO | None = None,
        colour: bool | None = None,
        name_width: int = 10,
    ) -> None:
        self._base_env = dict(os.environ if base_env is None else base_env)
        self._grace = grace_seconds
        self._out = output or sys.stdout
        self._colour = self._out.isatty() if colour is None else colour
        self._running: dict[str, _Running] = {}
        self._width = name_width
        self._count = 0

    @property
    def names(self) -> list[str]:
        return list(self._running)

    def _prefix(self, name: str, index: int) -> str:
        label = f"{name:<{self._width}} |"
        if not self._colour:
            return label
        return f"\x1b[{_COLOURS[index % len(_COLOURS)]}m{label}\x1b[0m"

    def say(self, text: str, name: str = "qti") -> None:
        for line in text.splitlines() or [""]:
            print(f"{self._prefix(name, 0)} {line}", file=self._out, flush=True)

    async def start(self, spec: ProcessSpec) -> None:
        if spec.name in self._running:
            raise ValueError(f"process {spec.name!r} already started")
        self._width = max(self._width, len(spec.name))
        env = {**self._base_env, **spec.env, "PYTHONUNBUFFERED": "1"}
        process = await asyncio.create_subprocess_exec(
            *spec.argv,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,  # own process group: the terminal's Ctrl-C reaches only us
        )
        self._count += 1
        prefix = self._prefix(spec.name, self._count)
        pump = asyncio.create_task(self._pump(process, prefix), name=f"output-{spec.name}")
        self._running[spec.name] = _Running(spec, process, pump)
        self.say(f"started {spec.name} (pid {process.pid})")

    async def _pump(self, process: asyncio.subprocess.Process, prefix: str) -> None:
        assert process.stdout is not None
        while True:
            line = await process.stdout.readline()
            if not line:
                return
            text = line.decode(errors="replace").rstrip("\n")
            print(f"{prefix} {text}", file=self._out, flush=True)

    def returncode(self, name: str) -> int | None:
        return self._running[name].process.returncode

    async def wait_oneshot(self, name: str) -> int:
        running = self._running[name]
        code = await running.process.wait()
        await running.pump
        return code

    async def wait(self) -> str:
        """Return the name of the first long-running process that exits."""
        waiters = {
            asyncio.create_task(r.process.wait(), name=name): name
            for name, r in self._running.items()
            if not r.spec.oneshot and r.process.returncode is None
        }
        exited = [name for name, r in self._running.items() if not r.spec.oneshot and r.process.returncode]
        if exited:
            for task in waiters:
                task.cancel()
            return exited[0]
        if not waiters:
            return ""
        try:
            done, _ = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in waiters:
                task.cancel()
        return waiters[next(iter(done))]

    async def stop(self) -> dict[str, int | None]:
        """SIGTERM every process group, wait up to the grace period, SIGKILL the rest."""
        alive = [r for r in self._running.values() if r.process.returncode is None]
        for running in alive:
            _signal_group(running.process, signal.SIGTERM)
        if alive:
            self.say(f"stopping {len(alive)} process(es), grace {self._grace:g}s")
            _, pending = await asyncio.wait(
                [asyncio.create_task(r.process.wait()) for r in alive], timeout=self._grace
            )
            if pending:
                for running in alive:
                    if running.process.returncode is None:
                        self.say(f"{running.spec.name} did not stop in time: SIGKILL")
                        _signal_group(running.process, signal.SIGKILL)
                await asyncio.gather(*(r.process.wait() for r in alive))
        for running in self._running.values():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(running.pump, timeout=2)
        return {name: r.process.returncode for name, r in self._running.items()}


def _signal_group(process: asyncio.subprocess.Process, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, sig)
