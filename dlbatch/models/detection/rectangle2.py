"""The oriented box geometry rectangle2 (HALCON), pure numpy and vectorised.

Coordinates are continuous pixels (SPEC): rows down, columns right, the centre of the upper-left
pixel at (0, 0). A box is (row, col, phi, length1, length2) (float64 arrays (N, 5)), read from
the sample keys bbox_row, bbox_col, bbox_phi, bbox_length1, bbox_length2:

- centre (row, col);
- phi in radians, counter-clockwise as seen on screen from the column axis: the unit vector
  along length1 is d1 = (row, col) = (-sin phi, cos phi), across it d2 = (cos phi, sin phi);
- length1, length2 are HALF side lengths along d1 and d2: corners = centre +- l1 d1 +- l2 d2,
  area = 4 l1 l2; a length <= 0 is degenerate.

Direction: with ignore_direction (the default) phi and phi + pi are the same box and results
give phi in (-pi/2, pi/2]; otherwise phi in (-pi, pi] (the box has a front, along +d1).

Box coder (box_coder.py): the centre form is (row, col, 2 l1, 2 l2, phi), i.e. the shared
(dy, dx, log dh, log dw) coding applies with h along d1 and w along d2, and the angle is one
extra column: delta = wrap(phi - phi_anchor) into [-pi/2, pi/2) (ignore_direction) or
[-pi, pi); decoding gives normalize_phi(phi_anchor + delta).

The IoU is exact (polygon intersection, rotated_iou.py).
"""
from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np

from .boxes import stack_sample_keys
from .rotated_iou import _as_boxes5, bounding_boxes, corners, rotated_pairwise_iou

RECTANGLE2_KEYS = ("bbox_row", "bbox_col", "bbox_phi", "bbox_length1", "bbox_length2")

__all__ = ["RECTANGLE2_KEYS", "Rectangle2", "bounding_boxes", "corners", "normalize_phi", "wrap_angle"]


def _period(ignore_direction: bool) -> float:
    return math.pi if ignore_direction else 2.0 * math.pi


def normalize_phi(phi, ignore_direction: bool = True) -> np.ndarray:
    """Angles in the range results use.

    Args:
        phi: angles in radians (any shape).
        ignore_direction: phi and phi + pi are the same box.

    Returns:
        float64 phi in (-pi/2, pi/2] when ignore_direction, else in (-pi, pi]; values already in
        the range come back unchanged (bit for bit).

    Examples:
        >>> normalize_phi([3.0, -1.0]).round(4).tolist()
        [-0.1416, -1.0]
    """
    period = _period(ignore_direction)
    half = period / 2  # pi / 2 or pi; -half + period == half exactly in floating point
    phi = np.array(phi, dtype=np.float64)
    out = (phi <= -half) | (phi > half)
    if out.any():
        phi[out] = np.remainder(phi[out] + half, period) - half  # [-half, half) up to rounding
        phi = np.where(phi > half, phi - period, phi)
        phi = np.where(phi <= -half, phi + period, phi)
    return phi


def wrap_angle(delta, ignore_direction: bool = True) -> np.ndarray:
    """An angle difference (any shape) as float64 in [-pi/2, pi/2) when ignore_direction, else in
    [-pi, pi). Values already in the range are returned unchanged."""
    period = _period(ignore_direction)
    half = period / 2
    delta = np.array(delta, dtype=np.float64)
    out = (delta < -half) | (delta >= half)
    if out.any():
        delta[out] = np.remainder(delta[out] + half, period) - half
        delta = np.where(delta >= half, delta - period, delta)
        delta = np.where(delta < -half, delta + period, delta)
    return delta


class Rectangle2:
    """Oriented boxes (row, col, phi, length1, length2); an instance fixes whether the direction
    counts (`ignore_direction`, default True: phi and phi + pi are the same box). It has the
    interface of boxes.Rectangle1 (as instance methods) plus the box coder's angle column."""

    name = "rectangle2"
    num_params = 5
    keys = RECTANGLE2_KEYS

    def __init__(self, ignore_direction: bool = True):
        self.ignore_direction = bool(ignore_direction)

    def __repr__(self) -> str:
        return f"Rectangle2(ignore_direction={self.ignore_direction})"

    def __eq__(self, other) -> bool:
        return isinstance(other, Rectangle2) and other.ignore_direction == self.ignore_direction

    def __hash__(self) -> int:
        return hash((self.name, self.ignore_direction))

    # --- boxes -----------------------------------------------------------------------------
    def as_boxes(self, boxes) -> np.ndarray:
        return _as_boxes5(boxes)

    def is_degenerate(self, boxes) -> np.ndarray:
        """(N,) bool: length1 <= 0 or length2 <= 0 (or NaN)."""
        b = _as_boxes5(boxes)
        return ~((b[:, 3] > 0) & (b[:, 4] > 0))

    def area(self, boxes) -> np.ndarray:
        """(N,) 4 * length1 * length2, 0 for degenerate boxes."""
        b = _as_boxes5(boxes)
        return 4.0 * np.maximum(b[:, 3], 0.0) * np.maximum(b[:, 4], 0.0)

    def pairwise_iou(self, a, b) -> np.ndarray:
        """(N, M) exact IoU (polygon intersection over union); 0 where the boxes do not overlap
        (touching included) or either is degenerate. phi and phi + pi give the same IoU."""
        return rotated_pairwise_iou(a, b)

    def matching_iou(self, boxes, anchors) -> np.ndarray:
        """(N, M) IoU for assigning anchors to boxes. With the direction taken into account,
        an anchor pointing the other way (|wrap(phi_box - phi_anchor)| >= pi/2) counts as 0:
        the IoU cannot tell phi from phi + pi, and such a match would ask the box coder for a
        turn of about pi."""
        iou = self.pairwise_iou(boxes, anchors)
        if not self.ignore_direction:
            b, a = _as_boxes5(boxes), _as_boxes5(anchors)
            turn = wrap_angle(b[:, None, 2] - a[None, :, 2], ignore_direction=False)
            iou = np.where(np.abs(turn) < np.pi / 2, iou, 0.0)
        return iou

    def normalize(self, boxes) -> np.ndarray:
        """The boxes with phi in this geometry's range (see normalize_phi); the same boxes."""
        b = _as_boxes5(boxes).copy()
        b[:, 2] = normalize_phi(b[:, 2], self.ignore_direction)
        return b

    def corners(self, boxes) -> np.ndarray:
        """(N, 4, 2) corners (row, col); see rotated_iou.corners."""
        return corners(boxes)

    def bounding_boxes(self, boxes) -> np.ndarray:
        """(N, 4) rectangle1 axis-parallel bounding boxes."""
        return bounding_boxes(boxes)

    def clip(self, boxes, height: int, width: int) -> np.ndarray:
        """The boxes UNCHANGED (a copy): a rotated box cut to the image would no longer be a
        rectangle2, so rectangle2 boxes are not clipped to the image (HALCON does not clip them
        either); `height` and `width` are accepted for the common interface."""
        return _as_boxes5(boxes).copy()

    def check(self, boxes, height: int, width: int, tolerance: float = 0.0) -> tuple[int, str, str] | None:
        """The first problem of the boxes as (box index, key, what is wrong), or None: a length
        <= 0 (bbox_length1, then bbox_length2), or a centre outside the image extent rows
        [-0.5, height-0.5], cols [-0.5, width-0.5] by more than `tolerance` (bbox_row, then
        bbox_col). Corners may lie outside the image. Non-finite values are caught earlier."""
        b = _as_boxes5(boxes)
        low = -0.5 - tolerance
        problems = np.stack([~(b[:, 3] > 0), ~(b[:, 4] > 0),
                             (b[:, 0] < low) | (b[:, 0] > height - 0.5 + tolerance),
                             (b[:, 1] < low) | (b[:, 1] > width - 0.5 + tolerance)], axis=1)
        if not problems.any():
            return None
        box, kind = (int(x) for x in np.argwhere(problems)[0])
        if kind < 2:
            key = RECTANGLE2_KEYS[3 + kind]
            return box, key, f"is degenerate: {key} = {b[box, 3 + kind]} is not > 0 (lengths are half side lengths)"
        key = RECTANGLE2_KEYS[kind - 2]
        extent = f"rows [-0.5, {height - 0.5}]" if kind == 2 else f"cols [-0.5, {width - 0.5}]"
        return box, key, f"has its centre outside the image: {key} = {b[box, kind - 2]} is not in {extent}"

    def scale(self, boxes, scale_row: float, scale_col: float) -> np.ndarray:
        """The boxes after the image is resized by (scale_row, scale_col) (S = diag(scale_row,
        scale_col)): the centre moves like a pixel coordinate, c' = (c + 0.5) * scale - 0.5.

        Uniform scaling (scale_row == scale_col = s) is exact: phi unchanged, lengths times s.
        Otherwise the image of a rectangle is a parallelogram, approximated by the rectangle
        with d1' = S d1 / |S d1| (phi' = atan2(scale_row sin phi, scale_col cos phi), kept within
        pi/2 of phi so phi's convention survives), length1' = length1 |S d1| and the area-
        preserving length2' = length2 * scale_row * scale_col / |S d1|. This is exact whenever
        d1 is an axis direction (phi a multiple of pi/2), as the parallelogram is then a rectangle."""
        b = _as_boxes5(boxes)
        out = b.copy()
        out[:, 0] = (b[:, 0] + 0.5) * scale_row - 0.5
        out[:, 1] = (b[:, 1] + 0.5) * scale_col - 0.5
        if scale_row == scale_col:
            out[:, 3:5] = b[:, 3:5] * scale_row
            return out
        sin, cos = np.sin(b[:, 2]), np.cos(b[:, 2])
        stretch = np.hypot(scale_row * sin, scale_col * cos)  # |S d1|
        turned = np.arctan2(scale_row * sin, scale_col * cos)
        out[:, 2] = b[:, 2] + wrap_angle(turned - b[:, 2], ignore_direction=False)
        out[:, 3] = b[:, 3] * stretch
        out[:, 4] = b[:, 4] * (scale_row * scale_col) / stretch
        return out

    def from_sample(self, sample: Mapping[str, Any], index: int | None = None) -> np.ndarray:
        """The sample's boxes as (N, 5) from bbox_row, bbox_col, bbox_phi, bbox_length1,
        bbox_length2 (phi as given, not normalised); errors name the sample `index` and the key."""
        return stack_sample_keys(sample, RECTANGLE2_KEYS, index)

    # --- box coder ---------------------------------------------------------------------------
    def to_centre(self, boxes) -> np.ndarray:
        """(N, 5) centre form (row, col, 2 length1, 2 length2, phi): the box coder's h is the side
        along d1 and w the side across it."""
        b = _as_boxes5(boxes)
        return np.stack([b[:, 0], b[:, 1], 2.0 * b[:, 3], 2.0 * b[:, 4], b[:, 2]], axis=1)

    def from_centre(self, centre) -> np.ndarray:
        """Boxes (N, 5) from the centre form (row, col, 2 length1, 2 length2, phi); phi as given
        (decode_extra has normalised it)."""
        c = _as_boxes5(centre)
        return np.stack([c[:, 0], c[:, 1], c[:, 4], c[:, 2] / 2, c[:, 3] / 2], axis=1)

    def encode_extra(self, anchor_extra, box_extra) -> np.ndarray:
        """(A, 1) angle delta wrap(phi_box - phi_anchor): in [-pi/2, pi/2) when the direction is
        ignored (phi and phi + pi are the same box), else in [-pi, pi)."""
        a, b = np.asarray(anchor_extra, dtype=np.float64), np.asarray(box_extra, dtype=np.float64)
        return wrap_angle(b - a, self.ignore_direction)

    def decode_extra(self, anchor_extra, delta_extra) -> np.ndarray:
        """(A, 1) phi = normalize_phi(phi_anchor + delta): in (-pi/2, pi/2] or (-pi, pi]."""
        a, d = np.asarray(anchor_extra, dtype=np.float64), np.asarray(delta_extra, dtype=np.float64)
        return normalize_phi(a + d, self.ignore_direction)
