"""The benchmark's CPU ms per registration: CPU seconds per process group from /proc, per decided request."""

from __future__ import annotations

import os

from bench.cpu import CpuMeter, process_seconds
from bench.e2e import cpu_ms_per_registration


def burn_until_counted(pid: int) -> None:
    """Spin until the kernel has counted at least one more tick of CPU for this process."""
    before = process_seconds(pid)
    while process_seconds(pid) <= before:
        sum(range(10_000))


def test_used_seconds_count_the_groups_work_since_start() -> None:
    pid = os.getpid()
    meter = CpuMeter({"me": lambda: [pid], "nobody": lambda: []})
    meter.start(0.0)
    burn_until_counted(pid)
    used = meter.used_seconds()
    assert used["me"] > 0
    assert used["nobody"] == 0


def test_ms_per_registration_divide_by_the_decided_requests() -> None:
    meter = CpuMeter({"a": lambda: [os.getpid()]})
    meter.start(0.0)
    burn_until_counted(os.getpid())
    seconds = meter.used_seconds()["a"]
    per = cpu_ms_per_registration(meter, {"requests": 12, "undecided": 2})
    assert per["a"] >= round(1000 * seconds / 10, 2)  # the meter only grows between the two reads
    assert per["total"] == per["a"]
