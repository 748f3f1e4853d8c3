"""The examples run to completion, as a user runs them (``python examples/...``), and do
what their docstrings say."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def run(script: str) -> str:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / script)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_the_travel_workflow_falls_back_waits_for_its_approval_and_rolls_back_a_refusal() -> None:
    out = run("travel_workflow.py").splitlines()

    assert out[:7] == [
        "example-trip-0: booked for ana at LIS-harbour, paid 690.00",
        "example-trip-1: booked for ben at LIS-harbour, paid 505.00",
        "  manager: approves example-trip-2 (1095.00)",
        "example-trip-2: booked for cai at LIS-old-town, paid 1095.00",
        "  manager: refuses example-trip-3 (1715.00)",
        "example-trip-3: rolled back: not approved",
        "example-trip-4: rolled back: no hotel left",
    ]


def test_the_travel_saga_books_what_it_can_and_rolls_back_the_rest() -> None:
    out = run("travel_booking.py")

    assert "example-trip-0: booked for ana" in out
    assert "rolled back: car failed: sold out" in out
