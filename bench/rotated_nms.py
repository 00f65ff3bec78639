"""Rotated NMS micro-benchmark: dlbatch's greedy NMS (nms.py) with the exact rotated IoU
(rotated_iou.rotated_pairwise_iou) on random oriented candidate boxes, as a detector's
post-processing sees them before NMS.

    .venv/bin/python bench/rotated_nms.py                      # 1,000 and 10,000 boxes
    .venv/bin/python bench/rotated_nms.py --sizes 200 --repeats 2

Candidates (candidate_boxes): 80% of them sit in clusters around objects (on average 20 per
object; an object's candidates are jittered copies: centre +- 15% of each half length along
the box's own axes, lengths x exp(N(0, 0.1)), phi + N(0, 0.1 rad); the object's class with
probability 0.85, else another), 20% are scattered false candidates (uniform centres, random
size and angle). Objects are elongated (length1 8..32 px, length1 / length2 1.5..4, any
angle), of `--classes` classes, uniformly placed in a square image sized so that the objects
cover about 15% of it: the density per pixel stays the same from 1,000 to 10,000 candidates,
the image grows (about 450 px square for 1,000, 1,450 px for 10,000). Scores: uniform in
(0.05, 1) for cluster members, (0.05, 0.4) for false candidates.

Per size: time per call (median over --repeats calls after one warm-up) of
- nms: class-agnostic greedy NMS at --threshold (0.5), the IoU computed in blocks of 1,024 rows;
- batched_nms: per-class NMS in one pass (the suppression matrix masked by class; the IoU is
  still computed across classes);
- iou_s: the part of the nms call spent in the rotated IoU (the pairwise_iou calls, timed
  inside the call), the rest being the sort, thresholding and the fixed point iteration;
- clip_pairs_s: the exact intersection areas alone, of the pairs i < j that pass the
  bounding-box prefilter (the nms call clips up to twice as many, as a block of rows is
  clipped against all later columns, its own included: both (i, j) and (j, i) inside a
  block); the rest of iou_s is the O(n^2) prefilter and the IoU matrix's memory traffic;
- iou_full_s: the whole (n, n) IoU matrix in one rotated_pairwise_iou call, for comparison
  (skipped above --full-iou-max boxes: 10,000 boxes would be 800 MB of float64).
Also recorded: the candidate pairs that survive the bounding-box prefilter (the pairs whose
exact intersection is computed), the boxes kept, the size of the n x n boolean suppression
matrix (n^2 bytes: 100 MB at 10,000 boxes, nms.MAX_NMS_BOXES), and the peak RSS growth during
one nms call (Linux VmHWM after a reset, as step_case.py measures it).

Prints one JSON line per size, then one JSON object {"rotated_nms": [records]} as the last line.
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from measure import peak_mb, reset_peak, rss_mb  # noqa: E402

from dlbatch.models.detection.nms import batched_nms, nms  # noqa: E402
from dlbatch.models.detection.rotated_iou import (  # noqa: E402
    DEFAULT_BLOCK, bounding_boxes, intersection_area, rotated_pairwise_iou)

PER_OBJECT = 20        # candidates per object on average
FALSE_SHARE = 0.2      # scattered false candidates
COVERAGE = 0.15        # share of the image the objects cover


def candidate_boxes(n: int, classes: int = 3, seed: int = 0):
    """(boxes (n, 5) rectangle2, scores (n,), classes (n,) int64): see the module docstring."""
    rng = np.random.default_rng(seed)
    n_false = int(round(n * FALSE_SHARE))
    n_true = n - n_false
    objects = max(1, round(n_true / PER_OBJECT))
    l1 = rng.uniform(8.0, 32.0, objects)
    l2 = l1 / rng.uniform(1.5, 4.0, objects)
    phi = rng.uniform(-math.pi / 2, math.pi / 2, objects)
    obj_class = rng.integers(classes, size=objects)
    side = math.sqrt((4.0 * l1 * l2).sum() / COVERAGE)
    centre = rng.uniform(0.0, side, (objects, 2))

    owner = rng.integers(objects, size=n_true)
    sin, cos = np.sin(phi[owner]), np.cos(phi[owner])
    a = rng.normal(0.0, 0.15, n_true) * l1[owner]  # along d1 = (-sin, cos)
    b = rng.normal(0.0, 0.15, n_true) * l2[owner]  # along d2 = (cos, sin)
    true = np.stack([centre[owner, 0] - a * sin + b * cos, centre[owner, 1] + a * cos + b * sin,
                     phi[owner] + rng.normal(0.0, 0.1, n_true),
                     l1[owner] * np.exp(rng.normal(0.0, 0.1, n_true)),
                     l2[owner] * np.exp(rng.normal(0.0, 0.1, n_true))], axis=1)
    confused = rng.random(n_true) >= 0.85
    true_class = np.where(confused, (obj_class[owner] + rng.integers(1, max(2, classes), n_true)) % classes,
                          obj_class[owner])

    f1 = rng.uniform(4.0, 40.0, n_false)
    false = np.stack([rng.uniform(0.0, side, n_false), rng.uniform(0.0, side, n_false),
                      rng.uniform(-math.pi / 2, math.pi / 2, n_false), f1, f1 / rng.uniform(1.0, 4.0, n_false)], axis=1)
    boxes = np.concatenate([true, false])
    scores = np.concatenate([rng.uniform(0.05, 1.0, n_true), rng.uniform(0.05, 0.4, n_false)])
    labels = np.concatenate([true_class, rng.integers(classes, size=n_false)]).astype(np.int64)
    shuffle = rng.permutation(n)
    return boxes[shuffle], scores[shuffle], labels[shuffle]


def prefilter_pairs(boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(i, j) with i < j of the pairs whose axis-parallel bounding boxes overlap: the pairs
    rotated_pairwise_iou clips exactly (every other pair has IoU 0 without further work)."""
    bb = bounding_boxes(boxes)
    found_i, found_j = [], []
    for start in range(0, len(bb), 1024):
        blk = bb[start:start + 1024]
        overlap = ((np.minimum(blk[:, None, 2], bb[None, :, 2]) > np.maximum(blk[:, None, 0], bb[None, :, 0]))
                   & (np.minimum(blk[:, None, 3], bb[None, :, 3]) > np.maximum(blk[:, None, 1], bb[None, :, 1])))
        i, j = np.nonzero(overlap)
        i += start
        found_i.append(i[i < j])
        found_j.append(j[i < j])
    return np.concatenate(found_i), np.concatenate(found_j)


def clip_pairs(boxes: np.ndarray, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """The exact intersection areas of the pairs (i, j), DEFAULT_BLOCK pairs at a time, as
    rotated_pairwise_iou clips them after its prefilter."""
    return np.concatenate([intersection_area(boxes[i[s:s + DEFAULT_BLOCK]], boxes[j[s:s + DEFAULT_BLOCK]])
                           for s in range(0, len(i), DEFAULT_BLOCK)] or [np.zeros(0)])


class TimedIoU:
    """rotated_pairwise_iou that adds up the time spent in it."""

    def __init__(self):
        self.seconds = 0.0

    def __call__(self, a, b):
        t0 = time.perf_counter()
        out = rotated_pairwise_iou(a, b)
        self.seconds += time.perf_counter() - t0
        return out


def median_time(fn, repeats: int) -> tuple[float, float]:
    """(median, min) seconds per call over `repeats` calls after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), min(times)


def bench_size(n: int, classes: int, threshold: float, repeats: int, seed: int, full_iou_max: int) -> dict:
    boxes, scores, labels = candidate_boxes(n, classes, seed)
    pair_i, pair_j = prefilter_pairs(boxes)
    rec = {"n": n, "classes": classes, "threshold": threshold, "repeats": repeats,
           "prefilter_pairs": len(pair_i), "suppression_matrix_mb": n * n / 1e6}
    # peak memory of one nms call (first call: nothing cached from earlier calls)
    method = "VmHWM since setup" if reset_peak() else "ru_maxrss"
    before = rss_mb()
    kept = nms(boxes, scores, threshold, rotated_pairwise_iou)
    rec.update(peak_call_mem_mb=round(max(0.0, peak_mb() - before), 1), mem_method=method)
    rec["kept_nms"] = len(kept)
    rec["kept_batched_nms"] = len(batched_nms(boxes, scores, labels, threshold, rotated_pairwise_iou))

    timer = TimedIoU()
    iou_parts = []

    def call_nms():
        timer.seconds = 0.0
        nms(boxes, scores, threshold, timer)
        iou_parts.append(timer.seconds)

    rec["nms_s"], rec["nms_min_s"] = median_time(call_nms, repeats)
    rec["iou_s"] = statistics.median(iou_parts[1:])  # the warm-up call left out
    rec["batched_nms_s"], rec["batched_nms_min_s"] = median_time(
        lambda: batched_nms(boxes, scores, labels, threshold, rotated_pairwise_iou), repeats)
    rec["clip_pairs_s"], _ = median_time(lambda: clip_pairs(boxes, pair_i, pair_j), repeats)
    if n <= full_iou_max:
        rec["iou_full_s"], _ = median_time(lambda: rotated_pairwise_iou(boxes, boxes), repeats)
    return rec


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    ap.add_argument("--classes", type=int, default=3)
    ap.add_argument("--threshold", type=float, default=0.5)
    ap.add_argument("--repeats", type=int, default=5, help="timed calls per measurement (median), after a warm-up")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--full-iou-max", type=int, default=4000,
                    help="time the whole n x n IoU matrix up to this many boxes (float64: 8 n^2 bytes)")
    a = ap.parse_args()
    records = []
    for n in a.sizes:
        rec = bench_size(n, a.classes, a.threshold, a.repeats, a.seed, a.full_iou_max)
        records.append(rec)
        print(json.dumps(rec), flush=True)
    print(json.dumps({"rotated_nms": records}))


if __name__ == "__main__":
    main()
