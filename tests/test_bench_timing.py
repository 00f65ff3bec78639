"""The bench's step timer (bench/step_case.py timed): a step count and a time floor."""
from __future__ import annotations

import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench"


def test_timed_adds_steps_until_the_time_floor():
    """step_case.timed: exactly --steps calls without a floor; with --min-time, more calls until
    their times add up to it (never past MAX_STEPS)."""
    sys.path.insert(0, str(BENCH))
    import time

    from step_case import MAX_STEPS, timed

    calls = []

    def fn():
        calls.append(1)
        time.sleep(0.002)

    assert len(timed(fn, 3, 1)) == 3 and len(calls) == 4
    times = timed(fn, 2, 0, min_time=0.03)
    assert sum(times) >= 0.03 and 2 < len(times) <= MAX_STEPS
    assert len(timed(lambda: None, 1, 0, min_time=1e9)) == MAX_STEPS
