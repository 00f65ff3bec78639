"""Timing and memory of one benchmark call (step_case.py, suite_case.py, rotated_nms.py).

Memory: after everything is set up the peak-RSS counter is reset (Linux /proc/self/clear_refs)
and the baseline is the RSS at that point; the peak step memory is the highest RSS during the
warm-up and timed calls minus that baseline (see step_case.py's docstring).
"""
from __future__ import annotations

import gc
import os
import resource
import statistics
import time


def rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_mb() -> float:
    """Peak RSS since the last reset_peak() (VmHWM), else since the process started."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reset_peak() -> bool:
    """Reset the kernel's peak-RSS counter to the current RSS (Linux >= 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


MAX_STEPS = 400  # --min-time never times more steps than this


def timed(fn, steps, warmup, min_time=0.0):
    """Seconds of each timed call of fn after `warmup` untimed ones: at least `steps` calls, and
    more until they add up to `min_time` seconds (at most MAX_STEPS). A time floor gives a
    6 ms step as many samples of the machine's noise as a 300 ms one gets from a few steps, so
    that the medians of short cases are as steady as those of long ones."""
    for _ in range(warmup):
        fn()
    times = []
    while len(times) < steps or (sum(times) < min_time and len(times) < MAX_STEPS):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def measure(fn, steps, warmup, min_time=0.0, paired_with=None, pairs=0) -> dict:
    """Median and best of the timed calls of fn after `warmup` (see timed), and the peak step
    memory. With `paired_with` (ort_pair): fn and it in alternating blocks (paired.py), each
    one's times under its own impl's name and their paired ratio, over `pairs` pairs of
    blocks (0: `steps`)."""
    gc.collect()
    method = "VmHWM since setup" if reset_peak() else "ru_maxrss"
    before = rss_mb()
    if paired_with is None:
        times = timed(fn, steps, warmup, min_time)
        timing = {"median_s": statistics.median(times), "min_s": min(times), "steps": len(times)}
    else:
        from paired import alternating_blocks
        found = alternating_blocks(fn, paired_with, warmup=warmup, min_time=min_time, pairs=max(1, pairs or steps))
        timing = {"steps": found["pairs"], "paired_ratio": found["ratio"], "paired_ratio_range": found["ratio_range"],
                  "calls_per_block": found["calls_per_block"],
                  "dlbatch_ort_infer": {"median_s": found["first_median_s"], "min_s": found["first_min_s"]},
                  "ort_infer": {"median_s": found["second_median_s"], "min_s": found["second_min_s"]}}
    return {**timing, "peak_step_mem_mb": max(0.0, peak_mb() - before), "resident_growth_mb": rss_mb() - before,
            "mem_method": method}
