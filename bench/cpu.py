"""CPU use per component (services, RabbitMQ, Postgres, load generator) over a window, from /proc.

On a 2-core machine that runs everything, the question after a load run is "who used the cores": this
answers it without extra dependencies (Linux /proc; elsewhere every figure is simply absent).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

PROC = Path("/proc")
TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def process_seconds(pid: int) -> float:
    """User + system CPU seconds of one process (all its threads); 0 if it is gone."""
    try:
        stat = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return 0.0
    # The command name may contain spaces and parentheses: the fields start after the last ')'.
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def pids_named(command: str) -> list[int]:
    """Processes whose command name (`/proc/<pid>/comm`) is `command`, e.g. `beam.smp`, `postgres`."""
    found = []
    for entry in PROC.glob("[0-9]*"):
        try:
            if (entry / "comm").read_text().strip() == command:
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def machine_busy_seconds() -> tuple[float, float]:
    """(busy, total) CPU seconds of all cores since boot, from the first line of /proc/stat."""
    try:
        values = [int(v) for v in (PROC / "stat").read_text().split("\n", 1)[0].split()[1:]]
    except OSError:
        return 0.0, 0.0
    idle = values[3] + values[4]  # idle + iowait
    total = sum(values[:8])  # guest time is already inside user/nice
    return (total - idle) / TICKS, total / TICKS


def _sum(pids: Iterable[int]) -> dict[int, float]:
    return {pid: process_seconds(pid) for pid in pids}


@dataclass
class CpuMeter:
    """Snapshot at `start()`, difference at `stop()`; groups are re-resolved at both ends."""

    groups: dict[str, Callable[[], list[int]]]
    _start: dict[str, dict[int, float]] = field(default_factory=dict)
    _machine: tuple[float, float] = (0.0, 0.0)
    _wall: float = 0.0

    def start(self, now: float) -> None:
        self._start = {name: _sum(pids()) for name, pids in self.groups.items()}
        self._machine, self._wall = machine_busy_seconds(), now

    def used_seconds(self) -> dict[str, float]:
        """Per group: CPU seconds since `start()` (unlike `stop`, robust to other programs on the cores:
        what a piece of work costs, not how fast it ran)."""
        used: dict[str, float] = {}
        for name, pids in self.groups.items():
            before = self._start.get(name, {})
            used[name] = sum(seconds - before.get(pid, 0.0) for pid, seconds in _sum(pids()).items())
        return used

    def stop(self, now: float) -> dict[str, float]:
        """Per group: % of one core over the window; `machine` = % of all cores busy; `others` = the
        rest of the machine (other users of it), in % of one core."""
        wall = max(now - self._wall, 1e-9)
        shares: dict[str, float] = {}
        for name, pids in self.groups.items():
            before = self._start.get(name, {})
            # A process that started during the window counts from zero; one that ended is lost.
            used = sum(seconds - before.get(pid, 0.0) for pid, seconds in _sum(pids()).items())
            shares[name] = round(100 * used / wall, 1)
        ours = sum(shares.values())
        busy, total = machine_busy_seconds()
        busy_delta, total_delta = busy - self._machine[0], total - self._machine[1]
        if total_delta > 0:
            cores = os.cpu_count() or 1
            shares["machine"] = round(100 * busy_delta / total_delta, 1)
            shares["others"] = round(max(0.0, 100 * cores * busy_delta / total_delta - ours), 1)
        return shares
