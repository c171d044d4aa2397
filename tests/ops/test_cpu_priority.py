"""CPU priority: services whose work may wait yield the CPU to those whose answers people wait for."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from qti_runtime.settings import Settings
from services.catalogue.app import CatalogueSettings
from services.notification.settings import NotificationSettings
from services.registration.app import RegistrationSettings
from services.reporting.app import ReportingSettings

ROOT = Path(__file__).resolve().parents[2]


def test_figures_yield_to_answers_and_mails_by_default() -> None:
    assert RegistrationSettings().cpu_nice == 0
    assert CatalogueSettings().cpu_nice == 0  # it answers the public read API
    assert NotificationSettings().cpu_nice == 0  # mails keep pace with decisions (issue 19)
    assert ReportingSettings().cpu_nice == 10
    assert Settings(cpu_nice=0).cpu_nice == 0  # QTI_CPU_NICE=0 turns it off


def test_priority_is_only_ever_lowered() -> None:
    # In a child process, so that the test run keeps its own priority.
    script = (
        "import os\n"
        "from qti_runtime.service import lower_cpu_priority\n"
        "lower_cpu_priority(7); first = os.getpriority(os.PRIO_PROCESS, 0)\n"
        "lower_cpu_priority(3); second = os.getpriority(os.PRIO_PROCESS, 0)\n"
        "print(first, second)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.split() == ["7", "7"]
