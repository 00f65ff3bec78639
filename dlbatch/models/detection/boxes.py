"""Box geometries of the detection model type, pure numpy and vectorised.

Coordinates are continuous pixels (SPEC): rows down, columns right, the centre of the
upper-left pixel at (0, 0), so an H x W image spans rows [-0.5, H-0.5] and cols [-0.5, W-0.5].

rectangle1 boxes are float64 arrays (N, 4) = (row1, col1, row2, col2), the upper-left and the
lower-right corner; area = (row2-row1)*(col2-col1); row2 <= row1 or col2 <= col1 is degenerate.

A geometry is an object with this interface (Rectangle1: the class itself, static methods;
Rectangle2: an instance, as it is configured), so the detection units
(matcher, box coder, detection parameters) take a geometry instead of assuming 4 columns:

    name, num_params, keys                  what a box is and which sample keys hold it
    as_boxes(x)                             x as a float64 (N, num_params) array
    area(b), is_degenerate(b)               (N,) per box
    pairwise_iou(a, b)                      (N, M)
    clip(b, height, width)                  boxes cut to the image extent
    check(b, height, width, tolerance)      the first degenerate or outside box, or None
    scale(b, scale_row, scale_col)          boxes moved with an image resized by these factors
    from_sample(sample, index)              the sample's boxes (N, num_params), validated
    to_centre(b), from_centre(c)            the box coder's centre form (cy, cx, h, w[, ...])

rectangle2 (row, col, phi, length1, length2) lives in rectangle2.py: a configured instance
(Rectangle2(ignore_direction=...)) with the same interface as instance methods. geometry_for()
builds the geometry of an instance_type; GEOMETRIES holds the class-level geometries only.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from ...core.errors import DLParamError, DLSampleError, did_you_mean

RECTANGLE1_KEYS = ("bbox_row1", "bbox_col1", "bbox_row2", "bbox_col2")


def _as_boxes(boxes, num_params: int) -> np.ndarray:
    arr = np.asarray(boxes, dtype=np.float64)
    if arr.ndim == 1 and arr.size == 0:
        arr = arr.reshape(0, num_params)
    if arr.ndim != 2 or arr.shape[1] != num_params:
        raise ValueError(f"boxes must have shape (N, {num_params}), got {np.shape(boxes)}")
    return arr


def stack_sample_keys(sample: Mapping[str, Any], keys, index: int | None = None) -> np.ndarray:
    """The values of `keys` in `sample` as columns of a float64 (N, len(keys)) array.

    Each key holds one number per box (a 1-D sequence; a scalar counts as one box). A missing
    key, a non-numeric, multi-dimensional or non-finite value, or keys of different lengths
    raise DLSampleError naming the sample `index` (when given) and the key."""
    where = f"sample {index}" if index is not None else "sample"
    if not isinstance(sample, Mapping):
        raise DLSampleError(f"{where} is a {type(sample).__name__}, expected a dict with keys {list(keys)}")
    columns = []
    for key in keys:
        if key not in sample:
            raise DLSampleError(f"{where} has no key {key!r}; boxes need {list(keys)} (one value per box, "
                                "empty for an image without objects)")
        try:
            col = np.asarray(sample[key], dtype=np.float64)
        except (TypeError, ValueError):
            raise DLSampleError(f"{where}: {key!r} must hold numbers, got {sample[key]!r:.80}") from None
        if col.ndim > 1:
            raise DLSampleError(f"{where}: {key!r} must be one value per box (1-D), got shape {col.shape}")
        col = col.reshape(-1)
        if not np.all(np.isfinite(col)):
            bad = int(np.flatnonzero(~np.isfinite(col))[0])
            raise DLSampleError(f"{where}: {key!r} has a non-finite value {col[bad]} at box {bad}")
        if columns and col.size != columns[0].size:
            raise DLSampleError(f"{where}: {key!r} has {col.size} values but {keys[0]!r} has "
                                f"{columns[0].size}; every box key needs one value per box")
        columns.append(col)
    return np.stack(columns, axis=1)


class Rectangle1:
    """Axis-parallel boxes (row1, col1, row2, col2)."""

    name = "rectangle1"
    num_params = 4
    keys = RECTANGLE1_KEYS

    @staticmethod
    def as_boxes(boxes) -> np.ndarray:
        return _as_boxes(boxes, 4)

    @staticmethod
    def is_degenerate(boxes) -> np.ndarray:
        """(N,) bool: row2 <= row1 or col2 <= col1."""
        b = _as_boxes(boxes, 4)
        return (b[:, 2] <= b[:, 0]) | (b[:, 3] <= b[:, 1])

    @staticmethod
    def area(boxes) -> np.ndarray:
        """(N,) (row2-row1)*(col2-col1), 0 for degenerate boxes."""
        b = _as_boxes(boxes, 4)
        return np.maximum(b[:, 2] - b[:, 0], 0.0) * np.maximum(b[:, 3] - b[:, 1], 0.0)

    @staticmethod
    def pairwise_iou(a, b) -> np.ndarray:
        """(N, M) intersection over union of every box of `a` with every box of `b`; 0 where
        the boxes do not overlap (touching boxes included) or either is degenerate."""
        a, b = _as_boxes(a, 4), _as_boxes(b, 4)
        height = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
        width = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
        inter = np.maximum(height, 0.0) * np.maximum(width, 0.0)
        union = Rectangle1.area(a)[:, None] + Rectangle1.area(b)[None, :] - inter
        # union > 0 whenever inter > 0 (inter <= either area); elsewhere the IoU stays 0
        out = np.zeros(inter.shape)
        np.divide(inter, union, out=out, where=inter > 0)
        return out

    @staticmethod
    def clip(boxes, height: int, width: int) -> np.ndarray:
        """The boxes cut to the image extent rows [-0.5, height-0.5], cols [-0.5, width-0.5]
        (a box wholly outside becomes degenerate)."""
        b = _as_boxes(boxes, 4).copy()
        b[:, 0::2] = np.clip(b[:, 0::2], -0.5, height - 0.5)
        b[:, 1::2] = np.clip(b[:, 1::2], -0.5, width - 0.5)
        return b

    @staticmethod
    def check(boxes, height: int, width: int, tolerance: float = 0.0) -> tuple[int, str, str] | None:
        """The first problem of the boxes as (box index, key, what is wrong), or None: a
        degenerate box, or a corner outside the image extent by more than `tolerance`."""
        b = _as_boxes(boxes, 4)
        lo, hi = -0.5 - tolerance, np.array([height, width, height, width]) - 0.5 + tolerance
        problems = np.stack([b[:, 2] <= b[:, 0], b[:, 3] <= b[:, 1],
                             *(b[:, j] < lo for j in range(4)), *(b[:, j] > hi[j] for j in range(4))], axis=1)
        if not problems.any():
            return None
        box, kind = np.argwhere(problems)[0]
        if kind < 2:
            low, high = RECTANGLE1_KEYS[kind], RECTANGLE1_KEYS[2 + kind]
            return int(box), high, f"is degenerate: {high} = {b[box, 2 + kind]} <= {low} = {b[box, kind]}"
        j = (kind - 2) % 4
        key = RECTANGLE1_KEYS[j]
        extent = f"rows [-0.5, {height - 0.5}]" if j % 2 == 0 else f"cols [-0.5, {width - 0.5}]"
        return int(box), key, f"lies outside the image: {key} = {b[box, j]} is not in {extent}"

    @staticmethod
    def scale(boxes, scale_row: float, scale_col: float) -> np.ndarray:
        """The boxes after the image is resized by (scale_row, scale_col): the image extent maps
        onto the new extent, x' = (x + 0.5) * scale - 0.5."""
        b = _as_boxes(boxes, 4)
        factor = np.array([scale_row, scale_col, scale_row, scale_col], dtype=np.float64)
        return (b + 0.5) * factor - 0.5

    @staticmethod
    def from_sample(sample: Mapping[str, Any], index: int | None = None) -> np.ndarray:
        """The sample's boxes as (N, 4); errors name the sample `index` and the key."""
        return stack_sample_keys(sample, RECTANGLE1_KEYS, index)

    @staticmethod
    def to_centre(boxes) -> np.ndarray:
        """(N, 4) centre form (centre row, centre col, height, width)."""
        b = _as_boxes(boxes, 4)
        return np.stack([(b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2,
                         b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]], axis=1)

    @staticmethod
    def from_centre(centre) -> np.ndarray:
        """Boxes (N, 4) from the centre form (centre row, centre col, height, width)."""
        c = _as_boxes(centre, 4)
        half_h, half_w = c[:, 2] / 2, c[:, 3] / 2
        return np.stack([c[:, 0] - half_h, c[:, 1] - half_w, c[:, 0] + half_h, c[:, 1] + half_w], axis=1)


GEOMETRIES = {"rectangle1": Rectangle1}
INSTANCE_TYPES = ("rectangle1", "rectangle2")


def geometry_for(instance_type: str, *, ignore_direction: bool = True):
    """The geometry of `instance_type`: Rectangle1 (the class; it has no direction, so
    `ignore_direction` does not apply) or Rectangle2(ignore_direction=ignore_direction)."""
    if instance_type == "rectangle1":
        return Rectangle1
    if instance_type == "rectangle2":
        from .rectangle2 import Rectangle2  # rectangle2 builds on this module
        return Rectangle2(ignore_direction=ignore_direction)
    raise DLParamError(f"unknown instance_type {instance_type!r}; {did_you_mean(instance_type, INSTANCE_TYPES)}")


# the rectangle1 functions under short names
pairwise_iou = Rectangle1.pairwise_iou
clip = Rectangle1.clip
area = Rectangle1.area
is_degenerate = Rectangle1.is_degenerate
boxes_from_sample = Rectangle1.from_sample
