"""Box regression targets relative to anchors (SPEC section 5: dy, dx, log dh, log dw), pure numpy.

With the centre form (cy, cx, h, w) of an anchor (a) and a box (b), no extra weights:

    dy = (cy_b - cy_a) / h_a        dx = (cx_b - cx_a) / w_a
    dh = log(h_b / h_a)             dw = log(w_b / w_a)

decode is the exact inverse, except that dh and dw are clamped from above at
log(1000 / 16) before exp (torchvision's bbox_xform_clip), so a wild prediction cannot
overflow; large negative values are not clamped (the box just becomes small).

The geometry (boxes.GEOMETRIES) gives the centre form: rectangle1's is (cy, cx, h, w). A
geometry whose centre form has more columns (rectangle2 adds its angle) also provides
encode_extra(anchor_extra, box_extra) and decode_extra(anchor_extra, delta_extra) for them;
their deltas follow the four above as further columns.
"""
from __future__ import annotations

import math

import numpy as np

from .boxes import Rectangle1

BBOX_XFORM_CLIP = math.log(1000.0 / 16)
NUM_SHARED = 4  # dy, dx, dh, dw: the columns every geometry shares


def _pair(a, b, what: str) -> tuple[np.ndarray, np.ndarray]:
    if len(a) != len(b):
        raise ValueError(f"{what}: {len(a)} anchors but {len(b)} rows; pass one row per anchor")
    return a, b


def _positive_sizes(centre: np.ndarray, what: str) -> None:
    bad = ~(centre[:, 2:4] > 0).all(axis=1)
    if bad.any():
        index = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{what} {index} has height {centre[index, 2]} and width {centre[index, 3]}; "
                         "only boxes of positive size can be encoded (drop degenerate boxes first)")


def encode_centre(anchors: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """(A, 4) (dy, dx, dh, dw) of boxes relative to anchors, both in centre form (cy, cx, h, w)."""
    return np.stack([(boxes[:, 0] - anchors[:, 0]) / anchors[:, 2],
                     (boxes[:, 1] - anchors[:, 1]) / anchors[:, 3],
                     np.log(boxes[:, 2] / anchors[:, 2]),
                     np.log(boxes[:, 3] / anchors[:, 3])], axis=1)


def decode_centre(anchors: np.ndarray, deltas: np.ndarray) -> np.ndarray:
    """(A, 4) centre form (cy, cx, h, w) of the boxes that (dy, dx, dh, dw) describe; dh and
    dw are clamped at BBOX_XFORM_CLIP."""
    dh = np.minimum(deltas[:, 2], BBOX_XFORM_CLIP)
    dw = np.minimum(deltas[:, 3], BBOX_XFORM_CLIP)
    return np.stack([anchors[:, 0] + deltas[:, 0] * anchors[:, 2],
                     anchors[:, 1] + deltas[:, 1] * anchors[:, 3],
                     anchors[:, 2] * np.exp(dh),
                     anchors[:, 3] * np.exp(dw)], axis=1)


def encode(anchors: np.ndarray, boxes: np.ndarray, geometry=Rectangle1) -> np.ndarray:
    """(A, D) regression targets of `boxes` (A, P), box i relative to anchor i; D = 4 for
    rectangle1. Anchors and boxes must have positive height and width."""
    a, b = _pair(geometry.to_centre(anchors), geometry.to_centre(boxes), "encode")
    _positive_sizes(a, "anchor")
    _positive_sizes(b, "box")
    deltas = encode_centre(a, b)
    if a.shape[1] > NUM_SHARED:
        deltas = np.concatenate([deltas, geometry.encode_extra(a[:, NUM_SHARED:], b[:, NUM_SHARED:])], axis=1)
    return deltas


def decode(anchors: np.ndarray, deltas: np.ndarray, geometry=Rectangle1) -> np.ndarray:
    """(A, P) boxes from the regression output `deltas` (A, D) at `anchors` (A, P)."""
    a = geometry.to_centre(anchors)
    d = np.asarray(deltas, dtype=np.float64)
    if d.ndim != 2 or d.shape[1] != a.shape[1]:
        raise ValueError(f"deltas must have shape (anchors, {a.shape[1]}), got {d.shape}")
    a, d = _pair(a, d, "decode")
    centre = decode_centre(a, d)
    if a.shape[1] > NUM_SHARED:
        centre = np.concatenate([centre, geometry.decode_extra(a[:, NUM_SHARED:], d[:, NUM_SHARED:])], axis=1)
    return geometry.from_centre(centre)
