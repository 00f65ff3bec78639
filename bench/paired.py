"""Two implementations timed in one process, in alternating blocks of calls.

Why: onnxruntime calls of 1-100 ms measured in separate processes, one after the other, differ
by up to 1.6x from one process to the next on the shared 2-core machine (the same raw session:
resnet18 16x3x128x128 took 70, 110 and 75 ms in three rounds of one suite run), so a ratio of
two such processes measures the machine's drift, not dlbatch's cost around onnxruntime. Here
both run in the same process, block by block (A B, then B A, ...), so a slow phase of the
machine falls on both; a ratio is taken per pair of neighbouring blocks and the median of those
is reported. The first call of each block is not timed: it absorbs the other session's worker
threads still spinning and the cache the other one left (measured: calls alternating one by one
slowed the second call of each pair up to 1.7x).
"""
from __future__ import annotations

import statistics
import time
from typing import Callable

from measure import timed

BLOCK_S = 0.05  # seconds of timed calls per block (short: the machine's speed changes within 0.1 s)
MIN_PAIRS = 10  # pairs of blocks, at least
MIN_CALLS = 3  # timed calls per block, at least


def _block(fn: Callable[[], object], calls: int) -> float:
    """Median seconds of `calls` timed calls after one untimed call."""
    return statistics.median(timed(fn, calls, 1))


def alternating_blocks(first: Callable[[], object], second: Callable[[], object], *, warmup: int = 3,
                       min_time: float = 0.0, pairs: int = MIN_PAIRS) -> dict:
    """Time `first` and `second` in alternating blocks; returns each one's median and best
    block time (seconds), the median and range of the per-pair ratios first / second, and how
    many pairs and calls per block ran. At least `pairs` pairs, and more until the timed calls
    add up to `min_time` seconds."""
    seen = []
    for _ in range(max(warmup, 3)):  # the block length from the median of these calls
        for fn in (first, second):
            t0 = time.perf_counter()
            fn()
            seen.append(time.perf_counter() - t0)
    calls = max(MIN_CALLS, round(BLOCK_S / max(statistics.median(seen), 1e-6)))
    a, b, ratios = [], [], []
    while len(ratios) < pairs or sum(a) * calls + sum(b) * calls < min_time:
        if len(ratios) % 2 == 0:
            ta = _block(first, calls)
            tb = _block(second, calls)
        else:
            tb = _block(second, calls)
            ta = _block(first, calls)
        a.append(ta)
        b.append(tb)
        ratios.append(ta / tb)
    return {"first_median_s": statistics.median(a), "first_min_s": min(a),
            "second_median_s": statistics.median(b), "second_min_s": min(b),
            "ratio": statistics.median(ratios), "ratio_range": [min(ratios), max(ratios)],
            "pairs": len(ratios), "calls_per_block": calls}
