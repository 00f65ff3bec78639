"""Anchor parameters suggested from the boxes of a data set (HALCON's
determine_dl_model_detection_param), pure numpy.

detection_params_from_samples(samples, image_width, image_height) reads the samples' boxes
(rectangle1, or rectangle2 oriented boxes) and suggests min_level, max_level,
anchor_num_subscales and anchor_aspect_ratios (and for rectangle2 anchor_angles) such that at
least `coverage_goal` (95 %) of the boxes get an anchor with IoU >= `iou_threshold` (0.5) that
the matcher assigns to them, i.e. train as positives. The samples must already be at
image_width x image_height (as after preprocess_dl_samples): boxes are taken as they are, a
sample whose 'image' has another size is an error.

The instance type is read from the keys the samples hold (bbox_row1 ... bbox_col2:
rectangle1; bbox_row, bbox_col, bbox_phi, bbox_length1, bbox_length2: rectangle2) unless
`instance_type` is given.

How (box size s = sqrt(h * w), for rectangle2 s = 2 sqrt(length1 * length2), t = log2(s / 4):
level l's anchors have sizes 4 * 2^l * 2^(i/n), so t is on the grid l + i/n where a box's size
equals an anchor's):

1. levels: with n subscales each box's nearest grid point round(t * n) / n lies on level
   floor(round(t * n) / n); min_level .. max_level spans these levels over all boxes, kept
   within [lowest_level, highest_level] and 2^max_level <= min(image_height, image_width);
2. aspect ratios: k centres of log(h / w) (rectangle2: log(length1 / length2), the boxes'
   length1 side as given) by 1-D k-means started at the k quantiles (j + 0.5) / k, as ratios
   rounded to 3 significant digits (within 10 % of 1: exactly 1);
3. angles (rectangle2): m centres of the boxes' phi by k-means on the circle of the period
   (pi with ignore_direction, else 2 pi; distance = the wrapped angle difference, a centre
   moves by its members' mean wrapped difference), started at the m quantiles (j + 0.5) / m of
   the angles unrolled from the largest gap between them; rounded to 1e-4 rad, in
   (-pi/2, pi/2] with ignore_direction, else (-pi, pi];
4. verify: build the anchors (anchors.generate_anchors / generate_oriented_anchors) and match
   each image's boxes (matcher.match_iou on the (rotated) IoU, per image, so boxes compete for
   anchors as in training); a box is covered when an anchor matched to it has IoU >=
   iou_threshold. With ignore_direction=False (rectangle2) that anchor must also point the
   box's way, |wrap(phi_box - phi_anchor)| < pi/2 on the full circle, so the box coder's angle
   delta stays below pi/2 (the IoU alone does not see the direction: phi and phi + pi overlap
   fully);
5. while the coverage is short, raise n, k or m by one, starting from n = k = m = 1 (rectangle1:
   m stays 1): the uncovered boxes' mean log IoU loss from the size gap (concentric, same shape:
   2^(-2 |t - grid|)), from the ratio gap (concentric, same area: 1 / (2 sqrt(q) - 1) for the
   ratio of ratios q) and from the angle gap (the box against itself turned by its wrapped
   distance g to the nearest anchor angle, exact rotated IoU; directed, g >= pi/2: IoU 0.01)
   says which: of the counts below their maximum, the one whose gap costs the most (lowest mean
   log IoU) is raised; all at their maxima ends the search, and the best setting found
   (highest coverage, then fewest anchors per location) is returned with `coverage_goal_met`
   False.

The verification only computes the IoU with the anchors that can overlap a box of the image
(rectangle1: anchors.anchors_near); an anchor that overlaps no box of its image is background
and claims nothing, so the result is the same. For rectangle2 the exact polygon clipping is the
costly part and the oriented anchors are many, so the pairs are enumerated on the anchor grid,
level by level and subscale by subscale (anchors_near, grown by a level's largest anchor, would
hand over most of the image): IoU >= t needs areas within a factor t of each other (IoU <=
smaller / larger area), and with t >= 1/2 each centre inside the other box: if B's centre lies
outside A, a line through it misses A, so A n B lies in one half of B, |A n B| < |B| / 2 and,
with |A| >= t |B|, IoU < (1/2) / (t + 1/2) <= t. With t < 1/2 the pairs are those whose
bounding boxes overlap. Every other pair has IoU < t and is left at 0, which changes no match
that covers a box: an anchor with a box at IoU >= t goes to its highest-IoU box (claims only
break ties at that IoU), and the best anchor of a box that reaches t is among the computed pairs.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from ...core.errors import DLParamError, DLSampleError
from ...core.samples import as_sample_list
from .anchors import anchors_per_location, checked_int, feature_size, max_level_for
from .boxes import RECTANGLE1_KEYS, Rectangle1, geometry_for
from .rectangle2 import RECTANGLE2_KEYS, normalize_phi, wrap_angle
from .rotated_iou import intersection_area
from .sample_boxes import BORDER_TOLERANCE
from .anchor_coverage import covered_boxes

RATIO_SNAP = math.log(1.1)  # ratios within 10 % of 1 are suggested as exactly 1
ANGLES_PER_HALF_TURN = 12  # default max_num_angles: 12 with ignore_direction, 24 without
ANGLE_DECIMALS = 4  # suggested anchor angles are rounded to 1e-4 rad
WRONG_WAY_IOU = 0.01  # directed boxes: the angle-gap loss of an anchor pointing the other way


def _fraction(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
        raise DLParamError(f"{name} must be a number in (0, 1], got {value!r}")
    return float(value)


def _flag(name: str, value) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise DLParamError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def detect_instance_type(samples) -> str:
    """'rectangle1' or 'rectangle2' from the box keys the samples hold; DLSampleError when they
    hold neither or both (then pass instance_type)."""
    samples = as_sample_list(samples)
    found = [name for name, keys in (("rectangle1", RECTANGLE1_KEYS), ("rectangle2", RECTANGLE2_KEYS))
             if any(key in sample for sample in samples for key in keys)]
    if len(found) == 1:
        return found[0]
    if found:
        raise DLSampleError("the samples hold both rectangle1 keys (bbox_row1 ...) and rectangle2 keys (bbox_row, "
                            "bbox_phi ...); pass instance_type='rectangle1' or 'rectangle2' to say which boxes count")
    raise DLSampleError(f"the samples hold no box keys: rectangle1 boxes need {list(RECTANGLE1_KEYS)}, rectangle2 "
                        f"boxes need {list(RECTANGLE2_KEYS)} (one value per box, empty for an image without objects)")


def collect_boxes(samples, image_height: int, image_width: int,
                  geometry=Rectangle1) -> tuple[np.ndarray, np.ndarray]:
    """(boxes (N, P), sample index (N,)) of all samples, checked: keys present and of equal
    length, finite, not degenerate, inside the image (rectangle2: the centre), images (when
    present) of the given size. `geometry`: Rectangle1 or a Rectangle2 instance; boxes as given."""
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
        b = geometry.from_sample(sample, index)
        problem = geometry.check(b, image_height, image_width, BORDER_TOLERANCE)
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


def cluster_angles(phi: np.ndarray, m: int, ignore_direction: bool = True, iterations: int = 100) -> np.ndarray:
    """m centres (radians, not normalised) of the angles `phi` by k-means on the circle of the
    period (pi with ignore_direction, else 2 pi), started at the quantiles (j + 0.5) / m of the
    angles unrolled from the largest gap between them (see the module docstring)."""
    period = math.pi if ignore_direction else 2 * math.pi
    theta = np.sort(np.mod(np.asarray(phi, dtype=np.float64), period))
    gaps = np.diff(np.r_[theta, theta[0] + period])
    cut = (int(gaps.argmax()) + 1) % len(theta)
    unrolled = np.r_[theta[cut:], theta[:cut] + period]
    centres = np.quantile(unrolled, (np.arange(m) + 0.5) / m)
    for _ in range(iterations):
        offset = wrap_angle(theta[:, None] - centres[None, :], ignore_direction)  # (N, m)
        nearest = np.abs(offset).argmin(axis=1)
        counts = np.bincount(nearest, minlength=m)
        shift = np.bincount(nearest, weights=offset[np.arange(len(theta)), nearest], minlength=m)
        shift = np.where(counts > 0, shift / np.maximum(counts, 1), 0.0)
        centres = centres + shift
        if np.abs(shift).max() < 1e-12:
            break
    return centres


def _angles(phi: np.ndarray, m: int, ignore_direction: bool) -> list[float]:
    """The m k-means centres in the geometry's range, rounded (a value rounded past either end,
    -pi/2 / pi/2 or -pi / pi, is the upper end, which is the same angle), distinct, ascending."""
    half = math.pi / 2 if ignore_direction else math.pi
    centres = np.round(normalize_phi(cluster_angles(phi, m, ignore_direction), ignore_direction), ANGLE_DECIMALS)
    return sorted({half if abs(a) >= half else float(a) for a in centres})


def _levels(t: np.ndarray, n: int, lowest: int, highest: int) -> tuple[int, int]:
    level = np.floor_divide(np.round(t * n).astype(np.int64), n)
    return int(np.clip(level.min(), lowest, highest)), int(np.clip(level.max(), lowest, highest))


def _angle_log_loss(boxes: np.ndarray, angles: list[float], ignore_direction: bool) -> float:
    """Mean log IoU of each rectangle2 box with itself turned by its wrapped distance to the
    nearest anchor angle (directed boxes whose nearest anchor is >= pi/2 away: WRONG_WAY_IOU)."""
    gap = np.abs(wrap_angle(boxes[:, 2:3] - np.asarray(angles)[None, :], ignore_direction)).min(axis=1)
    shape = np.zeros((len(boxes), 5))
    shape[:, 3:] = boxes[:, 3:]
    turned = shape.copy()
    turned[:, 2] = gap
    inter = intersection_area(turned, shape)
    area = 4.0 * shape[:, 3] * shape[:, 4]
    iou = inter / (2 * area - inter)
    if not ignore_direction:
        iou = np.where(gap < math.pi / 2, iou, WRONG_WAY_IOU)
    return float(np.log(np.maximum(iou, WRONG_WAY_IOU)).mean())


def _log_losses(t: np.ndarray, log_ratio: np.ndarray, levels: tuple[int, int], n: int,
                ratios: list[float]) -> tuple[float, float]:
    """Mean log IoU lost to the size gap and to the ratio gap (see the module docstring)."""
    grid = np.arange(levels[0] * n, (levels[1] + 1) * n) / n
    size_gap = np.abs(t[:, None] - grid[None, :]).min(axis=1)
    ratio_gap = np.abs(log_ratio[:, None] - np.log(ratios)[None, :]).min(axis=1)
    size_loss = -2 * size_gap * math.log(2)
    ratio_loss = -np.log(2 * np.exp(ratio_gap / 2) - 1)
    return float(size_loss.mean()), float(ratio_loss.mean())


def _per_location(found: dict) -> int:
    return anchors_per_location(found["anchor_num_subscales"], found["anchor_aspect_ratios"],
                                found.get("anchor_angles", 1))


def _preference(found: dict) -> tuple[float, int]:
    """Higher coverage first, then fewer anchors per location."""
    return found["coverage"], -_per_location(found)


def detection_params_from_samples(samples, image_width: int, image_height: int, *, instance_type: str | None = None,
                                  ignore_direction: bool = True, coverage_goal: float = 0.95,
                                  iou_threshold: float = 0.5, lowest_level: int = 0,
                                  highest_level: int | None = None, max_num_subscales: int = 5,
                                  max_num_aspect_ratios: int = 5, max_num_angles: int | None = None) -> dict[str, Any]:
    """Suggest anchor parameters from the samples' boxes (HALCON's
    determine_dl_model_detection_param; see the module docstring).

    Args:
        samples: dicts with the boxes at image_width x image_height: rectangle1 (bbox_row1,
            bbox_col1, bbox_row2, bbox_col2) or rectangle2 (bbox_row, bbox_col, bbox_phi,
            bbox_length1, bbox_length2), read from the keys present unless `instance_type` says.
        image_width: the model's image width.
        image_height: the model's image height.
        instance_type: "rectangle1" or "rectangle2"; None reads it from the keys.
        ignore_direction: rectangle2 only, as the model's parameter: phi and phi + pi are the
            same box; False asks for anchors that also point each box's way, angles in (-pi, pi].
        coverage_goal: share of boxes that should get an anchor with IoU >= iou_threshold.
        iou_threshold: the IoU a box's best anchor must reach to count as covered.
        lowest_level: lowest pyramid level allowed (e.g. 2 for resnet18).
        highest_level: highest pyramid level allowed (None: as the image size allows).
        max_num_subscales: most subscales searched.
        max_num_aspect_ratios: most aspect ratios searched.
        max_num_angles: most anchor angles searched (default 12 with ignore_direction, else 24:
            the same angle step).

    Returns:
        instance_type, min_level, max_level, anchor_num_subscales, anchor_aspect_ratios
        (ascending; rectangle2: length1 / length2), for rectangle2 anchor_angles (ascending,
        radians) and ignore_direction, then coverage (the share of boxes covered),
        coverage_goal, coverage_goal_met, num_boxes, anchors_per_location and num_anchors.

    Raises:
        DLParamError: bad sizes, fractions or bounds.
        DLSampleError: samples without boxes of one geometry, or degenerate boxes.

    Examples:
        >>> from dlbatch.data import detection_samples
        >>> suggested = detection_params_from_samples(detection_samples(20), 64, 64)
        >>> suggested["min_level"] <= suggested["max_level"], suggested["coverage"] >= 0.9
        (True, True)
    """
    width = checked_int("image_width", image_width, 1)
    height = checked_int("image_height", image_height, 1)
    goal = _fraction("coverage_goal", coverage_goal)
    threshold = _fraction("iou_threshold", iou_threshold)
    undirected = _flag("ignore_direction", ignore_direction)
    lowest = checked_int("lowest_level", lowest_level, 0)
    deepest = max_level_for(height, width)
    highest = deepest if highest_level is None else min(checked_int("highest_level", highest_level, lowest), deepest)
    if lowest > highest:
        raise DLParamError(f"a {height} x {width} image allows levels up to {deepest} (2^level <= the shorter side), "
                           f"below lowest_level={lowest}; use larger images or a lower lowest_level")
    caps = [checked_int("max_num_subscales", max_num_subscales, 1),
            checked_int("max_num_aspect_ratios", max_num_aspect_ratios, 1),
            ANGLES_PER_HALF_TURN * (1 if undirected else 2) if max_num_angles is None
            else checked_int("max_num_angles", max_num_angles, 1)]
    if instance_type is not None:
        geometry_for(instance_type)  # an unknown name is a DLParamError listing the known ones

    samples = as_sample_list(samples)
    if not samples:
        raise DLSampleError("no samples: anchor parameters are suggested from the boxes of samples")
    kind = detect_instance_type(samples) if instance_type is None else instance_type
    geometry = geometry_for(kind, ignore_direction=undirected)
    oriented = kind == "rectangle2"
    boxes, owner = collect_boxes(samples, height, width, geometry)
    if not len(boxes):
        raise DLSampleError(f"the {len(samples)} samples hold no boxes: anchor parameters are suggested from the "
                            f"boxes, so pass samples with objects ({geometry.keys[0]} ... {geometry.keys[-1]})")
    if oriented:
        boxes = geometry.normalize(boxes)
        t = np.log2(2 * np.sqrt(boxes[:, 3] * boxes[:, 4]) / 4)
        log_ratio = np.log(boxes[:, 3] / boxes[:, 4])
    else:
        centre = Rectangle1.to_centre(boxes)
        t = np.log2(np.sqrt(centre[:, 2] * centre[:, 3]) / 4)
        log_ratio = np.log(centre[:, 2] / centre[:, 3])
        caps[2] = 1  # rectangle1 anchors have no angle

    counts = [1, 1, 1]  # subscales, aspect ratios, angles
    best = None
    while True:
        n, k, m = counts
        ratios = _ratios(log_ratio, k)
        levels = _levels(t, n, lowest, highest)
        found = dict(min_level=levels[0], max_level=levels[1], anchor_num_subscales=n, anchor_aspect_ratios=ratios)
        if oriented:
            found["anchor_angles"] = _angles(boxes[:, 2], m, undirected)
        covered = covered_boxes(boxes, owner, height, width, *levels, n, ratios, threshold,
                                angles=found.get("anchor_angles"), ignore_direction=undirected)
        found["coverage"] = float(covered.mean())
        if best is None or _preference(found) > _preference(best):
            best = found
        if found["coverage"] >= goal or counts == caps:
            break
        losses = _log_losses(t[~covered], log_ratio[~covered], levels, n, ratios)
        if oriented:
            losses += (_angle_log_loss(boxes[~covered], found["anchor_angles"], undirected),)
        raise_which = min((d for d in range(len(losses)) if counts[d] < caps[d]), key=lambda d: (losses[d], d))
        counts[raise_which] += 1

    per_location = _per_location(best)
    num_anchors = sum(rows * cols for rows, cols in (feature_size(height, width, level)
                                                     for level in range(best["min_level"], best["max_level"] + 1)))
    result = {"instance_type": kind, **{key: value for key, value in best.items() if key != "coverage"}}
    if oriented:
        result["ignore_direction"] = undirected
    return {**result, "coverage": best["coverage"], "coverage_goal": goal,
            "coverage_goal_met": best["coverage"] >= goal, "num_boxes": int(len(boxes)),
            "anchors_per_location": per_location, "num_anchors": num_anchors * per_location}
