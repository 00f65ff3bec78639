"""A scene being drawn: the background's reflectance, objects blended in anti-aliased one
after another (a later object covers an earlier one), then photographed to uint8."""
from __future__ import annotations

import numpy as np

from .colours import cap_colour, object_colour
from .geometry import Footprint
from .texture import background, photograph

CAP_FRACTION = 0.4  # the direction cap covers t1 >= (1 - CAP_FRACTION) * length1


class Canvas:
    def __init__(self, rng: np.random.Generator, height: int, width: int, channels: int):
        self.rng = rng
        self.empty = background(rng, height, width, channels)
        self.reflectance = self.empty.copy()

    def colour_for(self, index: int, where: Footprint) -> np.ndarray:
        """A colour for class position `index` that stands out from the background at the
        shape's centre (clamped into the image)."""
        height, width, channels = self.empty.shape
        row = min(max(round(where.shape.row), 0), height - 1)
        col = min(max(round(where.shape.col), 0), width - 1)
        return object_colour(self.rng, index, channels, self.empty[row, col])

    def paint(self, where: Footprint, colour: np.ndarray, directed: bool = False) -> None:
        """Blend the shape in with coverage 0.5 - distance; a directed bar (size = (length1,
        length2)) gets a contrasting cap at its +d1 end."""
        coverage = np.clip(0.5 - where.distance, 0, 1)[..., None]
        fill = colour
        if directed:
            t1, _ = where.shape.local(*where.grid)
            start = (1 - CAP_FRACTION) * where.shape.size[0]
            ramp = np.clip(t1 - start + 0.5, 0, 1)[..., None]
            fill = colour + (cap_colour(colour) - colour) * ramp
        window = self.reflectance[where.rows, where.cols]
        window += coverage * (fill - window)

    def photograph(self) -> np.ndarray:
        return photograph(self.rng, self.reflectance)
