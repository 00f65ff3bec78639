"""The benchmark scripts still run (tiny sizes): `make bench` is only run by hand, so without
this a broken case would surface in the next performance session, not in CI."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


def run_json(*args) -> dict:
    proc = subprocess.run([sys.executable, *map(str, args)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_calibrate_reports_gemm_and_copy_speed():
    rec = run_json(BENCH / "calibrate.py")
    assert rec["sgemm_1t_gflops"] > 0 and rec["copy_1t_gbps"] > 0


@pytest.mark.parametrize("impl", ["numpy_train", "numpy_infer", "ort_infer", "torch_train", "handwritten_train"])
def test_step_case_prints_one_timed_record(impl):
    if impl in ("torch_train", "handwritten_train"):
        pytest.importorskip("torch")
    if impl == "ort_infer":
        pytest.importorskip("onnxruntime")
    rec = run_json(BENCH / "step_case.py", "--impl", impl, "--backbone", "compact", "--batch", 2, "--side", 16,
                   "--steps", 2, "--warmup", 1, "--threads", 1)
    assert rec["impl"] == impl and rec["steps"] == 2
    assert 0 < rec["min_s"] <= rec["median_s"]
    assert rec["peak_step_mem_mb"] >= 0
