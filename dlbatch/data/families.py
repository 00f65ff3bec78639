"""Shape families: the class at position k of class_ids draws family k (cycling), so that a
class is recognisable by its shape and not only by its colour.

Blobs (segmentation, rectangle1) are compact: disc, axis-parallel rectangle, triangle, ring,
cross. Bars (rectangle2) are elongated and symmetric under a half turn: rectangle, ellipse,
hexagon with pointed ends; only a painted end cap can give a bar a direction. Sizes scale
with the image's shorter side so that objects stay learnable at 32 x 32: every object spans
at least about a sixth of it.
"""
from __future__ import annotations

import math

import numpy as np

from .geometry import Shape

BLOBS = ("disc", "rectangle", "triangle", "ring", "cross")
BARS = ("rectangle", "ellipse", "hexagon")


def blob(rng: np.random.Generator, index: int, side: int) -> Shape:
    """A compact shape of the family of class position `index`, centred at (0, 0)."""
    family = BLOBS[index % len(BLOBS)]
    lo, hi = side / 12, side / 6  # half extents
    if family == "disc":
        return Shape("disc", (rng.uniform(lo, hi),))
    if family == "rectangle":
        return Shape("box", (rng.uniform(lo, 1.2 * hi), rng.uniform(lo, 1.2 * hi)))
    if family == "triangle":
        radius = rng.uniform(1.3 * lo, 1.3 * hi)  # height 1.5 x radius >= side / 6
        angles = rng.uniform(0, 2 * math.pi) + 2 * math.pi * np.arange(3) / 3
        angles = angles + rng.uniform(-0.25, 0.25, 3)
        return Shape("polygon", tuple(np.stack([np.cos(angles), np.sin(angles)], 1).ravel() * radius))
    if family == "ring":
        outer = rng.uniform(1.2 * lo, 1.2 * hi)
        width = min(max(side / 16, 0.4 * outer), 0.7 * outer)
        return Shape("ring", (outer - width / 2, width / 2))
    arm = rng.uniform(1.1 * lo, 1.2 * hi)
    return Shape("cross", (arm, max(side / 28, 0.3 * arm)), phi=rng.uniform(0, math.pi / 2))


def bar(rng: np.random.Generator, index: int, side: int, phi: float) -> Shape:
    """An elongated shape of the family of class position `index` at angle `phi`, centred at
    (0, 0); its size is (length1, length2), the half lengths along d1 and d2."""
    family = BARS[index % len(BARS)]
    half2 = rng.uniform(side / 16, side / 10)
    half1 = min(half2 * rng.uniform(1.8, 3.0), 0.28 * side)
    kind = {"rectangle": "box", "ellipse": "ellipse", "hexagon": "hexagon"}[family]
    return Shape(kind, (half1, half2), phi=phi)
