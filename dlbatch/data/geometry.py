"""Shapes as signed distances over the pixel grid (negative inside, in pixels).

One vectorised formula per shape gives both the label mask (distance <= 0 at a pixel centre,
no anti-aliasing) and the image's anti-aliased coverage (0.5 - distance, clipped to [0, 1]),
so that a mask and the object drawn in the image can never disagree.

Coordinates follow the project's spec: rows down, columns right, pixel (0, 0) centred at
(0, 0). Every shape has HALCON's rectangle2 frame: at centre (row, col) with angle phi it
measures t1 along d1 = (-sin phi, cos phi) and t2 along d2 = (cos phi, sin phi), (row, col).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np


def _disc(t1, t2, radius):
    return np.hypot(t1, t2) - radius


def _box(t1, t2, half1, half2):
    q1, q2 = np.abs(t1) - half1, np.abs(t2) - half2
    return np.hypot(np.maximum(q1, 0), np.maximum(q2, 0)) + np.minimum(np.maximum(q1, q2), 0)


def _ellipse(t1, t2, half1, half2):
    """First-order distance k - 1 over |grad k|: exact in sign, close enough for coverage."""
    k = np.hypot(t1 / half1, t2 / half2)
    grad = np.hypot(t1 / half1 ** 2, t2 / half2 ** 2)
    return np.where(grad > 0, (k - 1) * k / np.maximum(grad, 1e-12), -min(half1, half2))


def _ring(t1, t2, mid_radius, half_width):
    return np.abs(np.hypot(t1, t2) - mid_radius) - half_width


def _cross(t1, t2, arm, half_width):
    return np.minimum(_box(t1, t2, arm, half_width), _box(t1, t2, half_width, arm))


def _polygon(t1, t2, *flat):
    """Convex polygon with vertices (t1, t2): the largest signed distance to an edge line."""
    v = np.asarray(flat, dtype=float).reshape(-1, 2)
    edge = np.roll(v, -1, axis=0) - v
    normal = np.stack([edge[:, 1], -edge[:, 0]], axis=1) / np.hypot(edge[:, 0], edge[:, 1])[:, None]
    inward = ((v.mean(axis=0) - v) * normal).sum(axis=1) > 0
    normal[inward] *= -1
    d = (t1[..., None] - v[:, 0]) * normal[:, 0] + (t2[..., None] - v[:, 1]) * normal[:, 1]
    return d.max(axis=-1)


def hexagon_vertices(half1, half2):
    """A bar with pointed ends: tips at +-half1 on the t1 axis, right-angled."""
    a = half1 - half2
    return (half1, 0.0, a, half2, -a, half2, -half1, 0.0, -a, -half2, a, -half2)


def _hexagon(t1, t2, half1, half2):
    return _polygon(t1, t2, *hexagon_vertices(half1, half2))


_DISTANCE = {"disc": _disc, "box": _box, "ellipse": _ellipse, "ring": _ring, "cross": _cross,
             "polygon": _polygon, "hexagon": _hexagon}


def _reach(kind, size):
    """Largest distance from the centre to a point inside the shape."""
    if kind == "polygon":
        v = np.asarray(size).reshape(-1, 2)
        return float(np.hypot(v[:, 0], v[:, 1]).max())
    if kind == "disc":
        return size[0]
    if kind == "ring":
        return size[0] + size[1]
    return math.hypot(size[0], size[1])


@dataclass(frozen=True)
class Shape:
    """A filled shape: `kind` names its distance formula, `size` its parameters in the
    local frame (for box, ellipse and hexagon: the half lengths along d1 and d2)."""

    kind: str
    size: tuple
    row: float = 0.0
    col: float = 0.0
    phi: float = 0.0

    @property
    def reach(self) -> float:
        return _reach(self.kind, self.size)

    def moved(self, row: float, col: float) -> "Shape":
        return dataclasses.replace(self, row=float(row), col=float(col))

    def local(self, rows, cols):
        """(t1, t2) of the points (rows, cols) in the shape's frame."""
        dr, dc = rows - self.row, cols - self.col
        s, c = math.sin(self.phi), math.cos(self.phi)
        return -dr * s + dc * c, dr * c + dc * s

    def distance(self, rows, cols) -> np.ndarray:
        return _DISTANCE[self.kind](*self.local(rows, cols), *self.size)


@dataclass(frozen=True)
class Footprint:
    """A shape over the part of an image it can touch: the window's slices and grid, the
    distance over that window, and how many pixel centres the shape covers unclipped."""

    shape: Shape
    rows: slice
    cols: slice
    grid: tuple
    distance: np.ndarray
    full_area: int

    @property
    def inside(self) -> np.ndarray:
        return self.distance <= 0

    @property
    def visible_area(self) -> int:
        return int(self.inside.sum())

    def mask(self, height: int, width: int) -> np.ndarray:
        full = np.zeros((height, width), dtype=bool)
        full[self.rows, self.cols] = self.inside
        return full


def footprint(shape: Shape, height: int, width: int) -> Footprint:
    """Evaluate `shape` on the pixels around it (one pixel of margin for the coverage ramp);
    the window is computed unclipped first so that the visible fraction is known."""
    reach = shape.reach + 1.0
    r0, r1 = math.floor(shape.row - reach), math.ceil(shape.row + reach) + 1
    c0, c1 = math.floor(shape.col - reach), math.ceil(shape.col + reach) + 1
    rows = np.arange(r0, r1, dtype=float)[:, None]
    cols = np.arange(c0, c1, dtype=float)[None, :]
    distance = shape.distance(rows, cols)
    full_area = int((distance <= 0).sum())
    rr = slice(max(r0, 0), max(min(r1, height), 0))
    cc = slice(max(c0, 0), max(min(c1, width), 0))
    cut = distance[rr.start - r0:rr.stop - r0, cc.start - c0:cc.stop - c0]
    grid = (rows[rr.start - r0:rr.stop - r0], cols[:, cc.start - c0:cc.stop - c0])
    return Footprint(shape, rr, cc, grid, cut, full_area)
