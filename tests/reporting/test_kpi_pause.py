"""The KPI job's pause: a multiple of the CPU the figures took, never longer than the cap."""

from __future__ import annotations

import pytest

from services.reporting.handlers import KPI_MAX_PAUSE_SECONDS, KPI_PAUSE_FACTOR, kpi_pause


def test_without_an_event_the_job_looks_again_after_the_poll() -> None:
    assert kpi_pause(0.5, None) == 0.5


@pytest.mark.parametrize(
    ("computing", "expected"),
    [
        (0.001, 0.5),  # cheap figures: the poll interval, not a shorter spin
        (0.1, 0.1 * KPI_PAUSE_FACTOR),  # the job stays about 1/KPI_PAUSE_FACTOR of a core
        (5.0, KPI_MAX_PAUSE_SECONDS),  # a slow machine or a first run: figures stale for at most the cap
    ],
)
def test_after_an_event_the_pause_follows_the_cpu_it_took(computing: float, expected: float) -> None:
    assert kpi_pause(0.5, computing) == pytest.approx(expected)
    assert kpi_pause(0.5, computing) <= KPI_MAX_PAUSE_SECONDS
