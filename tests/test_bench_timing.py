"""The bench's step timer (bench/measure.py timed): a step count and a time floor."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


def test_timed_adds_steps_until_the_time_floor():
    """measure.timed: exactly --steps calls without a floor; with --min-time, more calls until
    their times add up to it (never past MAX_STEPS)."""
    sys.path.insert(0, str(BENCH))
    import time

    from measure import MAX_STEPS, timed

    calls = []

    def fn():
        calls.append(1)
        time.sleep(0.002)

    assert len(timed(fn, 3, 1)) == 3 and len(calls) == 4
    times = timed(fn, 2, 0, min_time=0.03)
    assert sum(times) >= 0.03 and 2 < len(times) <= MAX_STEPS
    assert len(timed(lambda: None, 1, 0, min_time=1e9)) == MAX_STEPS


def test_alternating_blocks_pairs_neighbouring_blocks_on_a_fake_clock(monkeypatch):
    """paired.alternating_blocks: blocks alternate (A B, B A, ...), each starts with one untimed
    call, and the ratio is the median of the per-pair ratios. A fake clock makes it exact: A's
    calls take 2 units, B's 1 unit, except that B gets slow (5 units) in its third block: the
    median ratio stays 2 while a ratio of total times would not."""
    sys.path.insert(0, str(BENCH))
    import paired

    now, log = [0.0], []
    b_blocks = [0]

    def clock():
        return now[0]

    def make(name, cost):
        def fn():
            log.append(name)
            slow = name == "B" and b_blocks[0] == 3
            now[0] += 5.0 if slow else cost
        return fn

    monkeypatch.setattr(paired.time, "perf_counter", clock)
    real_block = paired._block

    def counting_block(fn, calls):
        if fn is b:
            b_blocks[0] += 1
        return real_block(fn, calls)

    monkeypatch.setattr(paired, "_block", counting_block)
    monkeypatch.setattr(paired, "BLOCK_S", 6.0)  # 6 units / median call (1.5) = 4 calls per block
    a, b = make("A", 2.0), make("B", 1.0)
    found = paired.alternating_blocks(a, b, warmup=3, pairs=5)
    assert found["calls_per_block"] == 4 and found["pairs"] == 5
    assert found["ratio"] == 2.0 and found["ratio_range"] == [0.4, 2.0]
    assert found["first_median_s"] == 2.0 and found["second_median_s"] == 1.0
    blocks = "".join(log[6:])  # after the warm-up: 5 calls per block (one untimed)
    assert blocks == "A" * 5 + "B" * 5 + "B" * 5 + "A" * 5 + "A" * 5 + "B" * 5 + "B" * 5 + "A" * 5 + "A" * 5 + "B" * 5


@pytest.mark.parametrize("model", ["classification", "segmentation", "detection"])
def test_step_case_ort_pair_times_both_onnxruntime_calls_in_one_record(model):
    """step_case.py --impl ort_pair: dlbatch's onnxruntime backend and the raw session on the
    same model, timed in alternating blocks: both times and their paired ratio in one record."""
    pytest.importorskip("onnxruntime")
    args = [sys.executable, str(BENCH / "step_case.py"), "--model", model, "--impl", "ort_pair", "--backbone",
            "compact", "--batch", "2", "--side", "32", "--steps", "2", "--warmup", "1", "--threads", "1"]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rec = json.loads(proc.stdout.strip().splitlines()[-1])
    assert rec["impl"] == "ort_pair" and rec["steps"] == 2 and rec["calls_per_block"] >= 3
    for name in ("dlbatch_ort_infer", "ort_infer"):
        assert 0 < rec[name]["min_s"] <= rec[name]["median_s"]
    low, high = rec["paired_ratio_range"]
    assert 0 < low <= rec["paired_ratio"] <= high and rec["peak_step_mem_mb"] >= 0
