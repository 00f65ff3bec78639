"""Where objects go. Segmentation and rectangle1 objects may cross the image border (they are
clipped, at least MIN_VISIBLE of each stays visible); rectangle2 objects stay wholly inside,
so that their oriented box is the drawn shape's own box and never a clipped one. Detection
objects share no pixel and their boxes overlap little (IoU < MAX_IOU), so that every label
describes what is visible."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .families import bar, blob
from .geometry import Footprint, Shape, footprint

MIN_VISIBLE = 0.4
MAX_IOU = 0.3


@dataclass(frozen=True)
class Placed:
    """One detection object: its class position, footprint, box (as spec values and as a
    raster for overlap tests)."""

    index: int
    where: Footprint
    box: tuple
    raster: np.ndarray


def clipped(rng: np.random.Generator, shape: Shape, height: int, width: int) -> Footprint | None:
    """`shape` with its centre anywhere in the image, or None when too little stays visible."""
    where = footprint(shape.moved(rng.uniform(-0.5, height - 0.5), rng.uniform(-0.5, width - 0.5)),
                      height, width)
    return where if where.visible_area >= MIN_VISIBLE * where.full_area else None


def upright(rng, index: int, height: int, width: int) -> Placed | None:
    """A blob and its axis-parallel box: a shape covering pixel centres r0..r1 has
    row1 = r0 - 0.5 and row2 = r1 + 0.5 (the same for columns)."""
    where = clipped(rng, blob(rng, index, min(height, width)), height, width)
    if where is None:
        return None
    rows = np.flatnonzero(where.inside.any(axis=1)) + where.rows.start
    cols = np.flatnonzero(where.inside.any(axis=0)) + where.cols.start
    raster = np.zeros((height, width), dtype=bool)
    raster[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1] = True
    box = (rows[0] - 0.5, cols[0] - 0.5, rows[-1] + 0.5, cols[-1] + 0.5)
    return Placed(index, where, box, raster)


def half_turn(phi: float) -> float:
    """The same undirected orientation in (-pi/2, pi/2]."""
    if phi > math.pi / 2:
        return phi - math.pi
    if phi <= -math.pi / 2:
        return phi + math.pi
    return phi


def oriented(rng, index: int, height: int, width: int, directed: bool) -> Placed | None:
    """A bar wholly inside the image and its rectangle2 box (row, col, phi, length1,
    length2); phi in (-pi, pi] when the bar has a direction, else in (-pi/2, pi/2]."""
    phi = math.pi - rng.uniform(0, 2 * math.pi)
    shape = bar(rng, index, min(height, width), phi if directed else half_turn(phi))
    l1, l2 = shape.size
    s, c = abs(math.sin(shape.phi)), abs(math.cos(shape.phi))
    reach_row, reach_col = l1 * s + l2 * c, l1 * c + l2 * s
    if 2 * reach_row > height or 2 * reach_col > width:
        return None
    shape = shape.moved(rng.uniform(reach_row - 0.5, height - 0.5 - reach_row),
                        rng.uniform(reach_col - 0.5, width - 0.5 - reach_col))
    raster = footprint(Shape("box", shape.size, shape.row, shape.col, shape.phi), height, width)
    box = (shape.row, shape.col, shape.phi, l1, l2)
    return Placed(index, footprint(shape, height, width), box, raster.mask(height, width))


def apart(candidate: Placed, taken: np.ndarray, placed: list[Placed]) -> bool:
    """No shared pixel with earlier objects and box IoU below MAX_IOU with each of them."""
    where = candidate.where
    if (taken[where.rows, where.cols] & where.inside).any():
        return False
    for other in placed:
        union = (candidate.raster | other.raster).sum()
        if union and (candidate.raster & other.raster).sum() / union >= MAX_IOU:
            return False
    return True
