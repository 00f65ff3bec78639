"""Exact IoU of oriented rectangles (rectangle2), vectorised over all pairs with numpy.

A rectangle2 box is (row, col, phi, length1, length2) (SPEC, HALCON): centre (row, col), phi in
radians counter-clockwise on screen from the column axis, so the unit vector along length1 is
d1 = (row, col) = (-sin phi, cos phi) and across it d2 = (cos phi, sin phi); length1 and
length2 are HALF side lengths; corners = centre +- length1 d1 +- length2 d2.

IoU = area(A n B) / (area(A) + area(B) - area(A n B)), with the intersection area computed
exactly (up to rounding) for every pair at once, without a Python loop over pairs:

1. prefilter: pairs whose axis-parallel bounding boxes do not overlap (touching included), or
   with a degenerate box (a length <= 0, or not finite), have IoU 0 and are never clipped;
2. the remaining pairs are clipped in blocks of `block` pairs (bounded memory). A's corners are
   written in B's frame (origin B's centre, axes d1_B, d2_B), where B is the axis-parallel box
   |u| <= length1_B, |v| <= length2_B. A's boundary is then clipped to B by projecting it onto
   B: clamp(p) = (clip(u, -l1, l1), clip(v, -l2, l2)). Along one edge of A, clamp is piecewise
   linear with breakpoints where the edge crosses one of B's 4 lines, so each edge becomes 5
   points (its start and the 4 crossing parameters t, clipped to [0, 1] and sorted by a small
   sorting network): a fixed buffer of 4 x 5 = 20 vertices per pair, no masks, no compaction;
3. the shoelace formula over these 20 vertices is the intersection area.

Why this is the clipped polygon: the projection onto a half-plane moves each point along the
normal, away from every point strictly inside, so the closed path keeps its winding number
around inner points and has winding number 0 around points outside; its signed area is the
area of A n half-plane (the path is the Sutherland-Hodgman polygon plus repeated vertices and
back-and-forth spikes along the clip line, which add no area), and the box is 4 half-planes.
Each vertex is the projection of a point on A's boundary, so rounding only moves vertices
along the path and never opens it: identical boxes, shared or parallel edges, touching boxes,
containment (B inside A: A's boundary collapses onto B's) and phi vs phi + pi need no special
cases. The result is clamped to [0, 1], and IoU values below 1e-12 (rounding noise, e.g. of
rotated boxes that only touch) are reported as 0.
"""
from __future__ import annotations

import numpy as np

PATH_VERTICES = 20  # 4 edges of A x (start + 4 breakpoints)
NEGLIGIBLE_IOU = 1e-12  # smaller IoU values are rounding noise and reported as 0
DEFAULT_BLOCK = 1 << 12  # pairs clipped at once (larger blocks fall out of the CPU caches)
PREFILTER_CELLS = 1 << 22  # bounding-box prefilter: at most this many pairs of the (N, M) matrix at once

# corner i = centre + s1 * length1 * d1 + s2 * length2 * d2: a cyclic order around the rectangle
_CORNER_SIGNS = np.array([[1.0, 1.0], [-1.0, 1.0], [-1.0, -1.0], [1.0, -1.0]])
_NEXT_CORNER = np.array([1, 2, 3, 0])
_NEXT_VERTEX = np.r_[1:PATH_VERTICES, 0]


def _as_boxes5(boxes) -> np.ndarray:
    arr = np.asarray(boxes, dtype=np.float64)
    if arr.ndim == 1 and arr.size == 0:
        arr = arr.reshape(0, 5)
    if arr.ndim != 2 or arr.shape[1] != 5:
        raise ValueError(f"rectangle2 boxes must have shape (N, 5) = (row, col, phi, length1, length2), "
                         f"got {np.shape(boxes)}")
    return arr


def corners(boxes) -> np.ndarray:
    """The corners of rectangle2 boxes: centre +- length1 * d1 +- length2 * d2 with
    d1 = (-sin phi, cos phi) and d2 = (cos phi, sin phi) in (row, col).

    Args:
        boxes: (N, 5) rows (row, col, phi, length1, length2).

    Returns:
        (N, 4, 2) corners (row, col) in the cyclic order +l1+l2, -l1+l2, -l1-l2, +l1-l2
        (counter-clockwise on screen).

    Examples:
        >>> import numpy as np
        >>> corners(np.array([[10.0, 20.0, np.pi / 2, 6.0, 2.0]])).round(6)[0, 0].tolist()
        [4.0, 22.0]
    """
    b = _as_boxes5(boxes)
    sin, cos = np.sin(b[:, 2]), np.cos(b[:, 2])
    d1 = np.stack([-sin, cos], axis=1) * b[:, 3:4]  # (N, 2) length1 * d1
    d2 = np.stack([cos, sin], axis=1) * b[:, 4:5]  # (N, 2) length2 * d2
    return (b[:, None, 0:2] + _CORNER_SIGNS[None, :, 0:1] * d1[:, None, :]
            + _CORNER_SIGNS[None, :, 1:2] * d2[:, None, :])


def half_extents(boxes) -> np.ndarray:
    """(N, 2) half height and half width of the boxes' axis-parallel bounding boxes."""
    b = _as_boxes5(boxes)
    sin, cos = np.abs(np.sin(b[:, 2])), np.abs(np.cos(b[:, 2]))
    l1, l2 = np.abs(b[:, 3]), np.abs(b[:, 4])
    return np.stack([l1 * sin + l2 * cos, l1 * cos + l2 * sin], axis=1)


def bounding_boxes(boxes) -> np.ndarray:
    """(N, 4) rectangle1 (row1, col1, row2, col2): the axis-parallel bounding boxes."""
    b = _as_boxes5(boxes)
    half = half_extents(b)
    return np.concatenate([b[:, 0:2] - half, b[:, 0:2] + half], axis=1)


def _breakpoints(x: np.ndarray, dx: np.ndarray, half: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The edge parameters t (clipped to [0, 1]) where x + t dx crosses -half and +half, as
    (earlier, later); an edge parallel to the lines (dx == 0) has none (both 0)."""
    inv = np.divide(1.0, dx, out=np.zeros_like(dx), where=dx != 0)
    at_low, at_high = (-half - x) * inv, (half - x) * inv
    first, second = np.minimum(at_low, at_high), np.maximum(at_low, at_high)
    for t in (first, second):
        np.maximum(t, 0.0, out=t)
        np.minimum(t, 1.0, out=t)
    return first, second


def _projected_path(x: np.ndarray, dx: np.ndarray, t: np.ndarray, half: np.ndarray) -> np.ndarray:
    """(K, 20) one coordinate of the path: x + t dx at the (K, 4, 5) parameters, clipped to +-half."""
    p = t * dx[:, :, None]
    p += x[:, :, None]
    half = half[:, None, None]
    np.minimum(p, half, out=p)
    np.maximum(p, -half, out=p)
    return p.reshape(len(p), PATH_VERTICES)


def intersection_area(a, b) -> np.ndarray:
    """(K,) area of the intersection of a[k] and b[k] (both (K, 5), lengths > 0), one pair per
    row: the shoelace area of A's boundary projected onto B (see the module docstring)."""
    a, b = _as_boxes5(a), _as_boxes5(b)
    k = len(a)
    theta = a[:, 2] - b[:, 2]
    cos_t, sin_t = np.cos(theta), np.sin(theta)
    sin_b, cos_b = np.sin(b[:, 2]), np.cos(b[:, 2])
    d_row, d_col = a[:, 0] - b[:, 0], a[:, 1] - b[:, 1]
    # B's frame: u along d1_B, v along d2_B; there A's d1 = (cos t, -sin t) and d2 = (sin t, cos t)
    u0 = -d_row * sin_b + d_col * cos_b
    v0 = d_row * cos_b + d_col * sin_b
    s1, s2 = _CORNER_SIGNS[:, 0], _CORNER_SIGNS[:, 1]
    u = u0[:, None] + s1 * (a[:, 3] * cos_t)[:, None] + s2 * (a[:, 4] * sin_t)[:, None]  # (K, 4) corners
    v = v0[:, None] - s1 * (a[:, 3] * sin_t)[:, None] + s2 * (a[:, 4] * cos_t)[:, None]
    du, dv = u[:, _NEXT_CORNER] - u, v[:, _NEXT_CORNER] - v  # edge i runs from corner i to corner i + 1
    half_u, half_v = b[:, 3], b[:, 4]
    u1, u2 = _breakpoints(u, du, half_u[:, None])
    v1, v2 = _breakpoints(v, dv, half_v[:, None])
    # merge the sorted pairs (u1 <= u2) and (v1 <= v2) into 4 sorted parameters after t = 0
    mid_low, mid_high = np.maximum(u1, v1), np.minimum(u2, v2)
    t = np.empty((k, 4, 5))
    t[:, :, 0] = 0.0
    np.minimum(u1, v1, out=t[:, :, 1])
    np.minimum(mid_low, mid_high, out=t[:, :, 2])
    np.maximum(mid_low, mid_high, out=t[:, :, 3])
    np.maximum(u2, v2, out=t[:, :, 4])
    pu, pv = _projected_path(u, du, t, half_u), _projected_path(v, dv, t, half_v)
    signed = 0.5 * (pu * pv[:, _NEXT_VERTEX] - pu[:, _NEXT_VERTEX] * pv).sum(axis=1)
    return np.maximum(signed, 0.0)  # the corner order is counter-clockwise, so the sign is +


def rotated_pairwise_iou(a, b, *, block: int = DEFAULT_BLOCK) -> np.ndarray:
    """The exact IoU of every rectangle2 box of `a` with every box of `b` (polygon clipping).

    Args:
        a: (N, 5) boxes (row, col, phi, length1, length2).
        b: (M, 5) boxes.
        block: pairs are clipped this many at a time (memory bound; see the module docstring).

    Returns:
        (N, M) IoU; 0 where the boxes do not overlap (touching included) or either is
        degenerate (a length <= 0).

    Raises:
        ValueError: block < 1 or boxes not of shape (n, 5).

    Examples:
        >>> import numpy as np
        >>> box = [16.0, 16.0, 0.3, 8.0, 2.0]
        >>> turned = [16.0, 16.0, 0.3 + np.pi / 2, 2.0, 8.0]     # the same rectangle
        >>> half = [16.0 - 8.0 * np.sin(0.3), 16.0 + 8.0 * np.cos(0.3), 0.3, 8.0, 2.0]  # moved by length1 along d1
        >>> rotated_pairwise_iou(np.array([box]), np.array([turned, half])).round(6).tolist()
        [[1.0, 0.333333]]
    """
    a, b = _as_boxes5(a), _as_boxes5(b)
    out = np.zeros((len(a), len(b)))
    if out.size == 0:
        return out
    if block < 1:
        raise ValueError(f"block must be >= 1, got {block}")
    ok_a = (a[:, 3] > 0) & (a[:, 4] > 0) & np.isfinite(a).all(axis=1)
    ok_b = (b[:, 3] > 0) & (b[:, 4] > 0) & np.isfinite(b).all(axis=1)
    area_a = np.where(ok_a, 4.0 * a[:, 3] * a[:, 4], 0.0)
    area_b = np.where(ok_b, 4.0 * b[:, 3] * b[:, 4], 0.0)
    box_a, box_b = bounding_boxes(np.where(ok_a[:, None], a, 0.0)), bounding_boxes(np.where(ok_b[:, None], b, 0.0))
    rows_per_chunk = max(1, PREFILTER_CELLS // len(b))
    for start in range(0, len(a), rows_per_chunk):
        ba = box_a[start:start + rows_per_chunk]
        overlap = ((np.minimum(ba[:, None, 2], box_b[None, :, 2]) > np.maximum(ba[:, None, 0], box_b[None, :, 0]))
                   & (np.minimum(ba[:, None, 3], box_b[None, :, 3]) > np.maximum(ba[:, None, 1], box_b[None, :, 1]))
                   & ok_a[start:start + rows_per_chunk, None] & ok_b[None, :])
        ii, jj = np.nonzero(overlap)
        ii += start
        for first in range(0, len(ii), block):
            i, j = ii[first:first + block], jj[first:first + block]
            inter = np.clip(intersection_area(a[i], b[j]), 0.0, np.minimum(area_a[i], area_b[j]))
            iou = inter / (area_a[i] + area_b[j] - inter)
            out[i, j] = np.where(iou >= NEGLIGIBLE_IOU, np.minimum(iou, 1.0), 0.0)
    return out
