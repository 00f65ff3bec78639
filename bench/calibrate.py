"""How fast this machine is right now: single-thread float32 GEMM (1024^3, numpy's BLAS) and a
large memory copy. `run_all.py` records it before and after the cases, so that a table measured
while other tenants load the shared caches and memory (ratios then move by 10-40%, and the
numpy backend, which streams its column matrices through L3, suffers more than onnxruntime's or
oneDNN's cache-blocked kernels) can be told from one measured on a quiet machine.

    .venv/bin/python bench/calibrate.py     # prints one JSON object
"""
from __future__ import annotations

import json
import time

import numpy as np


def _best(fn, repeats: int) -> float:
    fn()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def calibrate() -> dict:
    try:
        from threadpoolctl import threadpool_limits
        limit = threadpool_limits(1)
    except ImportError:  # BLAS keeps its own threads: the GEMM figure is then for all of them
        limit = None
    a = np.random.default_rng(0).standard_normal((1024, 1024)).astype(np.float32)
    out = np.empty_like(a)
    gemm_s = _best(lambda: np.matmul(a, a, out=out), 10)
    src = np.ones(32 << 20, np.float32)  # 128 MiB: far beyond any cache
    dst = np.empty_like(src)
    copy_s = _best(lambda: np.copyto(dst, src), 5)
    if limit is not None:
        limit.restore_original_limits()
    return {"sgemm_1t_gflops": round(2 * 1024 ** 3 / gemm_s / 1e9, 1),
            "copy_1t_gbps": round(2 * src.nbytes / copy_s / 1e9, 1)}


if __name__ == "__main__":
    print(json.dumps(calibrate()))
