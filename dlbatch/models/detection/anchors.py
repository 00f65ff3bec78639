"""Anchor boxes on the feature pyramid (SPEC section 5), pure numpy, rectangle1 or rectangle2 form.

Level l (min_level <= l <= max_level) has stride s = 2^l and a feature map of
ceil(H / s) x ceil(W / s) cells. Cell (y, x) covers the input pixels y*s .. y*s+s-1 (rows) and
x*s .. x*s+s-1 (cols), so its anchors are centred at row (y + 0.5)*s - 0.5, col (x + 0.5)*s - 0.5.

Each cell has num_subscales * len(aspect_ratios) anchors: size = 4 * s * 2^(i / num_subscales)
for i = 0 .. num_subscales-1, and for an aspect ratio r = height / width
height = size * sqrt(r), width = size / sqrt(r) (the area stays size^2).

Order (binding: the head's outputs are flattened the same way): level, then y, then x, then the
anchor index a = subscale * len(aspect_ratios) + ratio_index.

Oriented anchors (rectangle2, generate_oriented_anchors) have the same centres and sizes, and
for an aspect ratio r = length1 / length2 the half lengths length1 = size * sqrt(r) / 2,
length2 = size / sqrt(r) / 2, once per angle phi in `angles`: a cell has
num_subscales * len(aspect_ratios) * len(angles) anchors, in the anchor index
a = (subscale * len(aspect_ratios) + ratio_index) * len(angles) + angle_index.
(With phi = pi/2, length1 runs along the rows, so ratio r is then rectangle1's height / width r.)
"""
from __future__ import annotations

import operator
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from ...core.errors import DLParamError
from .rotated_iou import bounding_boxes, half_extents

BASE_SIZE_PER_STRIDE = 4  # the anchor base size is 4 * stride (RetinaNet's anchor_scale)


@dataclass(frozen=True)
class Anchors:
    """All anchors of one input size: `boxes` (A, 4) rectangle1 or (A, 5) rectangle2, `level` (A,)
    int64 their pyramid level, `per_level` one (level, feature height, feature width, anchor
    count) per level."""

    boxes: np.ndarray
    level: np.ndarray
    per_level: list[tuple[int, int, int, int]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.boxes)


def checked_int(name: str, value, least: int) -> int:
    """`value` as an int (anything operator.index accepts; bool counts as an int) that is >=
    `least`, else DLParamError naming `name`."""
    try:
        number = operator.index(value)
    except TypeError:
        raise DLParamError(f"{name} must be an integer, got {value!r}") from None
    if number < least:
        raise DLParamError(f"{name} must be >= {least}, got {number}")
    return number


def _ratios(aspect_ratios) -> np.ndarray:
    ratios = np.asarray(aspect_ratios, dtype=np.float64).reshape(-1) if np.ndim(aspect_ratios) <= 1 else None
    if ratios is None or ratios.size == 0 or not np.all(np.isfinite(ratios)) or np.any(ratios <= 0):
        raise DLParamError(f"anchor_aspect_ratios must be a non-empty list of positive numbers (height / width), "
                           f"got {aspect_ratios!r}")
    return ratios


def _angles(angles) -> np.ndarray:
    values = np.asarray(angles, dtype=np.float64).reshape(-1) if np.ndim(angles) <= 1 else None
    if values is None or values.size == 0 or not np.all(np.isfinite(values)):
        raise DLParamError(f"anchor angles must be a non-empty list of finite angles (radians), got {angles!r}")
    return values


def _angle_count(angles) -> int:
    """`angles` as a count: an integer >= 1 or a sequence of angles (its length)."""
    try:
        return checked_int("anchor angle count", angles, 1)
    except DLParamError:
        if np.ndim(angles) == 0:
            raise
    return len(_angles(angles))


def anchors_per_location(num_subscales: int, aspect_ratios: Sequence[float], angles: int | Sequence[float] = 1) -> int:
    """How many anchors each feature-map cell has: num_subscales * len(aspect_ratios) * the number
    of angles (`angles`: a count or the angles themselves; 1 for rectangle1 anchors)."""
    return checked_int("anchor_num_subscales", num_subscales, 1) * len(_ratios(aspect_ratios)) * _angle_count(angles)


def anchor_shapes(level: int, num_subscales: int, aspect_ratios: Sequence[float]) -> np.ndarray:
    """(K, 2) (height, width) of the K anchors of one cell of `level`, in anchor-index order
    a = subscale * len(aspect_ratios) + ratio_index."""
    level = checked_int("level", level, 0)
    n = checked_int("anchor_num_subscales", num_subscales, 1)
    ratios = _ratios(aspect_ratios)
    size = BASE_SIZE_PER_STRIDE * 2.0 ** level * 2.0 ** (np.arange(n) / n)  # (n,)
    root = np.sqrt(ratios)  # (R,)
    heights = (size[:, None] * root[None, :]).reshape(-1)
    widths = (size[:, None] / root[None, :]).reshape(-1)
    return np.stack([heights, widths], axis=1)


def oriented_anchor_shapes(level: int, num_subscales: int, aspect_ratios: Sequence[float],
                           angles: Sequence[float]) -> np.ndarray:
    """(K, 3) (phi, length1, length2) of the K oriented anchors of one cell of `level`, in
    anchor-index order a = (subscale * len(aspect_ratios) + ratio_index) * len(angles) + angle_index;
    for ratio r = length1 / length2: length1 = size * sqrt(r) / 2, length2 = size / sqrt(r) / 2."""
    level = checked_int("level", level, 0)
    n = checked_int("anchor_num_subscales", num_subscales, 1)
    ratios, phis = _ratios(aspect_ratios), _angles(angles)
    size = BASE_SIZE_PER_STRIDE * 2.0 ** level * 2.0 ** (np.arange(n) / n)  # (n,)
    root = np.sqrt(ratios)  # (R,)
    shape = (n, len(ratios), len(phis))
    length1 = np.broadcast_to((size[:, None] * root[None, :] / 2)[:, :, None], shape).reshape(-1)
    length2 = np.broadcast_to((size[:, None] / root[None, :] / 2)[:, :, None], shape).reshape(-1)
    phi = np.broadcast_to(phis[None, None, :], shape).reshape(-1)
    return np.stack([phi, length1, length2], axis=1)


def feature_size(image_height: int, image_width: int, level: int) -> tuple[int, int]:
    """(ceil(H / 2^level), ceil(W / 2^level))."""
    stride = 2 ** level
    return -(-image_height // stride), -(-image_width // stride)


def _grids(image_height: int, image_width: int, min_level: int, max_level: int):
    """Per level (level, rows, cols, centre rows (rows,), centre cols (cols,)), validated."""
    height = checked_int("image_height", image_height, 1)
    width = checked_int("image_width", image_width, 1)
    low = checked_int("min_level", min_level, 0)
    high = checked_int("max_level", max_level, 0)
    if high < low:
        raise DLParamError(f"max_level ({high}) must be >= min_level ({low})")
    for level in range(low, high + 1):
        stride = 2 ** level
        rows, cols = feature_size(height, width, level)
        yield level, rows, cols, (np.arange(rows) + 0.5) * stride - 0.5, (np.arange(cols) + 0.5) * stride - 0.5


def generate_anchors(image_height: int, image_width: int, min_level: int, max_level: int, num_subscales: int,
                     aspect_ratios: Sequence[float]) -> Anchors:
    """The anchors of an image_height x image_width input on levels min_level .. max_level."""
    boxes, levels, per_level = [], [], []
    for level, rows, cols, centre_row, centre_col in _grids(image_height, image_width, min_level, max_level):
        # a few levels; every anchor of a level in one array op
        shapes = anchor_shapes(level, num_subscales, aspect_ratios)  # (K, 2)
        half = shapes / 2  # (K, 2)
        # (rows, cols, K, 4) in the binding order level, y, x, a
        grid = np.empty((rows, cols, len(shapes), 4))
        grid[..., 0] = centre_row[:, None, None] - half[None, None, :, 0]
        grid[..., 1] = centre_col[None, :, None] - half[None, None, :, 1]
        grid[..., 2] = centre_row[:, None, None] + half[None, None, :, 0]
        grid[..., 3] = centre_col[None, :, None] + half[None, None, :, 1]
        count = rows * cols * len(shapes)
        boxes.append(grid.reshape(count, 4))
        levels.append(np.full(count, level, dtype=np.int64))
        per_level.append((level, rows, cols, count))
    return Anchors(np.concatenate(boxes), np.concatenate(levels), per_level)


def generate_oriented_anchors(image_height: int, image_width: int, min_level: int, max_level: int,
                              num_subscales: int, aspect_ratios: Sequence[float], angles: Sequence[float]) -> Anchors:
    """The rectangle2 anchors (A, 5) = (row, col, phi, length1, length2) of an image_height x
    image_width input on levels min_level .. max_level: generate_anchors' centres and sizes, the
    aspect ratio r = length1 / length2, each once per angle in `angles` (radians, as given).
    Order: level, y, x, then a = (subscale * len(aspect_ratios) + ratio_index) * len(angles) + angle_index."""
    boxes, levels, per_level = [], [], []
    for level, rows, cols, centre_row, centre_col in _grids(image_height, image_width, min_level, max_level):
        shapes = oriented_anchor_shapes(level, num_subscales, aspect_ratios, angles)  # (K, 3)
        grid = np.empty((rows, cols, len(shapes), 5))
        grid[..., 0] = centre_row[:, None, None]
        grid[..., 1] = centre_col[None, :, None]
        grid[..., 2:] = shapes[None, None, :, :]
        count = rows * cols * len(shapes)
        boxes.append(grid.reshape(count, 5))
        levels.append(np.full(count, level, dtype=np.int64))
        per_level.append((level, rows, cols, count))
    return Anchors(np.concatenate(boxes), np.concatenate(levels), per_level)


def max_level_for(image_height: int, image_width: int) -> int:
    """The deepest level whose stride still fits the image: 2^level <= min(H, W)."""
    side = min(checked_int("image_height", image_height, 1), checked_int("image_width", image_width, 1))
    return side.bit_length() - 1


def anchors_near(anchors: Anchors, boxes: np.ndarray) -> np.ndarray:
    """Sorted indices (int64) of a subset of `anchors` that holds every anchor overlapping one
    of the `boxes` with positive area: per level, the cells whose centre lies within a box grown
    by the level's largest anchor half height and width (and a cell's width of margin).
    Matching a few boxes against these alone gives the same result for the boxes, as every
    other anchor has IoU 0 with all of them. Boxes and anchors may be rectangle1 (N, 4) or
    rectangle2 (N, 5); a rectangle2 box or anchor counts with its axis-parallel bounding box."""
    boxes = np.asarray(boxes, dtype=np.float64)
    boxes = bounding_boxes(boxes) if boxes.ndim == 2 and boxes.shape[1] == 5 else boxes.reshape(-1, 4)
    found, offset = [], 0
    for level, rows, cols, count in anchors.per_level:  # a few levels, boxes and cells in array ops
        per_cell = count // (rows * cols)
        first = anchors.boxes[offset:offset + per_cell]  # every cell has the same anchor shapes
        if first.shape[1] == 5:
            half_h, half_w = (float(h) for h in half_extents(first).max(axis=0))
        else:
            half_h = float((first[:, 2] - first[:, 0]).max()) / 2
            half_w = float((first[:, 3] - first[:, 1]).max()) / 2
        stride = 2 ** level
        y0 = np.floor((boxes[:, 0] - half_h + 0.5) / stride - 0.5)
        y1 = np.ceil((boxes[:, 2] + half_h + 0.5) / stride - 0.5)
        x0 = np.floor((boxes[:, 1] - half_w + 0.5) / stride - 0.5)
        x1 = np.ceil((boxes[:, 3] + half_w + 0.5) / stride - 0.5)
        y, x = np.arange(rows), np.arange(cols)
        in_rows = (y[None, :] >= y0[:, None]) & (y[None, :] <= y1[:, None])
        in_cols = (x[None, :] >= x0[:, None]) & (x[None, :] <= x1[:, None])
        cells = np.flatnonzero((in_rows[:, :, None] & in_cols[:, None, :]).any(axis=0))
        found.append((offset + cells[:, None] * per_cell + np.arange(per_cell)[None, :]).reshape(-1))
        offset += count
    return np.concatenate(found).astype(np.int64) if found else np.zeros(0, dtype=np.int64)

