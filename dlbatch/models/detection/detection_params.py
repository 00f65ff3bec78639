"""Anchor parameters suggested from the boxes of a data set (HALCON's
determine_dl_model_detection_param), pure numpy.

detection_params_from_samples(samples, image_width, image_height) reads the samples'
rectangle1 boxes and suggests min_level, max_level, anchor_num_subscales and
anchor_aspect_ratios such that at least `coverage_goal` (95 %) of the boxes get an anchor with
IoU >= `iou_threshold` (0.5) that the matcher assigns to them, i.e. train as positives. The
samples must already be at image_width x image_height (as after preprocess_dl_samples): boxes
are taken as they are, a sample whose 'image' has another size is an error.

How (box size s = sqrt(h * w), t = log2(s / 4): level l's anchors have sizes 4 * 2^l * 2^(i/n),
so t is on the grid l + i/n where a box's size equals an anchor's):

1. levels: with n subscales each box's nearest grid point round(t * n) / n lies on level
   floor(round(t * n) / n); min_level .. max_level spans these levels over all boxes, kept
   within [lowest_level, highest_level] and 2^max_level <= min(image_height, image_width);
2. aspect ratios: k centres of log(h / w) by 1-D k-means started at the k quantiles
   (j + 0.5) / k, as ratios rounded to 3 significant digits (within 10 % of 1: exactly 1);
3. verify: build the anchors (anchors.generate_anchors) and match each image's boxes
   (matcher.match_iou, per image, so boxes compete for anchors as in training); a box is
   covered when an anchor matched to it has IoU >= iou_threshold;
4. while the coverage is short, raise n or k by one, starting from n = k = 1: the uncovered
   boxes' mean log IoU loss from the size gap (concentric, same shape: 2^(-2 |t - grid|)) and
   from the ratio gap (concentric, same area: 1 / (2 sqrt(q) - 1) for the ratio of ratios q)
   says which; the other is raised when one reaches its maximum; both at their maxima ends
   the search, and the best setting found (highest coverage, then fewest anchors) is returned
   with `coverage_goal_met` False.

The verification only computes the IoU with the anchors that can overlap a box of the image
(anchors.anchors_near); an anchor that overlaps no box of its image is background and claims
nothing, so the result is the same.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from ...core.errors import DLParamError, DLSampleError
from ...core.samples import as_sample_list
from .anchors import anchors_near, checked_int, generate_anchors, max_level_for
from .boxes import Rectangle1
from .matcher import NEGATIVE_THRESHOLD, match_iou
from .sample_boxes import BORDER_TOLERANCE
RATIO_SNAP = math.log(1.1)  # ratios within 10 % of 1 are suggested as exactly 1


def _fraction(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
        raise DLParamError(f"{name} must be a number in (0, 1], got {value!r}")
    return float(value)


def collect_boxes(samples, image_height: int, image_width: int) -> tuple[np.ndarray, np.ndarray]:
    """(boxes (N, 4), sample index (N,)) of all samples, checked: keys present and of equal
    length, finite, not degenerate, inside the image, images (when present) of the given size."""
    samples = as_sample_list(samples)
    if not samples:
        raise DLSampleError("no samples: anchor parameters are suggested from the boxes of samples")
    boxes, owner = [], []
    for index, sample in enumerate(samples):
        image = sample.get("image")
        shape = np.shape(image) if image is not None else ()
        if len(shape) >= 2 and tuple(shape[:2]) != (image_height, image_width):
            raise DLSampleError(f"sample {index}: 'image' is {shape[0]} x {shape[1]} but image_height x image_width "
                                f"is {image_height} x {image_width}; pass samples at that size (preprocess them "
                                "first) so their boxes are in the same coordinates")
        b = Rectangle1.from_sample(sample, index)
        problem = Rectangle1.check(b, image_height, image_width, BORDER_TOLERANCE)
        if problem is not None:
            box, key, what = problem
            raise DLSampleError(f"sample {index}: box {box} {what} ({key!r}); fix or drop the box")
        boxes.append(b)
        owner.append(np.full(len(b), index, dtype=np.int64))
    return np.concatenate(boxes), np.concatenate(owner)


def _cluster_log_ratios(log_ratio: np.ndarray, k: int, iterations: int = 50) -> np.ndarray:
    """k centres of the 1-D values by k-means from the quantiles (j + 0.5) / k."""
    centres = np.quantile(log_ratio, (np.arange(k) + 0.5) / k)
    for _ in range(iterations):
        nearest = np.abs(log_ratio[:, None] - centres[None, :]).argmin(axis=1)
        sums = np.bincount(nearest, weights=log_ratio, minlength=k)
        counts = np.bincount(nearest, minlength=k)
        updated = np.where(counts > 0, sums / np.maximum(counts, 1), centres)
        if np.array_equal(updated, centres):
            break
        centres = updated
    return centres


def _ratios(log_ratio: np.ndarray, k: int) -> list[float]:
    centres = _cluster_log_ratios(log_ratio, k)
    ratios = {1.0 if abs(c) < RATIO_SNAP else float(f"{math.exp(c):.3g}") for c in centres}
    return sorted(ratios)


def _levels(t: np.ndarray, n: int, lowest: int, highest: int) -> tuple[int, int]:
    level = np.floor_divide(np.round(t * n).astype(np.int64), n)
    return int(np.clip(level.min(), lowest, highest)), int(np.clip(level.max(), lowest, highest))


def covered_boxes(boxes: np.ndarray, owner: np.ndarray, image_height: int, image_width: int, min_level: int,
                  max_level: int, num_subscales: int, aspect_ratios: Sequence[float],
                  iou_threshold: float = 0.5) -> np.ndarray:
    """(N,) bool: whether the matcher gives box i (of image owner[i], boxes of an image
    consecutive) an anchor with IoU >= iou_threshold."""
    anchors = generate_anchors(image_height, image_width, min_level, max_level, num_subscales, aspect_ratios)
    covered = np.zeros(len(boxes), dtype=bool)
    starts = np.flatnonzero(np.r_[True, owner[1:] != owner[:-1]]) if len(owner) else np.zeros(0, dtype=int)
    for start, stop in zip(starts, np.r_[starts[1:], len(owner)]):  # one image at a time
        image_boxes = boxes[start:stop]
        near = anchors_near(anchors, image_boxes)
        iou = Rectangle1.pairwise_iou(image_boxes, anchors.boxes[near])
        matched = match_iou(iou, positive_threshold=iou_threshold,
                            negative_threshold=min(NEGATIVE_THRESHOLD, iou_threshold))
        positive = np.flatnonzero(matched >= 0)
        winners = matched[positive]
        covered[start + winners[iou[winners, positive] >= iou_threshold]] = True
    return covered


def _log_losses(t: np.ndarray, log_ratio: np.ndarray, levels: tuple[int, int], n: int,
                ratios: list[float]) -> tuple[float, float]:
    """Mean log IoU lost to the size gap and to the ratio gap (see the module docstring)."""
    grid = np.arange(levels[0] * n, (levels[1] + 1) * n) / n
    size_gap = np.abs(t[:, None] - grid[None, :]).min(axis=1)
    ratio_gap = np.abs(log_ratio[:, None] - np.log(ratios)[None, :]).min(axis=1)
    size_loss = -2 * size_gap * math.log(2)
    ratio_loss = -np.log(2 * np.exp(ratio_gap / 2) - 1)
    return float(size_loss.mean()), float(ratio_loss.mean())


def _preference(found: dict) -> tuple[float, int]:
    """Higher coverage first, then fewer anchors per location."""
    return found["coverage"], -found["anchor_num_subscales"] * len(found["anchor_aspect_ratios"])


def detection_params_from_samples(samples, image_width: int, image_height: int, *, coverage_goal: float = 0.95,
                                  iou_threshold: float = 0.5, lowest_level: int = 0,
                                  highest_level: int | None = None, max_num_subscales: int = 5,
                                  max_num_aspect_ratios: int = 5) -> dict[str, Any]:
    """Suggest anchor parameters from the samples' rectangle1 boxes (see the module docstring).

    samples: dicts with bbox_row1, bbox_col1, bbox_row2, bbox_col2 at image_width x
    image_height. lowest_level / highest_level bound the levels (e.g. the backbone's shallowest
    level: 2 for resnet18). Returns min_level, max_level, anchor_num_subscales,
    anchor_aspect_ratios (ascending), coverage (the share of boxes covered), coverage_goal,
    coverage_goal_met, num_boxes, anchors_per_location, num_anchors and instance_type."""
    width = checked_int("image_width", image_width, 1)
    height = checked_int("image_height", image_height, 1)
    goal = _fraction("coverage_goal", coverage_goal)
    threshold = _fraction("iou_threshold", iou_threshold)
    lowest = checked_int("lowest_level", lowest_level, 0)
    deepest = max_level_for(height, width)
    highest = deepest if highest_level is None else min(checked_int("highest_level", highest_level, lowest), deepest)
    if lowest > highest:
        raise DLParamError(f"a {height} x {width} image allows levels up to {deepest} (2^level <= the shorter side), "
                           f"below lowest_level={lowest}; use larger images or a lower lowest_level")
    caps = (checked_int("max_num_subscales", max_num_subscales, 1),
            checked_int("max_num_aspect_ratios", max_num_aspect_ratios, 1))

    samples = as_sample_list(samples)
    boxes, owner = collect_boxes(samples, height, width)
    if not len(boxes):
        raise DLSampleError(f"the {len(samples)} samples hold no boxes: anchor parameters are suggested from the "
                            "boxes, so pass samples with objects (bbox_row1 ... bbox_col2)")
    centre = Rectangle1.to_centre(boxes)
    t = np.log2(np.sqrt(centre[:, 2] * centre[:, 3]) / 4)
    log_ratio = np.log(centre[:, 2] / centre[:, 3])

    n, k = 1, 1
    best = None
    while True:
        ratios = _ratios(log_ratio, k)
        levels = _levels(t, n, lowest, highest)
        covered = covered_boxes(boxes, owner, height, width, *levels, n, ratios, threshold)
        coverage = float(covered.mean())
        found = dict(min_level=levels[0], max_level=levels[1], anchor_num_subscales=n, anchor_aspect_ratios=ratios,
                     coverage=coverage)
        if best is None or _preference(found) > _preference(best):
            best = found
        if coverage >= goal or (n, k) == caps:
            break
        size_loss, ratio_loss = _log_losses(t[~covered], log_ratio[~covered], levels, n, ratios)
        raise_n = size_loss <= ratio_loss
        if (raise_n and n == caps[0]) or (not raise_n and k == caps[1]):
            raise_n = not raise_n
        n, k = (n + 1, k) if raise_n else (n, k + 1)

    per_location = best["anchor_num_subscales"] * len(best["anchor_aspect_ratios"])
    num_anchors = len(generate_anchors(height, width, best["min_level"], best["max_level"],
                                       best["anchor_num_subscales"], best["anchor_aspect_ratios"]))
    return {"instance_type": Rectangle1.name, **best, "coverage_goal": goal,
            "coverage_goal_met": best["coverage"] >= goal, "num_boxes": int(len(boxes)),
            "anchors_per_location": per_location, "num_anchors": num_anchors}
